"""The sharded exchange among real node processes on 127.0.0.1."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from swarmlib.merge import get_strategy
from swarmlib.testing.local import node_vector, run_local_exchange

PARAMS = 1001  # not a multiple of the node count: shards of unequal length
ROUNDS = 2

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("nodes", "strategy"),
    [
        (2, "mean"),
        (3, "mean"),
        (5, "mean"),
        (8, "mean"),
        (3, "coordinate_median"),
        (5, "trimmed_mean"),
        (5, "geometric_median"),
        (5, "krum"),
        (8, "multi_krum"),
    ],
)
def test_every_participant_ends_with_the_merge_of_the_full_vectors(
    nodes: int, strategy: str
) -> None:
    weights = [float(1 + i) for i in range(nodes)]
    reports = run_local_exchange(
        nodes,
        PARAMS,
        rounds=ROUNDS,
        strategy=strategy,
        weights=weights,
        return_vectors=True,
        timeout=30,
    )
    merge = get_strategy(strategy)
    for r in range(ROUNDS):
        outcomes = [rep.rounds[r] for rep in reports]
        assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
        first = outcomes[0].vector
        assert first is not None
        for o in outcomes:  # byte-identical everywhere, and the hash is of those bytes
            assert o.vector is not None and o.vector.tobytes() == first.tobytes()
            assert o.sha256 == hashlib.sha256(first.tobytes()).hexdigest()
        full = [node_vector(0, i, r, PARAMS, "float32") for i in range(nodes)]
        expected = merge(full, weights)
        if merge.exact_when_sharded:
            np.testing.assert_array_equal(first, expected)
        else:
            np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nodes", [2, 4])
def test_each_node_sends_two_n_minus_one_over_n_of_the_model(nodes: int) -> None:
    params = 40_000
    reports = run_local_exchange(nodes, params, rounds=1, timeout=30)
    model_bytes = 4 * params
    bound = 2 * (nodes - 1) / nodes * model_bytes
    for rep in reports:
        sent = rep.rounds[0].bytes_sent
        # shards plus per-message headers and 16-byte GCM tags: a few hundred bytes more
        assert bound <= sent <= bound + 2 * (nodes - 1) * 400, (sent, bound)


def test_a_killed_participant_times_out_by_name_on_every_other_node() -> None:
    timeout = 3.0
    reports = run_local_exchange(3, PARAMS, rounds=3, kill=(1, 1), timeout=timeout)
    assert reports[1].exit_code == -9 and reports[1].rounds == []
    for rep in (reports[0], reports[2]):
        assert rep.rounds[0].error is None
        failed = rep.rounds[1]
        assert failed.error_type == "PeerTimeout", failed.error
        assert failed.culprits == ("node-1",)
        assert "node-1" in (failed.error or "")
        assert failed.seconds < timeout + 2.0  # the timeout, its 1 s grace, and slack


def test_the_survivors_retry_without_the_dead_peer_and_agree() -> None:
    reports = run_local_exchange(
        4, PARAMS, rounds=3, kill=(2, 1), timeout=3.0, retry=True, return_vectors=True
    )
    alive = [reports[i] for i in (0, 1, 3)]
    for r in (1, 2):
        outcomes = [rep.rounds[r] for rep in alive]
        assert all(o.participants == ("node-0", "node-1", "node-3") for o in outcomes)
        assert len({o.sha256 for o in outcomes}) == 1
        full = [node_vector(0, i, r, PARAMS, "float32") for i in (0, 1, 3)]
        np.testing.assert_array_equal(outcomes[0].vector, get_strategy("mean")(full))
    assert alive[0].rounds[1].attempts == 2
