"""Secure aggregation: owners learn only sums, even when one of them forces a retry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from swarmlib import errors
from swarmlib.merge import Mean, get_strategy
from swarmlib.testing.local import node_vector, run_local_exchange
from swarmlib.transport import Peer, ShardedExchange, secagg
from swarmlib.transport.round import RoundState
from tests.conftest import retrying_round

PARAMS = 1001
ATTACK_PARAMS = 40_000  # slices of 10,000 values: a correlation's standard error is 0.01


def _bound(nodes: int, values: np.ndarray) -> np.ndarray:
    """The documented bound: N half-steps of 2**-32, plus half an ulp of the float32 result."""
    return nodes * 2.0 ** -(secagg.SCALE_BITS + 1) + np.spacing(np.abs(values).astype(np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
def test_the_secure_merge_is_the_weighted_mean_within_the_bound_and_identical_everywhere(
    nodes: int,
) -> None:
    weights = [float(3 + 2 * i) for i in range(nodes)]
    reports = run_local_exchange(nodes, PARAMS, rounds=2, weights=weights, secure=True,
                                 return_vectors=True, timeout=30)  # fmt: skip
    for r in range(2):
        outcomes = [rep.rounds[r] for rep in reports]
        assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
        first = outcomes[0].vector
        assert first is not None
        assert all(o.vector is not None and o.vector.tobytes() == first.tobytes() for o in outcomes)
        full = [node_vector(0, i, r, PARAMS, "float32").astype(np.float64) for i in range(nodes)]
        exact = sum(w * v for w, v in zip(weights, full, strict=True)) / sum(weights)
        assert np.all(np.abs(first - exact) <= _bound(nodes, exact))
        assert np.abs(first - exact).max() > 0 or np.array_equal(first, exact)


@pytest.mark.slow
def test_a_killed_participant_is_left_out_and_the_retry_completes() -> None:
    reports = run_local_exchange(4, PARAMS, rounds=2, kill=(2, 1), retry=True, secure=True,
                                 return_vectors=True, timeout=3)  # fmt: skip
    assert reports[2].exit_code == -9
    survivors = [reports[i].rounds[1] for i in (0, 1, 3)]
    assert all(o.vector is not None for o in survivors), [o.error for o in survivors]
    assert {o.participants for o in survivors} == {("node-0", "node-1", "node-3")}
    full = [node_vector(0, i, 1, PARAMS, "float32").astype(np.float64) for i in (0, 1, 3)]
    exact = sum(full) / 3
    assert np.all(np.abs(survivors[0].vector - exact) <= _bound(3, exact))


# ------------------------------------------------------------------ an owner's view


class RecordingOwner(ShardedExchange):
    """An owner that keeps every masked slice it receives, and may force a retry.

    ``cheat`` is None (honest), ``"before"`` (claims the victim timed out once
    it holds every slice, before anyone revealed) or ``"after"`` (claims so
    after every participant revealed its masks to it).
    """

    def __init__(self, victim: str, cheat: str | None, **kw: Any) -> None:
        super().__init__(**kw)
        self.victim, self.cheat = victim, cheat
        self.seen: list[dict[str, Any]] = []

    def _merge_owned(self, st: RoundState, own: np.ndarray, weight: float, merge: Any) -> None:
        self._record(st)  # without secure aggregation: plaintext slices
        super()._merge_owned(st, own, weight, merge)

    def _record(self, st: RoundState) -> dict[str, Any]:
        record = {
            "attempt": st.attempt,
            "names": [p.name for p in st.peers],
            "slices": {st.peers[j].name: st.contribs[j, st.me][0].copy() for j in st.others},
            "bounds": st.bounds[st.me],
        }
        self.seen.append(record)
        if self.cheat == "before" and st.attempt == 0:
            raise self._lie(st)
        return record

    def _lie(self, st: RoundState) -> errors.PeerTimeout:
        return errors.PeerTimeout(f"{self.victim} timed out (a lie)", culprits=[self.victim],
                                  round_id=st.round_id, attempt=st.attempt)  # fmt: skip

    def _unmask_own_shard(self, st: RoundState, own: np.ndarray) -> np.ndarray:
        record = self._record(st)
        merged = super()._unmask_own_shard(st, own)
        record["reveals"] = dict(st.reveals)
        if self.cheat == "after" and st.attempt == 0:
            raise self._lie(st)
        return merged


def _nodes(n: int, cheat: str | None, owner: int = 0, victim: int = 2) -> list[ShardedExchange]:
    exchanges: list[ShardedExchange] = []
    for i in range(n):
        kw = {"name": f"n{i}", "timeout": 5.0, "linger_ms": 200}
        if i == owner:
            exchanges.append(RecordingOwner(f"n{victim}", cheat, **kw))
        else:
            exchanges.append(ShardedExchange(**kw))
    return exchanges


def _run_attack(secure: bool, cheat: str | None, n: int = 4) -> tuple[Any, list[Any], list[Any]]:
    rng = np.random.default_rng(7)
    vectors = [rng.normal(size=ATTACK_PARAMS).astype(np.float32) for _ in range(n)]
    exchanges = _nodes(n, cheat)
    try:
        results = retrying_round(exchanges, vectors, secure=secure)
    finally:
        for e in exchanges:
            e.close()
    return exchanges[0], results, vectors


def _owner_estimate(owner: RecordingOwner, victim: str, secure: bool) -> np.ndarray:
    """The owner's best guess of the victim's shard: the sum with it minus the sum without it."""
    with_victim, without = owner.seen[0], owner.seen[-1]
    assert without["attempt"] == 1 and victim not in without["names"]

    def total(record: dict[str, Any], shard: tuple[int, int]) -> np.ndarray:
        if not secure:  # plaintext float slices: each is a participant's values
            return sum(v.astype(np.float64)[: shard[1] - shard[0]]
                       for v in record["slices"].values())  # fmt: skip
        ring = sum(record["slices"].values()).astype(np.uint64)  # masks do not cancel unrevealed
        return ring.view(np.int64)[: shard[1] - shard[0]] / 2.0**secagg.SCALE_BITS

    common = min(with_victim["bounds"][1], without["bounds"][1])
    a = with_victim["bounds"][0]
    return total(with_victim, (a, common)) - total(without, (a, common))


def test_without_secure_aggregation_the_retry_attack_recovers_the_victims_shard() -> None:
    owner, _, vectors = _run_attack(secure=False, cheat="before")
    assert isinstance(owner, RecordingOwner) and len(owner.seen) == 2
    # the victim's slice is simply there in plaintext: the attack is not needed, but works
    a, b = owner.seen[0]["bounds"]
    victim_slice = owner.seen[0]["slices"]["n2"]
    np.testing.assert_array_equal(victim_slice, vectors[2][a:b])
    # and the estimator the next test uses against secure aggregation finds it too
    guess = _owner_estimate(owner, "n2", secure=False)
    np.testing.assert_allclose(guess, vectors[2][a : a + guess.size], atol=1e-6)


def test_secure_aggregation_hides_each_slice_and_the_forced_retry_reveals_nothing() -> None:
    owner, results, vectors = _run_attack(secure=True, cheat="before")
    assert isinstance(owner, RecordingOwner) and len(owner.seen) == 2
    # the retry without the "timed-out" victim completed for the others
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 2), results
    first = owner.seen[0]
    a, b = first["bounds"]
    for name, masked in first["slices"].items():  # each slice: uniform ring noise
        index = int(name[1:])
        plain = vectors[index][a:b].astype(np.float64)
        as_float = masked.view(np.int64) / 2.0**secagg.SCALE_BITS
        assert abs(np.corrcoef(plain, as_float)[0, 1]) < 0.05, name
    # the owner's best attack: the sum with the victim minus the sum without it
    guess = _owner_estimate(owner, "n2", secure=True)
    victim = vectors[2][a : a + guess.size].astype(np.float64)
    assert abs(np.corrcoef(guess, victim)[0, 1]) < 0.05


def test_equal_weights_give_different_wire_bytes_every_attempt() -> None:
    same = np.full(PARAMS, 0.25, dtype=np.float32)
    exchanges = _nodes(3, None)
    try:
        retrying_round(exchanges, [same, same, same], secure=True)
    finally:
        for e in exchanges:
            e.close()
    owner = exchanges[0]
    assert isinstance(owner, RecordingOwner)
    slices = list(owner.seen[0]["slices"].values())
    assert slices[0].tobytes() != slices[1].tobytes()


def test_an_owner_that_lies_after_the_reveal_gets_no_second_sum() -> None:
    owner, results, _ = _run_attack(secure=True, cheat="after")
    assert isinstance(owner, RecordingOwner)
    assert len(owner.seen) == 1, "a second attempt was run after the masks were revealed"
    honest = [r for i, r in enumerate(results) if i != 0]
    assert all(isinstance(r, errors.RoundForfeited) for r in honest), honest
    assert "not retried" in str(honest[0])


def test_secure_aggregation_refuses_robust_merges_and_rounds_of_two() -> None:
    with ShardedExchange(name="x") as ex:
        me = Peer("x", ex.endpoint, ex.public_key)
        other = Peer("y", "tcp://127.0.0.1:1", b"A" * 40)
        third = Peer("z", "tcp://127.0.0.1:2", b"B" * 40)
        vec = np.zeros(10, np.float32)
        with pytest.raises(errors.ConfigurationError, match="merges only by the"):
            ex.run_round([me, other, third], vec, round_id=0,
                         merge=get_strategy("coordmedian").sharded(), secure=True)  # fmt: skip
        with pytest.raises(errors.ConfigurationError, match="at least 3 participants"):
            ex.run_round([me, other], vec, round_id=0, merge=Mean().sharded(), secure=True)


def test_values_too_large_for_the_ring_are_refused_with_a_clear_error() -> None:
    out = np.empty(2, dtype=secagg.RING_DTYPE)
    with pytest.raises(errors.ConfigurationError, match="diverged"):
        secagg.encode_into(np.array([1.0, np.nan]), 0.5, out)
    with pytest.raises(errors.ConfigurationError, match="below"):
        secagg.encode_into(np.array([1.0, 3e9]), 0.5, out)


def _keystream(key: bytes, shard: int, size: int) -> np.ndarray:
    """AES-256-CTR from counter block (shard, 0) over the whole array at once."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    block = shard.to_bytes(8, "big") + bytes(8)
    enc = Cipher(algorithms.AES(key), modes.CTR(block)).encryptor()
    return np.frombuffer(enc.update(bytes(8 * size)), dtype=secagg.RING_DTYPE).copy()


