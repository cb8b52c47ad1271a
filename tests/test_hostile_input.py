"""No frame from anyone kills a node: the crashes found by fuzzing, and properties of every check.

Nodes run in threads of this process with real sockets on 127.0.0.1 (as in
test_exchange_faults.py); the attacker is a plain ZeroMQ PUSH socket with no key,
as anyone on the network could open to a node's data port.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmlib.errors import PeerRejected
from swarmlib.merge import Mean
from swarmlib.transport import Peer, RoundStats, ShardedExchange
from swarmlib.transport.framing import (
    ABORT,
    CONTRIB,
    DONE,
    KEY,
    MERGED,
    PROTOCOL_VERSION,
    REDUCE,
    encode_header,
    parse_header,
)
from swarmlib.transport.round import RoundState, shard_bounds
from tests.test_exchange_faults import _peers, _results, _run, _vectors

GOOD = dict(r=0, a=0, s=1, t=0, i=0, dt="<f4", n=4, w=1.0, nonce="00" * 12)  # shard 0 of 10/3


def _inject(endpoint: str, messages: list[list[bytes]]) -> None:
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoint)
    for frames in messages:
        push.send_multipart(frames)
    push.close(linger=2000)
    ctx.term()


def _raw_header(**fields: Any) -> bytes:
    """A header as an attacker writes it: any JSON, no checks."""
    import json

    header = {"v": PROTOCOL_VERSION, "k": CONTRIB, **fields}
    return json.dumps(header, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "header",
    [
        _raw_header(**{**GOOD, "w": 10**400 // 10**200}),  # a 200-digit weight
        _raw_header(**{**GOOD, "nonce": ""}),  # no nonce, on an encrypted round
        _raw_header(**{**GOOD, "nonce": "zz" * 12}),  # 24 characters, not hex
        _raw_header(**{**GOOD, "r": 10**30}),  # a round number no node has
    ],
    ids=["huge-weight", "empty-nonce", "non-hex-nonce", "huge-round"],
)
def test_one_unauthenticated_frame_no_longer_kills_a_node(
    nodes: list[ShardedExchange], header: bytes
) -> None:
    _inject(nodes[0].data_endpoint, [[header, b"\0" * 32]])
    assert nodes[0].wait_for_traffic(5)
    res = _results(_run(nodes, _vectors(3)))
    np.testing.assert_array_equal(res[0].vector, Mean()(_vectors(3)))
    assert res[0].stats.drops == {"malformed": 1}
    assert len({r.sha256 for r in res}) == 1


class _LyingOwner:
    """Mean's spec, but the merged shard this owner sends back is NaN."""

    spec = Mean().spec

    def __call__(
        self, shards: list[np.ndarray], weights: list[float], names: list[str], offset: int
    ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
        yield from ()
        return np.full_like(shards[0], np.nan)


def test_a_non_finite_merged_shard_names_its_owner_not_an_honest_node(
    nodes: list[ShardedExchange],
) -> None:
    out = _run(nodes, _vectors(3), merges=[None, None, _LyingOwner()])
    for i in (0, 1):
        assert isinstance(out[i], PeerRejected), out[i]
        assert out[i].culprits == ("n2",)  # type: ignore[union-attr]
        assert "NaN or Inf" in str(out[i])
    # the others retry without the liar and agree on a finite model
    res = _results(_run(nodes[:2], _vectors(2), peers=_peers(nodes)[:2], attempt=1))
    assert np.isfinite(res[0].vector).all()


def test_a_participant_announcing_a_bad_data_endpoint_is_refused_by_name(
    nodes: list[ShardedExchange],
) -> None:
    nodes[2].data_endpoint = "ipc:///tmp/elsewhere"  # what it tells the others in its key
    out = _run(nodes, _vectors(3))
    for i in (0, 1):
        assert isinstance(out[i], PeerRejected) and out[i].culprits == ("n2",), out[i]


# ------------------------------------------------------------------ properties


def _state(encrypted: bool = True) -> RoundState:
    peers = [Peer(f"p{i}", f"tcp://127.0.0.1:{9000 + i}", bytes([65 + i]) * 40) for i in range(3)]
    out = np.zeros(10, np.float32)
    return RoundState(
        round_id=0, attempt=0, peers=peers, me=0, dtype=out.dtype,
        bounds=shard_bounds(10, 3), agreement=Mean().spec, encrypted=encrypted, out=out,
        stats=RoundStats(0, 0, tuple(p.name for p in peers)),
        index_by_key={p.public_key.decode(): i for i, p in enumerate(peers)},
    )  # fmt: skip


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=30), st.lists(st.integers(-3, 10**20), max_size=4),
    st.sampled_from(["<f4", "<f8", "|O", "00" * 12, "zz" * 12, "tcp://127.0.0.1:1", ""]),
)  # fmt: skip
_FIELDS = ["r", "a", "s", "t", "i", "n", "w", "q", "dt", "nonce", "c", "why", "timeout",
           "st", "data", "enc", "cred"]  # fmt: skip


