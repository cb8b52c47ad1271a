"""Replicated shard owners: a wrong merge is outvoted (r=3), detected (r=2), or trusted (r=1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlib import errors
from swarmlib.callback import SwarmCallback
from swarmlib.ledger.audit import audit, format_audit
from swarmlib.ledger.rules import SessionRules
from swarmlib.ledger.server import ChainServer
from swarmlib.merge import Mean, get_strategy
from swarmlib.node.rules import check_feasible
from swarmlib.transport import Peer, RoundResult, ShardedExchange
from swarmlib.transport.replicas import check_replicas, majority, owned_by, owners_of
from swarmlib.transport.round import RoundState
from tests.conftest import retrying_round, run_threads
from tests.node_worker import node_weights
from tests.test_node import TD, _run
from tests.test_node import _swarm as _chain_swarm

SIZE = 4_001


@given(n=st.integers(1, 12), data=st.data())
def test_every_shard_has_r_distinct_owners_and_every_participant_owns_r_shards(
    n: int, data: st.DataObject
) -> None:
    r = data.draw(st.integers(1, n))
    owners = {k: owners_of(k, n, r) for k in range(n)}
    assert all(len(set(o)) == r and o[0] == k for k, o in owners.items())
    for me in range(n):
        mine = owned_by(me, n, r)
        assert len(mine) == r and mine == [k for k in range(n) if me in owners[k]]


def test_the_majority_is_strict_and_byte_exact() -> None:
    a, b = np.zeros(3, np.float32), np.ones(3, np.float32)
    assert majority({0: a, 1: a.copy(), 2: b}).winner == 0
    assert majority({0: a, 1: a.copy(), 2: b}).dissenters == [2]
    assert majority({0: a, 1: b}).winner is None  # r=2: detected, not attributable
    assert majority({0: a, 1: b}).dissenters == [0, 1]
    assert majority({4: b}).winner == 4 and majority({4: b}).dissenters == []
    negative_zero = np.array([-0.0, 0.0, 0.0], np.float32)  # equal as floats, not as bytes
    assert majority({0: a, 1: negative_zero, 2: b}).winner is None


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_a_bad_replica_count_is_refused(bad: Any) -> None:
    with pytest.raises(errors.ConfigurationError, match="owner_replicas"):
        check_replicas(bad, 5)


class WrongOwner(ShardedExchange):
    """Adds 1 to every shard it merges (``where="merge"``) or to its reduce partials
    (``"reduce"``), or sets its merged shards to NaN (``"nan"``)."""

    def __init__(self, where: str = "merge", **kw: Any) -> None:
        super().__init__(**kw)
        self.where = where

    def _merge_owned(self, st: RoundState, own: np.ndarray, weight: float, merge: Any) -> None:
        super()._merge_owned(st, own, weight, merge)
        if self.where in ("merge", "nan") and st.attempt == 0:
            for k in st.owned:
                a, b = st.bounds[k]
                st.out[a:b] = np.nan if self.where == "nan" else st.out[a:b] + 1

    def _reduce(self, st: RoundState, partials: dict[int, np.ndarray]) -> np.ndarray:
        if self.where == "reduce" and st.attempt == 0:
            partials = {k: p + 1.0 for k, p in partials.items()}
        return super()._reduce(st, partials)


def _swarm(
    n: int, replicas: int, cheat: int | None = None, where: str = "merge", **kw: Any
) -> tuple[list[Any], list[np.ndarray]]:
    rng = np.random.default_rng(11)
    vectors = [rng.normal(size=SIZE).astype(np.float32) for _ in range(n)]
    exchanges = [
        WrongOwner(where, name=f"n{i}", timeout=5.0, linger_ms=200)
        if i == cheat
        else ShardedExchange(name=f"n{i}", timeout=5.0, linger_ms=200)
        for i in range(n)
    ]
    try:
        return retrying_round(exchanges, vectors, replicas=replicas, **kw), vectors
    finally:
        for e in exchanges:
            e.close()


def _identical(results: list[Any]) -> RoundResult:
    assert all(isinstance(r, RoundResult) for r in results), results
    first = results[0]
    assert all(r.vector.tobytes() == first.vector.tobytes() for r in results)
    assert len({r.sha256 for r in results}) == 1
    return first


@pytest.mark.parametrize("strategy", ["mean", "krum", "geomedian"])
def test_replicated_owners_give_the_single_owner_merge_bit_for_bit(strategy: str) -> None:
    merge = get_strategy(strategy).sharded()
    single = _identical(_swarm(5, 1, merge=merge)[0])
    triple = _identical(_swarm(5, 3, merge=merge)[0])
    assert triple.vector.tobytes() == single.vector.tobytes()
    assert triple.stats.bytes_sent > 2 * single.stats.bytes_sent  # r x the merged traffic


def test_with_three_owners_a_wrong_merge_is_outvoted_and_named_and_the_round_goes_on() -> None:
    results, vectors = _swarm(4, 3, cheat=3)
    merged = _identical(results)  # the wrong owner too takes the majority's copies
    assert merged.stats.participants == ("n0", "n1", "n2", "n3")
    assert merged.stats.attempt == 0  # no retry: every shard had a majority
    np.testing.assert_array_equal(merged.vector, get_strategy("mean")(vectors))
    # every node named the wrong owner, and only it, with the hash of its copy as evidence
    for r in results[:3]:
        assert list(r.outvoted) == ["n3"] and len(r.outvoted["n3"]) == 32


@pytest.mark.parametrize("r", [1, 3])
def test_a_nan_merge_is_refused_alone_and_outvoted_among_three_owners(r: int) -> None:
    results, vectors = _swarm(4, r, cheat=2, where="nan")
    if r == 1:  # nothing to outvote it with: the round is retried without it
        merged = _identical([res for i, res in enumerate(results) if i != 2])
        assert merged.stats.participants == ("n0", "n1", "n3")
    else:
        merged = _identical(results)
        assert merged.stats.attempt == 0 and list(results[0].outvoted) == ["n2"]
        np.testing.assert_array_equal(merged.vector, get_strategy("mean")(vectors))


def test_with_three_owners_wrong_reduce_partials_are_outvoted() -> None:
    merge = get_strategy("geomedian").sharded()
    results, vectors = _swarm(5, 3, cheat=1, where="reduce", merge=merge)
    merged = _identical(results)
    assert merged.stats.participants == ("n0", "n1", "n2", "n3", "n4")
    assert all(list(r.outvoted) == ["n1"] for i, r in enumerate(results) if i != 1)
    np.testing.assert_array_equal(merged.vector, get_strategy("geomedian")(vectors))


def test_with_two_owners_a_wrong_merge_is_detected_and_both_owners_leave() -> None:
    results, vectors = _swarm(5, 2, cheat=4)
    # n4 owns shards 3 and 4; their other owners are n3 and n0: no copy has a majority,
    # so the swarm cannot tell which owner lied and goes on without both suspects
    assert isinstance(results[4], errors.PeerRejected)
    survivors = [r for r in results if isinstance(r, RoundResult)]
    assert survivors, results
    merged = _identical(survivors)
    assert "n4" not in merged.stats.participants
    kept = [int(name[1:]) for name in merged.stats.participants]
    np.testing.assert_array_equal(merged.vector, get_strategy("mean")([vectors[i] for i in kept]))
    for i, r in enumerate(results):
        if isinstance(r, errors.PeerRejected):
            assert "n4" in r.culprits and "none has a majority" in str(r), (i, r)


def test_with_one_owner_a_wrong_merge_goes_undetected() -> None:
    """The documented hole that owner_replicas closes (docs/security.md)."""
    results, vectors = _swarm(4, 1, cheat=3)
    merged = _identical(results)
    exact = get_strategy("mean")(vectors)
    wrong = ~np.isclose(merged.vector, exact)
    assert wrong.any() and not wrong.all()  # one shard of four is off, and everyone loaded it


def test_replicas_must_fit_the_round_and_exclude_secure_aggregation(
    nodes: list[ShardedExchange],
) -> None:
    vec = np.zeros(10, np.float32)
    peers = [Peer(e.name, e.endpoint, e.public_key) for e in nodes]
    merge = get_strategy("mean").sharded()
    with pytest.raises(errors.ConfigurationError, match="needs at least 4 participants"):
        nodes[0].run_round(peers, vec, round_id=0, merge=merge, replicas=4)
    with pytest.raises(errors.ConfigurationError, match="secure aggregation"):
        nodes[0].run_round(peers, vec, round_id=0, merge=merge, replicas=3, secure=True)


def test_participants_with_different_replica_counts_are_refused_by_name(
    nodes: list[ShardedExchange],
) -> None:
    peers = [Peer(e.name, e.endpoint, e.public_key) for e in nodes]
    out: list[Any] = [None] * 3

    def work(i: int) -> None:
        try:
            out[i] = nodes[i].run_round(peers, np.ones(30, np.float32), round_id=0,
                                        merge=get_strategy("mean").sharded(),
                                        replicas=3 if i == 0 else 1)  # fmt: skip
        except errors.RoundFailed as e:
            out[i] = e

    run_threads(work, 3)
    assert all(isinstance(r, errors.RoundFailed) for r in out), out  # nobody merges
    # the odd node refuses the others with both settings named (they may time out waiting)
    assert isinstance(out[0], errors.PeerRejected) and "replicas=3" in str(out[0]), out[0]


def test_the_rules_carry_owner_replicas_and_refuse_what_cannot_run() -> None:
    rules = SessionRules(3, "krum", owner_replicas=3)
    assert SessionRules.decode(3, rules.encode()) == rules
    assert "owner_replicas" not in SessionRules(3, "mean").encode()  # older sessions read alike
    check_feasible(SessionRules(3, "mean", owner_replicas=3), "s")
    with pytest.raises(errors.ConfigurationError, match="Raise min_peers to 3"):
        check_feasible(SessionRules(2, "mean", owner_replicas=3), "s")
    with pytest.raises(errors.ConfigurationError, match="cannot be combined"):
        check_feasible(SessionRules(3, "mean", True, owner_replicas=3), "s")
    with pytest.raises(errors.ConfigurationError, match="owner_replicas"):
        SessionRules(3, "mean", owner_replicas=0)
    with pytest.raises(errors.ConfigurationError, match="not ones this swarmlib version reads"):
        SessionRules.decode(3, '{"merge":"mean","owner_replicas":"3"}')


def test_the_callback_refuses_replicas_it_cannot_have() -> None:
    with pytest.raises(errors.ConfigurationError, match="cannot be combined"):
        SwarmCallback(sync_frequency=4, secure_aggregation=True, owner_replicas=3)
    with pytest.raises(errors.ConfigurationError, match="Raise min_peers to 3"):
        SwarmCallback(sync_frequency=4, min_peers=2, owner_replicas=3)
    with pytest.raises(errors.ConfigurationError, match="owner_replicas"):
        SwarmCallback(sync_frequency=4, owner_replicas=0)


@pytest.mark.slow
def test_a_swarm_with_three_owners_per_shard_trains_on_with_a_node_that_merges_wrong(
    chain: ChainServer, tmp_path: Path
) -> None:
    # min_peers=4: a swarm that cannot go on without the wrong owner still trains
    rules = SessionRules(4, "mean", owner_replicas=3)
    admin, envs = _chain_swarm(chain, tmp_path, 4, min_peers=4, rules=rules, quorum_wait=8)
    envs[3]["TEST_WRONG_OWNER"] = "1"
    samples = [100, 200, 300, 400]
    out = _run(envs, 3, samples)
    assert [o[0] for o in out] == ["ok"] * 4, out
    for r in range(3):
        assert len({o[1][r][1] for o in out}) == 1  # type: ignore[index]
        merged = np.concatenate([np.ravel(a) for a in out[0][1][r][2]])  # type: ignore[index]
        every = [np.concatenate([w.ravel() for w in node_weights(i, r)]) for i in range(4)]
        np.testing.assert_allclose(merged, Mean()(every, samples), rtol=1e-5, atol=1e-6)
    rows = audit(admin, "s")
    assert [(row.round, row.attempt, row.status) for row in rows] == [
        (0, 0, "agree"), (1, 0, "agree"), (2, 0, "agree")]  # fmt: skip
    table = format_audit(rows, "s")
    assert "every shard merged by 3 owners" in table
    # every honest node recorded on chain, each round, who sent the outvoted merge
    cheat, honest = f"spiffe://{TD}/node-3", {f"spiffe://{TD}/node-{i}" for i in range(3)}
    for row in rows:
        assert set(row.reports) == {cheat} and set(row.reports[cheat]) == honest, row.reports
    assert f"{cheat}'s merge outvoted" in table