def test_masks_built_chunk_by_chunk_equal_whole_keystreams_and_cancel_in_the_sum() -> None:
    size = 2 * secagg.CHUNK + 7  # two whole steps and a short one
    rng = np.random.default_rng(3)
    values = [rng.standard_normal(size).astype(np.float32) for _ in range(4)]
    shares = secagg.shares([1.0, 2.0, 3.0, 4.0])
    self_keys = [secagg.new_seed() for _ in range(4)]
    pair = {(i, j): secagg.new_seed() for i in range(4) for j in range(i + 1, 4)}
    owner, streams = 3, secagg.Keystreams()

    def pairs_of(i: int) -> dict[int, bytes]:
        return {j: pair[min(i, j), max(i, j)] for j in range(4) if j != i}

    sent = [secagg.masked_shard(values[i], shares[i], owner, i, self_keys[i], pairs_of(i),
                                streams) for i in range(3)]  # fmt: skip
    # Participant 0's slice, rebuilt from whole keystreams: E + S(self) + S(s01) + S(s02).
    expected = np.empty(size, dtype=secagg.RING_DTYPE)
    secagg.encode_into(values[0], shares[0], expected)
    for key in (self_keys[0], pair[0, 1], pair[0, 2]):
        expected += _keystream(key, owner, size)
    np.testing.assert_array_equal(sent[0], expected)
    merged = np.empty(size, dtype=np.float32)
    secagg.unmasked_sum(values[owner], shares[owner], owner, sent, self_keys[:3], streams, merged)
    mean = sum(s * v.astype(np.float64) for s, v in zip(shares, values, strict=True))
    assert np.all(np.abs(merged - mean) <= _bound(4, mean))
