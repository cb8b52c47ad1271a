"""Round receipts on chain and `swarmlib audit --verify`: a third party re-computes a round."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import numpy as np
import pytest

from swarmlib.cli import main
from swarmlib.errors import ConfigurationError
from swarmlib.ledger.audit import audit
from swarmlib.ledger.rules import SessionRules
from swarmlib.ledger.server import ChainServer
from swarmlib.merge import First, get_strategy
from swarmlib.node.disclose import Disclosed, load_disclosed, replay_merge, verify
from swarmlib.transport import Peer, ShardedExchange
from tests.conftest import exchanges, run_threads
from tests.node_worker import node_weights
from tests.test_node import _run, _swarm


def _sha(vector: np.ndarray) -> bytes:
    return hashlib.sha256(vector.tobytes()).digest()


def _flat(index: int, round_id: int) -> np.ndarray:
    return np.concatenate([w.ravel() for w in node_weights(index, round_id)])


@pytest.fixture(scope="module")
def five() -> Iterator[list[ShardedExchange]]:
    with exchanges(5) as made:
        yield made


@pytest.mark.parametrize(
    "spec", ["mean", "coordinate_median", "trimmed_mean", "geometric_median", "krum", "multi_krum"]
)
def test_the_replayed_merge_is_the_exchanges_bit_for_bit_in_any_vote_order(
    five: list[ShardedExchange], spec: str
) -> None:
    """What an auditor re-computes is what the owners merged, however the votes were ordered."""
    rng = np.random.default_rng(7)
    vectors = [rng.standard_normal(1001).astype(np.float32) for _ in five]
    weights = [3.0, 1.0, 2.0, 1.0, 4.0]
    names = [f"spiffe://swarm.test/n{i}" for i in range(len(five))]
    strategy = get_strategy(spec)
    orders = [(0, 1, 2, 3, 4), (4, 2, 0, 3, 1), (1, 3, 4, 0, 2)]  # the chain's vote order varies
    for order in orders:
        peers = [Peer(names[i], five[i].endpoint, five[i].public_key) for i in order]
        results: dict[int, str] = {}
        round_id = next(_rounds)

        def work(
            i: int, peers: list[Peer] = peers, round_id: int = round_id, got: dict = results
        ) -> None:
            merge = strategy.sharded()
            got[i] = (
                five[i]
                .run_round(peers, vectors[i], round_id=round_id, merge=merge, weight=weights[i])
                .sha256
            )

        run_threads(work, len(five))
        assert len(set(results.values())) == 1
        replayed = replay_merge(strategy, [vectors[i] for i in order],
                                [weights[i] for i in order], [names[i] for i in order])  # fmt: skip
        assert hashlib.sha256(replayed.tobytes()).hexdigest() == results[0]


_rounds = count()  # the module's exchanges go on from round to round


def test_the_secure_sum_replay_is_the_fixed_point_mean() -> None:
    rng = np.random.default_rng(3)
    vectors = [rng.standard_normal(500).astype(np.float32) for _ in range(3)]
    weights, names = [1.0, 2.0, 5.0], ["a", "b", "c"]
    exact = replay_merge(get_strategy("mean"), vectors, weights, names, secure=True)
    plain = replay_merge(get_strategy("mean"), vectors, weights, names)
    np.testing.assert_allclose(exact, plain, atol=1e-6)  # fixed point: close, not equal
    assert replay_merge(First(), vectors, weights, names).tobytes() == vectors[0].tobytes()


def test_disclosed_files_are_data_and_their_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a folder"):
        load_disclosed([tmp_path / "missing"], "s")
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigurationError, match=r"not a readable \.npy"):  # never unpickled
        Disclosed(tmp_path / "x.npy", 0, 0, "0xabc").load()
    np.save(tmp_path / "y.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(ConfigurationError, match="1-D float vector"):
        Disclosed(tmp_path / "y.npy", 0, 0, "0xabc").load()
    (tmp_path / "round-000000-attempt-0-0xabc.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="not a contribution receipt"):
        load_disclosed([tmp_path], "s")


@pytest.mark.slow
@pytest.mark.parametrize(
    "rules",
    [SessionRules(3, merge="geometric_median"), SessionRules(3, secure_aggregation=True)],
    ids=["geometric-median", "secure-aggregation"],
)
def test_receipts_on_chain_let_an_auditor_recompute_every_round(
    chain: ChainServer, tmp_path: Path, rules: SessionRules, capsys: pytest.CaptureFixture[str]
) -> None:
    admin, envs = _swarm(chain, tmp_path, 3, min_peers=3, rules=rules)
    kept = tmp_path / "disclosed"
    for env in envs:
        env["SWARMLIB_KEEP_CONTRIBUTIONS"] = str(kept)
        env["TEST_INITIAL"] = "1"  # round 0 hands everyone the first participant's model
    samples = [100, 200, 300]
    out = _run(envs, 3, samples)
    assert all(status == "ok" for status, *_ in out), out
    rows = audit(admin, "s")
    # the receipts record the last round's merged hash too: nothing is left pending
    assert [(row.round, row.status, row.initial) for row in rows] == [
        (0, "agree", True), (1, "agree", False), (2, "agree", False)]  # fmt: skip
    for row in rows:  # each participant's receipt holds the hash of what it sent
        index = {
            a: int(s.rsplit("-", 1)[1])
            for a, s in zip(row.participants, row.spiffe_ids, strict=True)
        }
        assert row.contributions == {a: _sha(_flat(i, row.round)) for a, i in index.items()}
    assert rows[-1].merged_hash.hex() == out[0][1][-1][1]  # type: ignore[union-attr, index]

    verdicts = verify(rows, admin.session_rules("s"), load_disclosed([kept], "s"))
    assert [v.ok for v in verdicts] == [True, True, True], verdicts
    cli = ["audit", "--rpc", chain.url, "--contract", admin.address, "--session", "s",
           "--verify", str(kept)]  # fmt: skip
    assert main(cli) == 0
    assert "3 round(s) verified, 0 failed" in capsys.readouterr().out

    # a participant that discloses something else than it sent is caught by its own receipt
    tampered = sorted(kept.glob("s/round-000001-*.npy"))[0]
    vector = np.load(tampered)
    vector[0] += 1e-3
    np.save(tampered, vector)
    # one that withholds its file leaves its round unchecked, not verified
    sorted(kept.glob("s/round-000002-*.npy"))[0].unlink()
    sorted(kept.glob("s/round-000002-*.json"))[0].unlink()
    assert main(cli) == 3
    text = capsys.readouterr().out
    assert "does NOT match the contribution hash it recorded on chain" in text
    assert "1 round(s) verified, 1 failed, 1 not checkable" in text
    assert "2 of 3 contributions disclosed" in text


@pytest.mark.slow
def test_a_node_without_receipts_sends_none(chain: ChainServer, tmp_path: Path) -> None:
    admin, envs = _swarm(chain, tmp_path, 1, min_peers=1)
    envs[0]["SWARMLIB_RECEIPTS"] = "0"
    out = _run(envs, 2, [10])
    assert out[0][0] == "ok", out
    assert admin.contract.events.Receipt().get_logs(from_block=0) == []
    rows = audit(admin, "s")  # the last round is then pending until a next vote
    assert [(row.round, row.status, row.contributions) for row in rows] == [
        (0, "agree", {}), (1, "pending", {})]  # fmt: skip