@st.composite
def _headers(draw: st.DrawFn) -> bytes:
    """Headers near the schema: a real kind, real field names, any values, some dropped."""
    kind = draw(st.sampled_from([KEY, REDUCE, ABORT, CONTRIB, MERGED, DONE]))
    names = draw(st.lists(st.sampled_from(_FIELDS), unique=True, max_size=len(_FIELDS)))
    fields = {name: draw(_values) for name in names}
    fields.update({k: draw(st.sampled_from([0, 1, 2, -1, 10**25])) for k in ("r", "a", "s", "t")})
    return _raw_header(**{**fields, "k": kind})


@settings(max_examples=300)
@given(header=_headers(), payload=st.binary(max_size=64), extra=st.integers(0, 2))
def test_any_data_message_is_taken_or_dropped_never_raised(
    header: bytes, payload: bytes, extra: int
) -> None:
    state = _state()
    frames = [zmq.Frame(header), zmq.Frame(payload)] + [zmq.Frame(b"x")] * extra
    taken = state.on_data_frames(frames)
    # every message is taken, or dropped and counted, or held until its sender's key comes
    held = sum(len(q) for q in state.pending.values())
    assert taken or state.stats.dropped + held == 1


@settings(max_examples=300)
@given(header=_headers(), frames=st.lists(st.binary(max_size=48), max_size=3),
       sender=st.integers(0, 3))  # fmt: skip
def test_any_control_message_is_taken_or_dropped_never_raised(
    header: bytes, frames: list[bytes], sender: int
) -> None:
    state = _state()
    user = (bytes([65 + sender]) * 40).decode()  # a participant's key, or (3) nobody's
    parsed = parse_header(header)[0]
    if parsed is None:
        return  # refused by the parser (its own property test covers it)
    taken = state.on_control(parsed, user, [zmq.Frame(header), *map(zmq.Frame, frames)])
    assert taken or state.stats.dropped == 1  # taken, or dropped and counted


def test_the_merged_vector_hash_is_over_finite_values_only() -> None:
    state = _state(encrypted=False)
    state.recv_keys[1] = None
    a, b = state.bounds[1]
    header = encode_header(MERGED, r=0, a=0, s=1, t=0, i=1, dt="<f4", n=b - a, nonce="")
    poison = np.full(b - a, np.inf, np.float32).tobytes()
    assert state.on_data_frames([zmq.Frame(header), zmq.Frame(poison)])
    assert isinstance(state.abort, PeerRejected) and state.abort.culprits == ("p1",)
    assert (1, 1) not in state.merged_from and np.isfinite(state.out).all()
    assert state.hasher.hexdigest() == hashlib.sha256().hexdigest()  # nothing hashed


@pytest.mark.slow
def test_a_live_swarm_under_a_flood_of_malformed_frames_keeps_merging() -> None:
    """The short form of benchmarks/fuzz.py: 3 node processes, a fourth attacking node 0."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz.py"
    done = subprocess.run(
        [sys.executable, str(script), "--cases", "600", "--seconds", "8"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    last = done.stdout.strip().splitlines()[-1]
    assert last.endswith("crashed=0 hung=0 mismatched=0"), done.stdout[-3000:] + done.stderr[-3000:]
    assert int(last.split("cases=")[1].split()[0]) >= 600
    rounds = int(done.stdout.split(" rounds merged")[0].rsplit("fuzz: ", 1)[1])
    assert rounds >= 3 and done.returncode == 0


def test_a_message_that_makes_a_check_raise_is_dropped_and_the_round_goes_on(
    nodes: list[ShardedExchange], monkeypatch: pytest.MonkeyPatch
) -> None:
    # stands in for a check that has a bug: whatever a check raises, the node goes on
    checked = RoundState.on_data

    def on_data(self: RoundState, header: dict[str, Any], raw: bytes, payload: zmq.Frame) -> bool:
        if header["r"] == 999:
            raise RuntimeError("a check that fell over")
        return checked(self, header, raw, payload)

    monkeypatch.setattr(RoundState, "on_data", on_data)
    _inject(nodes[0].data_endpoint, [[encode_header(CONTRIB, **{**GOOD, "r": 999}), b"\0" * 32]])
    assert nodes[0].wait_for_traffic(5)
    res = _results(_run(nodes, _vectors(3)))
    np.testing.assert_array_equal(res[0].vector, Mean()(_vectors(3)))
    assert res[0].stats.drops == {"malformed": 1}
