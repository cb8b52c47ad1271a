"""Foreign, replayed, tampered, truncated and mis-shaped messages against real sockets.

Nodes run in threads of this process, each with its own ZeroMQ context, CURVE
keys and sockets on 127.0.0.1; attackers use their own contexts and keys.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pytest
import zmq

from swarmlib.errors import ConfigurationError, PeerRejected, PeerTimeout
from swarmlib.merge import First, Mean, get_strategy
from swarmlib.transport import CurveKeyPair, Peer, RoundResult, ShardedExchange, crypto
from swarmlib.transport.framing import CONTRIB, KEY, encode_header, parse_header
from tests.conftest import run_threads

MEAN = Mean().sharded()


def _peers(exchanges: list[ShardedExchange]) -> list[Peer]:
    return [Peer(ex.name, ex.endpoint, ex.public_key) for ex in exchanges]


def _run(
    exchanges: list[ShardedExchange],
    vectors: list[np.ndarray],
    round_id: int = 0,
    **kw: Any,
) -> list[RoundResult | BaseException]:
    peers = kw.pop("peers", None) or _peers(exchanges)
    name = kw.pop("strategy", "mean")
    default = (First() if name == "first" else get_strategy(name)).sharded()
    merges = kw.pop("merges", None) or [None] * len(exchanges)
    delays = kw.pop("delays", None) or [0.0] * len(exchanges)
    out: list[RoundResult | BaseException] = [RuntimeError("did not run")] * len(exchanges)

    def work(i: int) -> None:
        time.sleep(delays[i])
        try:
            merge = merges[i] or default
            out[i] = exchanges[i].run_round(peers, vectors[i], round_id=round_id, merge=merge, **kw)
        except BaseException as e:  # reported to the test
            out[i] = e

    run_threads(work, len(exchanges))
    return out


def _vectors(n: int, size: int = 10) -> list[np.ndarray]:
    return [
        np.full(size, float(i), np.float32) + np.arange(size, dtype=np.float32) for i in range(n)
    ]


def _results(out: list[RoundResult | BaseException]) -> list[RoundResult]:
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out  # type: ignore[return-value]


def test_round_returns_identical_mean_and_its_hash(nodes: list[ShardedExchange]) -> None:
    vecs = _vectors(3)
    res = _results(_run(nodes, vecs))
    np.testing.assert_array_equal(res[0].vector, Mean()(vecs))
    assert len({r.sha256 for r in res}) == 1
    assert all(r.vector.tobytes() == res[0].vector.tobytes() for r in res)


@pytest.mark.parametrize("strategy", ["first", "mean"])
def test_a_participant_that_starts_its_round_late_is_waited_for(
    nodes: list[ShardedExchange], strategy: str, caplog: pytest.LogCaptureFixture
) -> None:
    # n2 refuses the others' CURVE handshakes until it starts the round; with "first"
    # the others hold every value before n2 even starts, and must still let it in.
    vecs = _vectors(3)
    with caplog.at_level(logging.INFO, logger="swarmlib.transport.sockets"):
        for round_id in range(2):
            res = _results(_run(nodes, vecs, round_id, strategy=strategy, delays=[0, 0, 1.5]))
            assert len({r.sha256 for r in res}) == 1
            assert [len(r.stats.participants) for r in res] == [3, 3, 3]
    # the others knocked again after pauses that doubled (0.2 s, 0.4 s, ...), not every 0.2 s
    pauses = {r.args[-1] for r in caplog.records if isinstance(r.args, tuple) and r.args}
    assert {0.2, 0.4} <= pauses


def test_junk_on_the_data_port_is_dropped_and_the_round_completes(
    nodes: list[ShardedExchange],
) -> None:
    target = nodes[0]
    assert not target.wait_for_traffic(0.05)  # nothing sent yet
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(target.data_endpoint)
    good = dict(r=0, a=0, s=1, t=0, i=0, dt="<f4", n=4, w=1.0, nonce="00" * 12)  # shard 0: 4 values
    junk: list[list[bytes]] = [
        [b"only one frame"],
        [b"not json", b"x"],
        [encode_header(CONTRIB, **{**good, "r": 7}), b"\0" * 20],  # another round
        [encode_header(CONTRIB, **{**good, "n": 5}), b"\0" * 36],  # wrong shape
        [encode_header(CONTRIB, **{**good, "dt": "<f8"}), b"\0" * 48],  # wrong dtype
        [encode_header(CONTRIB, **good), b"\0" * 10],  # truncated
        [encode_header(CONTRIB, **good), b"\0" * 32],  # forged: fails authentication
        [encode_header(CONTRIB, **{**good, "s": 0}), b"\0" * 32],  # claims to be the receiver
    ]
    for frames in junk:
        push.send_multipart(frames)
    push.close(linger=2000)
    ctx.term()
    # a node waiting for its round on chain wakes up for a message, and leaves it to the round
    assert target.wait_for_traffic(5)
    res = _results(_run(nodes, _vectors(3)))
    np.testing.assert_array_equal(res[0].vector, Mean()(_vectors(3)))
    assert res[0].stats.dropped == len(junk)
    # frames, header, shape, dtype, truncation; another round; forged; a false sender
    assert res[0].stats.drops == {"malformed": 5, "stale": 1, "tampered": 1, "foreign": 1}


class _Tap:
    """Sits between a sender and a node's data port and attacks what passes.

    For every message it first sends a copy with one ciphertext byte flipped
    and a copy with a tampered header (a larger weight, or reformatted JSON),
    then every message it saw in earlier rounds, then the original twice.
    """

    def __init__(self, upstream: str):
        self.ctx = zmq.Context()
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.bind("tcp://127.0.0.1:*")
        self.endpoint = self.pull.getsockopt_string(zmq.LAST_ENDPOINT)
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.connect(upstream)
        self.seen: list[list[bytes]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.pull.poll(50):
                continue
            header, body = self.pull.recv_multipart()
            flipped = bytearray(body)
            flipped[0] ^= 1
            parsed, _ = parse_header(header)
            assert parsed is not None
            kind = parsed.pop("k")
            parsed.pop("v")
            if "w" in parsed:
                forged = encode_header(kind, **{**parsed, "w": 1e6})
            else:
                forged = header.replace(b'"i":', b'"i": ')
            older = [m for m in self.seen if parse_header(m[0])[0]["r"] != parsed["r"]]  # type: ignore[index]
            for frames in [
                [header, bytes(flipped)],
                [forged, body],
                *older,
                [header, body],
                [header, body],
            ]:
                self.push.send_multipart(frames)
            self.seen.append([header, body])

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.pull.close(0)
        self.push.close(1000)
        self.ctx.term()


def test_replayed_and_tampered_shards_are_dropped(
    nodes: list[ShardedExchange], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes[0], nodes[1]
    tap = _Tap(b.data_endpoint)
    b.data_endpoint = tap.endpoint  # a learns this address from b's key message
    drops: dict[str, int] = {}
    try:
        for r in range(3):
            vecs = [v + r for v in _vectors(2)]
            res = _results(_run([a, b], vecs, round_id=r, weight=2.0))
            np.testing.assert_array_equal(res[1].vector, Mean()(vecs))
            assert res[0].sha256 == res[1].sha256
            for kind, count in res[1].stats.drops.items():
                drops[kind] = drops.get(kind, 0) + count
    finally:
        tap.close()
    assert len(tap.seen) == 6  # a contrib and a merged shard per round
    # the two tampered copies of each message; the replays of this round and of the last
    assert drops["tampered"] >= 2 * len(tap.seen)
    assert drops["replayed"] >= 1 and drops["stale"] >= 1


def test_a_foreign_curve_key_cannot_inject_a_shard(
    nodes: list[ShardedExchange], caplog: pytest.LogCaptureFixture
) -> None:
    victim = nodes[0]  # mallory claims to be nodes[1]
    mallory = CurveKeyPair.generate()
    ctx = zmq.Context()
    ctl = ctx.socket(zmq.PUSH)
    ctl.curve_secretkey, ctl.curve_publickey = mallory.secret, mallory.public
    ctl.curve_serverkey = victim.public_key
    ctl.connect(victim.endpoint)
    data = ctx.socket(zmq.PUSH)
    data.connect(victim.data_endpoint)
    key = crypto.new_key()
    n = 4  # victim's shard of a 10-value vector among 3
    ctl.send_multipart(
        [
            encode_header(
                KEY,
                r=0,
                a=0,
                s=1,
                t=0,
                n=10,
                dt="<f4",
                st=repr(Mean()),
                data="tcp://127.0.0.1:1",
                enc=True,
                cred=False,
            ),
            key,
        ]
    )
    nonce = crypto.new_nonce()
    header = encode_header(
        CONTRIB, r=0, a=0, s=1, t=0, i=0, dt="<f4", n=n, w=1e6, nonce=nonce.hex()
    )
    evil = np.full(n, 1e9, np.float32)
    data.send_multipart(
        [header, bytes(crypto.seal(key, nonce, header, memoryview(evil).cast("B")))]
    )
    time.sleep(0.3)
    with caplog.at_level(logging.WARNING, logger="swarmlib.transport.auth"):
        res = _results(_run(nodes, _vectors(3)))
    ctl.close(0)
    data.close(0)
    ctx.term()
    np.testing.assert_array_equal(res[0].vector, Mean()(_vectors(3)))
    # its key message was refused at the handshake (and the refusal reported, naming the key);
    # its shard, claiming to be n1's, failed authentication once n1's real key had come
    assert any(mallory.public.decode() in r.getMessage() for r in caplog.records)
    assert res[0].stats.drops.get("tampered") == 1


def test_a_refused_member_is_not_reported_as_a_stranger(caplog: pytest.LogCaptureFixture) -> None:
    """A member a round ahead of this node knocks and is refused quietly; a stranger is warned."""
    member, stranger = CurveKeyPair.generate(), CurveKeyPair.generate()
    asked: list[bytes] = []

    def is_member(key: bytes) -> bool:
        asked.append(key)
        return key == member.public

    ex = ShardedExchange(timeout=5, linger_ms=0, name="n0", is_member=is_member)
    ctx = zmq.Context()
    try:
        with caplog.at_level(logging.DEBUG, logger="swarmlib.transport.auth"):
            for pair in (member, stranger):
                sock = ctx.socket(zmq.PUSH)
                sock.linger = 0
                sock.curve_secretkey, sock.curve_publickey = pair.secret, pair.public
                sock.curve_serverkey = ex.public_key
                sock.connect(ex.endpoint)
                deadline = time.monotonic() + 5
                while pair.public not in asked and time.monotonic() < deadline:
                    time.sleep(0.05)
                sock.close(0)
    finally:
        ctx.term()
        ex.close()
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [member.public, stranger.public] == list(dict.fromkeys(asked))
    assert len(refusals) == 1 and stranger.public.decode() in refusals[0].getMessage()
    quiet = [r for r in caplog.records if member.public.decode() in r.getMessage()]
    assert quiet and all(r.levelno == logging.DEBUG for r in quiet)


def test_a_silent_participant_times_out_by_name(nodes: list[ShardedExchange]) -> None:
    for ex in nodes:
        ex.timeout = 1.0
    peers = _peers(nodes)
    started = time.monotonic()
    out = _run(nodes[:2], _vectors(2), peers=peers)  # n2 never shows up
    elapsed = time.monotonic() - started
    for err in out:
        assert isinstance(err, PeerTimeout)
        assert err.culprits == ("n2",)
        assert "n2" in str(err)
    assert elapsed < 30  # the 1 s timeout, not pytest's: a silent peer never hangs a round
    # the caller retries the round, as the next attempt, without n2
    res = _results(_run(nodes[:2], _vectors(2), peers=peers[:2], attempt=1))
    np.testing.assert_array_equal(res[0].vector, Mean()(_vectors(2)))


def test_a_participant_with_another_model_is_rejected_by_name(nodes: list[ShardedExchange]) -> None:
    vecs = _vectors(3)
    vecs[2] = np.zeros(12, np.float32)
    out = _run(nodes, vecs)
    assert isinstance(out[0], PeerRejected) and out[0].culprits == ("n2",)
    assert "12" in str(out[0]) and "10" in str(out[0])


def test_a_non_finite_update_is_refused_and_every_node_learns_who_sent_it(
    nodes: list[ShardedExchange],
) -> None:
    vecs = _vectors(3)
    vecs[1][0] = np.nan  # lands in n0's shard
    out = _run(nodes, vecs)
    for err in out:
        assert isinstance(err, PeerRejected), err
        assert err.culprits == ("n1",)
    assert "NaN" in str(out[0]) or "nan" in str(out[0])


def test_bad_arguments_are_refused(nodes: list[ShardedExchange]) -> None:
    peers = _peers(nodes)
    ex = nodes[0]
    with pytest.raises(ConfigurationError, match="not in the participant list"):
        ex.run_round(peers[1:], np.zeros(3, np.float32), round_id=0, merge=MEAN)
    with pytest.raises(ConfigurationError, match="1-D floating-point"):
        ex.run_round(peers, np.zeros((2, 2), np.float32), round_id=0, merge=MEAN)
    with pytest.raises(ConfigurationError, match="weight"):
        ex.run_round(peers, np.zeros(3, np.float32), round_id=0, weight=0, merge=MEAN)
    with pytest.raises(ConfigurationError, match="distinct"):
        ex.run_round([peers[0], peers[0]], np.zeros(3, np.float32), round_id=0, merge=MEAN)
    with pytest.raises(ConfigurationError, match="timeout"):
        ShardedExchange(timeout=0)


def test_rounds_only_go_forward(nodes: list[ShardedExchange]) -> None:
    vecs = _vectors(3)
    _results(_run(nodes, vecs, round_id=3))
    with pytest.raises(ConfigurationError, match=r"retry a failed round as `attempt \+ 1`"):
        nodes[0].run_round(_peers(nodes), vecs[0], round_id=3, merge=MEAN)
    with pytest.raises(ConfigurationError, match="only go forward"):
        nodes[0].run_round(_peers(nodes), vecs[0], round_id=2, attempt=5, merge=MEAN)
    with pytest.raises(ConfigurationError, match="tcp://"):
        ShardedExchange(bind="ipc:///tmp/x")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 2, 7])
def test_tiny_models_and_every_float_dtype(
    nodes: list[ShardedExchange], dtype: type, size: int
) -> None:
    vecs = [np.arange(size, dtype=dtype) * (i + 1) for i in range(3)]  # some shards are empty
    res = _results(_run(nodes, vecs, strategy="coordinate_median"))
    for r in res:
        assert r.vector.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(r.vector, vecs[1])
    assert len({r.sha256 for r in res}) == 1


def test_out_buffer_is_filled_and_checked(nodes: list[ShardedExchange]) -> None:
    vecs = _vectors(3)
    outs = [np.empty(10, np.float32) for _ in range(3)]
    peers = _peers(nodes)
    res: list[RoundResult | BaseException] = [RuntimeError()] * 3

    def work(i: int) -> None:
        res[i] = nodes[i].run_round(peers, vecs[i], round_id=0, out=outs[i], merge=MEAN)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i, r in enumerate(_results(res)):
        assert r.vector is outs[i]
        np.testing.assert_array_equal(outs[i], Mean()(vecs))
    with pytest.raises(ConfigurationError, match="out"):
        nodes[0].run_round(peers, vecs[0], round_id=1, out=np.empty(9, np.float32), merge=MEAN)
    with pytest.raises(ConfigurationError, match="share memory"):
        nodes[0].run_round(peers, vecs[0], round_id=1, out=vecs[0], merge=MEAN)
