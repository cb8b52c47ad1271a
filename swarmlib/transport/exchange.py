"""One sync round among peers, with no leader: reduce-scatter, merge at each owner, all-gather.

The flattened parameter vector is cut into as many shards as there are
participants; participant *i* owns shard *i*. In a round each node

1. sends every other participant a ``key`` message on the CURVE control channel
   (a fresh AES-256 key for the shards it will send that peer, its data endpoint
   and its model facts), and waits for theirs;
2. sends shard *j* of its vector, sealed, to owner *j* (``contrib``), and
   receives the others' slices of its own shard;
3. merges its shard with the chosen :class:`~swarmlib.merge.Strategy`
   (strategies needing whole-vector scalars use ``reduce`` messages);
4. sends its merged shard, sealed, to every participant (``merged``) and
   receives theirs.

Each node moves ``2(N-1)/N`` of the model and ends with the same bytes. A
message that is foreign, for another round, replayed, truncated, tampered with
or of the wrong shape is dropped and logged. A participant that sends nothing
expected for ``timeout`` seconds fails the round with :class:`PeerTimeout`
naming it, on every node; the caller retries as the next attempt without it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from swarmlib.errors import (
    ConfigurationError,
    IdentityError,
    MergeError,
    PeerRejected,
    PeerTimeout,
    RoundFailed,
    SwarmError,
)
from swarmlib.merge import ShardContext, Strategy, get_strategy
from swarmlib.params import Layout
from swarmlib.transport import crypto
from swarmlib.transport.auth import ZAP_DOMAIN, CurveKeyPair, ParticipantAuthenticator
from swarmlib.transport.framing import (
    ABORT,
    CONTRIB,
    DONE,
    KEY,
    MERGED,
    REDUCE,
    encode_header,
    parse_header,
    payload_nbytes,
)

__all__ = ["Peer", "RoundResult", "RoundStats", "ShardedExchange", "shard_bounds"]

logger = logging.getLogger(__name__)

_EARLY_LIMIT = 1024  # control messages kept for rounds this node has not started yet
_PENDING_LIMIT = 8  # shards held per sender while its key is still on the way
_RETRY_S = 0.2  # pause before reconnecting to a peer that refused our CURVE handshake
_RETRY_MAX_S = 3.0  # the pause doubles with each refusal in a row, up to this
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_WATCHED = _HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


@dataclass(frozen=True)
class Peer:
    """A participant of a round.

    Attributes:
        name: Human-readable name used in logs and errors (e.g. its SPIFFE ID).
        endpoint: Its control endpoint, ``tcp://host:port`` (CURVE server).
        public_key: Its Z85-encoded CURVE public key (40 bytes).
    """

    name: str
    endpoint: str
    public_key: bytes


@dataclass
class RoundStats:
    """What one round cost on this node."""

    round_id: int
    attempt: int
    participants: tuple[str, ...]
    bytes_sent: int = 0
    bytes_received: int = 0
    dropped: int = 0
    keys_s: float = 0.0
    scatter_s: float = 0.0
    merge_s: float = 0.0
    gather_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class RoundResult:
    """The merged vector (identical on every participant), its SHA-256 and the round's stats."""

    vector: np.ndarray
    sha256: str
    stats: RoundStats


def shard_bounds(length: int, n: int) -> list[tuple[int, int]]:
    """Cut ``length`` values into ``n`` contiguous shards; the first ``length % n`` get one more."""
    base, extra = divmod(length, n)
    bounds, start = [], 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


@dataclass
class _Round:
    """State of the round in progress on this node."""

    round_id: int
    attempt: int
    peers: list[Peer]
    me: int
    dtype: np.dtype[Any]
    bounds: list[tuple[int, int]]
    strategy: str
    encrypted: bool
    out: np.ndarray
    stats: RoundStats
    index_by_key: dict[str, int] = field(default_factory=dict)
    send_keys: dict[int, bytes] = field(default_factory=dict)
    recv_keys: dict[int, bytes | None] = field(default_factory=dict)
    data_endpoints: dict[int, str] = field(default_factory=dict)
    contribs: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)
    merged_from: set[int] = field(default_factory=set)
    merged_own: bool = False
    done_from: set[int] = field(default_factory=set)
    reduces: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    pending: dict[int, list[tuple[dict[str, Any], bytes, zmq.Frame]]] = field(default_factory=dict)
    sent_ctl: dict[int, list[list[bytes]]] = field(default_factory=dict)
    hasher: Any = field(default_factory=hashlib.sha256)
    hashed: int = 0  # shards 0..hashed-1 of ``out`` are final and fed to ``hasher``
    next_reduce: int = 0
    abort: RoundFailed | None = None

    @property
    def others(self) -> list[int]:
        return [j for j in range(len(self.peers)) if j != self.me]

    def names(self, idx: Sequence[int]) -> list[str]:
        return [self.peers[j].name for j in idx]

    def hash_ready_shards(self) -> None:
        """Feed the hash with every final shard, in order, as soon as it is there.

        Hashing while other shards are still on the wire hides most of its cost.
        """
        while self.hashed < len(self.peers) and (
            self.hashed in self.merged_from or (self.hashed == self.me and self.merged_own)
        ):
            a, b = self.bounds[self.hashed]
            self.hasher.update(self.out[a:b].data.cast("B"))
            self.hashed += 1

    def header(self, kind: str, to: int, **fields: Any) -> bytes:
        """A header of this round and attempt, from this node to participant ``to``."""
        return encode_header(kind, r=self.round_id, a=self.attempt, s=self.me, t=to, **fields)

    def is_current(self, header: dict[str, Any]) -> bool:
        return bool(header["r"] == self.round_id and header["a"] == self.attempt)

    def is_future(self, header: dict[str, Any]) -> bool:
        return bool((header["r"], header["a"]) > (self.round_id, self.attempt))


def _tcp_bind_address(endpoint: str) -> str:
    if not endpoint.startswith("tcp://"):
        raise ConfigurationError(
            f"Invalid endpoint {endpoint!r}: expected tcp://host:port (port 0 or * for any)."
        )
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    if not host or not port:
        raise ConfigurationError(f"Invalid endpoint {endpoint!r}: expected tcp://host:port.")
    return f"tcp://{host}:{'*' if port in ('0', '*') else port}"


class ShardedExchange:
    """This node's end of the sharded peer-to-peer exchange.

    It binds two sockets once: a CURVE control socket (``endpoint``, which peers
    know together with this node's public key) that admits only the current
    round's participants, and a data socket for sealed shards, whose address
    peers learn over the control channel.

    Args:
        keypair: This node's CURVE key pair. Defaults to a fresh one.
        bind: Control endpoint to bind, ``tcp://host:port``; port ``0`` picks a
            free port. Defaults to ``"tcp://127.0.0.1:0"``.
        data_bind: Data endpoint to bind. Defaults to the control host, any port.
        advertise_host: Host name peers should use for the data endpoint when
            binding a wildcard address. Defaults to the bound host.
        plaintext: Send shards unencrypted and unauthenticated. **For
            benchmarking only**: anyone on the network can read and forge
            shards. The control channel stays CURVE. Defaults to ``False``.
        timeout: Seconds a round waits without receiving any expected message
            before failing with :class:`PeerTimeout`. Defaults to 60.
        linger_ms: How long ``close()`` waits to deliver queued messages.
            Defaults to 2000.
        name: Name of this node in logs. Defaults to the control endpoint.
        credentials: Returns this node's identity credentials, sent to every
            participant in each round's ``key`` message (called every round, so
            a rotated identity is used from the next round). Defaults to none.
        verify_peer: Checks a participant's credentials before any of its
            shards is accepted; raises a :class:`~swarmlib.errors.SwarmError`
            to refuse it (the round then fails with :class:`PeerRejected`
            naming it). Defaults to no check.
        is_member: Whether a Z85 CURVE public key belongs to a member of the
            swarm. Only tells how a refused handshake is logged: a member's (a
            peer already in a round this node has not started) at debug level,
            a stranger's as a warning, once per key. Defaults to treating
            every key never admitted as a stranger's.

    Example:
        >>> with ShardedExchange() as ex:                    # doctest: +SKIP
        ...     me = Peer("node-a", ex.endpoint, ex.public_key)
        ...     result = ex.run_round([me, other], weights, round_id=0)
    """

    def __init__(
        self,
        keypair: CurveKeyPair | None = None,
        *,
        bind: str = "tcp://127.0.0.1:0",
        data_bind: str | None = None,
        advertise_host: str | None = None,
        plaintext: bool = False,
        timeout: float = 60.0,
        linger_ms: int = 2000,
        name: str | None = None,
        credentials: Callable[[], bytes] | None = None,
        verify_peer: Callable[[Peer, bytes], None] | None = None,
        is_member: Callable[[bytes], bool] | None = None,
    ):
        if not timeout > 0:
            raise ConfigurationError(
                f"Invalid value for argument `timeout`. Received: timeout={timeout!r}. "
                "Expected a positive number of seconds."
            )
        self.keypair = keypair or CurveKeyPair.generate()
        self.plaintext = plaintext
        self.timeout = float(timeout)
        self.linger_ms = int(linger_ms)
        self.credentials = credentials
        self.verify_peer = verify_peer
        if plaintext:
            logger.warning(
                "Plaintext mode: shards are sent unencrypted and unauthenticated. "
                "Use it for benchmarks only."
            )
        bind_addr = _tcp_bind_address(bind)
        host = bind_addr[len("tcp://") :].rpartition(":")[0]
        data_addr = _tcp_bind_address(data_bind or f"tcp://{host}:0")
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._auth: ParticipantAuthenticator | None = None
        self._ctl_out: dict[tuple[str, bytes], zmq.Socket[bytes]] = {}
        self._monitors: dict[zmq.Socket[bytes], tuple[str, bytes]] = {}
        self._retry_at: dict[tuple[str, bytes], float] = {}
        # refusals in a row per peer: the pause before the next try doubles with each, so
        # that a large swarm whose members start a round seconds apart does not spend its
        # CPU on CURVE handshakes (32 nodes on 2 cores retrying every 0.2 s never got in)
        self._refusals: dict[tuple[str, bytes], int] = {}
        self._gone: set[tuple[str, bytes]] = set()  # peers whose connection dropped
        # Buffers reused from round to round: fresh pages cost the kernel a fault and a
        # memset each, which adds up to a fifth of a round on large models.
        self._spare_recv: list[np.ndarray] = []
        self._spare_seal: list[tuple[bytearray, zmq.MessageTracker]] = []
        self._data_out: dict[str, zmq.Socket[bytes]] = {}
        self._early: deque[tuple[dict[str, Any], str, list[bytes]]] = deque(maxlen=_EARLY_LIMIT)
        try:
            self._auth = ParticipantAuthenticator(self._ctx, is_member)
            self._ctl_in = self._ctx.socket(zmq.PULL)
            self._ctl_in.linger = 0
            self._ctl_in.curve_server = True
            self._ctl_in.curve_secretkey = self.keypair.secret
            self._ctl_in.curve_publickey = self.keypair.public
            self._ctl_in.zap_domain = ZAP_DOMAIN.encode()
            self._ctl_in.bind(bind_addr)
            self._data_in = self._ctx.socket(zmq.PULL)
            self._data_in.linger = 0
            self._data_in.bind(data_addr)
        except zmq.ZMQError as e:
            self.close()
            raise ConfigurationError(f"Cannot bind {bind!r} / {data_addr!r}: {e}") from e
        self.endpoint: str = self._ctl_in.getsockopt_string(zmq.LAST_ENDPOINT)
        data_ep = self._data_in.getsockopt_string(zmq.LAST_ENDPOINT)
        if advertise_host is not None:
            data_ep = f"tcp://{advertise_host}:{data_ep.rpartition(':')[2]}"
        elif host in ("*", "0.0.0.0", "[::]"):
            self.close()
            raise ConfigurationError(
                f"Bound to the wildcard address {host!r}: pass `advertise_host` so that "
                "peers know where to send shards."
            )
        self.data_endpoint: str = data_ep
        self.name = name or self.endpoint
        self._poller = zmq.Poller()
        self._poller.register(self._ctl_in, zmq.POLLIN)
        self._poller.register(self._data_in, zmq.POLLIN)
        self._arrivals = zmq.Poller()  # the same two sockets, without the connection monitors
        self._arrivals.register(self._ctl_in, zmq.POLLIN)
        self._arrivals.register(self._data_in, zmq.POLLIN)
        self._closed = False
        self._last_round: tuple[int, int] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def public_key(self) -> bytes:
        """This node's Z85 CURVE public key."""
        return self.keypair.public

    def wait_for_traffic(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a peer's message, without reading it.

        Returns True as soon as one is waiting. A node that waits for its round to
        close on chain sleeps here, so that it looks at the chain again the moment
        a peer has begun the round instead of at its next poll.
        """
        return bool(self._arrivals.poll(max(0, int(seconds * 1000))))

    def close(self) -> None:
        """Close every socket and the context (waits up to ``linger_ms`` for queued sends)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for key in list(self._ctl_out):
            self._close_ctl(key, linger=self.linger_ms)
        for sock in self._data_out.values():
            sock.close(linger=self.linger_ms)
        self._data_out.clear()
        for attr in ("_ctl_in", "_data_in"):
            inbound: zmq.Socket[bytes] | None = getattr(self, attr, None)
            if inbound is not None:
                inbound.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    def __enter__(self) -> ShardedExchange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------- round

    def run_round(
        self,
        participants: Sequence[Peer],
        vector: np.ndarray,
        *,
        round_id: int,
        attempt: int = 0,
        weight: float = 1.0,
        strategy: str | Strategy = "mean",
        layout: Layout | None = None,
        out: np.ndarray | None = None,
    ) -> RoundResult:
        """Exchange and merge ``vector`` with the participants.

        Args:
            participants: Every participant, this node included, in the agreed
                order (the same list on every node).
            vector: This node's flattened parameters (1-D, floating point).
            round_id: The round agreed for this sync.
            attempt: The attempt of this round (0 first; +1 on each retry).
            weight: This node's merge weight (e.g. its number of training
                samples). Defaults to 1.
            strategy: The merge strategy, by name or instance. Every participant
                must use the same. Defaults to ``"mean"``.
            layout: Layer layout of the vector, to name layers in errors.
                Defaults to ``None`` (errors name coordinates).
            out: Where to write the merged vector: a contiguous array of the
                vector's shape and dtype, not sharing memory with it. Reusing one
                array round after round saves an allocation. Defaults to a new array.

        Returns:
            The merged vector, byte-identical on every participant, with its
            SHA-256 and this node's stats.

        Raises:
            PeerTimeout: a participant sent nothing expected within the timeout.
            PeerRejected: a participant's contribution was refused (other model
                size or dtype, NaN/Inf, bad weight), or a participant abandoned
                the round because of another.
            ConfigurationError: bad arguments (this node not in the list,
                duplicated peers, a vector that is not a 1-D float array).
        """
        if self._closed:
            raise ConfigurationError("This exchange is closed; create a new one.")
        started = time.perf_counter()
        merge = get_strategy(strategy)
        st, own = self._begin(participants, vector, round_id, attempt, weight, merge, out)
        vec = st.out  # merged shards land here
        try:
            self._send_keys(st)
            self._pump(st, lambda: all(j in st.recv_keys for j in st.others), "key")
            t = time.perf_counter()
            st.stats.keys_s = t - started
            for j in st.others:
                self._send_shard(st, j, CONTRIB, own, weight=weight)
            self._pump(st, lambda: all(j in st.contribs for j in st.others), "contrib")
            t2 = time.perf_counter()
            st.stats.scatter_s = t2 - t
            merged = self._merge_own_shard(st, own, weight, merge, layout)
            t3 = time.perf_counter()
            st.stats.merge_s = t3 - t2
            a, b = st.bounds[st.me]
            vec[a:b] = merged
            for j in st.others:
                self._send_shard(st, j, MERGED, vec)
            st.merged_own = True
            st.hash_ready_shards()
            self._pump(st, lambda: all(j in st.merged_from for j in st.others), "merged")
            st.stats.gather_s = time.perf_counter() - t3
            self._confirm(st)
        except RoundFailed as e:
            if st.abort is not e:
                self._broadcast_abort(st, e)
            raise
        except BaseException as e:
            self._broadcast_abort(st, e)
            raise
        finally:
            if st.encrypted:  # decrypted contributions are ours; nothing refers to them now
                self._spare_recv = [buf for buf, _ in st.contribs.values()]
        st.hash_ready_shards()
        digest = st.hasher.hexdigest()
        st.stats.total_s = time.perf_counter() - started
        logger.info(
            "%s: round %d attempt %d merged among %d participants in %.3fs "
            "(%.1f MB sent, %d dropped), sha256 %s",
            self.name,
            round_id,
            attempt,
            len(st.peers),
            st.stats.total_s,
            st.stats.bytes_sent / 1e6,
            st.stats.dropped,
            digest[:12],
        )
        return RoundResult(vec, digest, st.stats)

    # ------------------------------------------------------------ round set-up

    def _begin(
        self,
        participants: Sequence[Peer],
        vector: np.ndarray,
        round_id: int,
        attempt: int,
        weight: float,
        merge: Strategy,
        out: np.ndarray | None,
    ) -> tuple[_Round, np.ndarray]:
        """Check the arguments and set up the round; returns its state and the own vector."""
        peers = list(participants)
        keys = [p.public_key for p in peers]
        if len(set(keys)) != len(keys) or len({p.endpoint for p in peers}) != len(peers):
            raise ConfigurationError("Participants must have distinct public keys and endpoints.")
        if self.public_key not in keys:
            raise ConfigurationError(
                f"This node (public key {self.public_key.decode()}) is not in the participant "
                "list; pass the list agreed for this round, this node included."
            )
        if round_id < 0 or attempt < 0:
            raise ConfigurationError("`round_id` and `attempt` must be >= 0.")
        if self._last_round is not None and (round_id, attempt) <= self._last_round:
            last_round, last_attempt = self._last_round
            raise ConfigurationError(
                f"Round {round_id} attempt {attempt} comes after round {last_round} attempt "
                f"{last_attempt} on this node: rounds and attempts only go forward (retry a "
                "failed round as `attempt + 1`), so that no message of an earlier try is "
                "taken for one of this try."
            )
        if not (np.isfinite(weight) and weight > 0):
            raise ConfigurationError(
                f"Invalid value for argument `weight`. Received: weight={weight!r}. "
                "Expected a positive finite number (e.g. the number of training samples)."
            )
        arr = np.asarray(vector)
        if arr.ndim != 1 or arr.dtype.kind != "f":
            raise ConfigurationError(
                f"Expected a 1-D floating-point vector; got shape {arr.shape} dtype {arr.dtype}. "
                "Use swarmlib.params.flatten() on a list of arrays."
            )
        own = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))  # no copy if it is
        if out is None:
            out = np.empty_like(own)
        elif out.shape != own.shape or out.dtype != own.dtype or not out.flags.c_contiguous:
            raise ConfigurationError(
                f"`out` must be a contiguous {own.dtype} array of shape {own.shape}; got "
                f"{out.dtype} {out.shape}."
            )
        elif np.shares_memory(out, own):
            raise ConfigurationError("`out` must not share memory with `vector`.")
        me = keys.index(self.public_key)
        self._last_round = (round_id, attempt)
        st = _Round(
            round_id=round_id,
            attempt=attempt,
            peers=peers,
            me=me,
            dtype=out.dtype,
            bounds=shard_bounds(out.size, len(peers)),
            strategy=repr(merge),
            encrypted=not self.plaintext,
            out=out,
            stats=RoundStats(round_id, attempt, tuple(p.name for p in peers)),
            index_by_key={p.public_key.decode(): i for i, p in enumerate(peers)},
        )
        if self._auth is not None:
            self._auth.allow_only(k for k in keys if k != self.public_key)
        wanted = {(p.endpoint, p.public_key) for p in peers}
        for key in [k for k in self._ctl_out if k not in wanted]:
            self._close_ctl(key, linger=0)
        self._retry_at.clear()
        early, self._early = list(self._early), deque(maxlen=_EARLY_LIMIT)
        for header, user, frames in early:
            if st.is_future(header):
                self._early.append((header, user, frames))
            elif st.is_current(header):
                self._on_control(st, header, user, [zmq.Frame(f) for f in frames])
        return st, own

    # ---------------------------------------------------------------- sending

    def _ctl_socket(self, peer: Peer) -> zmq.Socket[bytes]:
        """The CURVE client socket to ``peer``, watched for refused handshakes.

        libzmq never retries a connection whose handshake the server's ZAP
        handler refused, and drops what was queued on it. A peer refuses us when
        it has not started the round that admits us yet, so a refused socket is
        replaced after a short pause and this round's control messages are sent
        again (see :meth:`_retry_refused`).
        """
        key = (peer.endpoint, peer.public_key)
        sock = self._ctl_out.get(key)
        if sock is None:
            sock = self._ctx.socket(zmq.PUSH)
            sock.linger = self.linger_ms
            sock.curve_secretkey = self.keypair.secret
            sock.curve_publickey = self.keypair.public
            sock.curve_serverkey = peer.public_key
            monitor = sock.get_monitor_socket(_WATCHED)
            self._monitors[monitor] = key
            self._poller.register(monitor, zmq.POLLIN)
            sock.connect(peer.endpoint)
            self._ctl_out[key] = sock
        return sock

    def _close_ctl(self, key: tuple[str, bytes], linger: int) -> None:
        sock = self._ctl_out.pop(key)
        for monitor, mkey in list(self._monitors.items()):
            if mkey == key:
                self._poller.unregister(monitor)
                del self._monitors[monitor]
                sock.disable_monitor()
                monitor.close(linger=0)
        sock.close(linger=linger)

    def _on_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        event = recv_monitor_message(monitor, flags=zmq.NOBLOCK)
        key = self._monitors.get(monitor)
        if key is None:
            return
        if event["event"] == zmq.EVENT_DISCONNECTED:
            self._gone.add(key)
            return
        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._gone.discard(key)
            self._refusals.pop(key, None)
            return
        refusals = self._refusals[key] = self._refusals.get(key, 0) + 1
        pause = min(_RETRY_MAX_S, _RETRY_S * 2 ** (refusals - 1))
        logger.info(
            "%s: %s refused the CURVE handshake (not started this round yet, or it does "
            "not admit this node); retrying in %.1fs",
            self.name,
            key[0],
            pause,
        )
        self._retry_at.setdefault(key, time.monotonic() + pause)

    def _retry_refused(self, st: _Round) -> None:
        now = time.monotonic()
        for key, due in list(self._retry_at.items()):
            if due > now:
                continue
            del self._retry_at[key]
            if key in self._ctl_out:
                self._close_ctl(key, linger=0)
            for j, peer in enumerate(st.peers):
                if (peer.endpoint, peer.public_key) == key:
                    sock = self._ctl_socket(peer)
                    try:
                        for frames in st.sent_ctl.get(j, []):
                            sock.send_multipart(frames, flags=zmq.NOBLOCK)
                    except zmq.Again:
                        self._retry_at[key] = now + _RETRY_S

    def _data_socket(self, endpoint: str) -> zmq.Socket[bytes]:
        sock = self._data_out.get(endpoint)
        if sock is None:
            sock = self._ctx.socket(zmq.PUSH)
            sock.linger = self.linger_ms
            sock.connect(endpoint)
            self._data_out[endpoint] = sock
        return sock

    def _send(
        self, st: _Round, sock: zmq.Socket[bytes], j: int, frames: list[Any]
    ) -> zmq.MessageTracker | None:
        try:
            return sock.send_multipart(frames, copy=False, track=True, flags=zmq.NOBLOCK)
        except zmq.Again as e:
            raise PeerTimeout(
                f"{st.peers[j].name} does not accept messages (its queue is full): it is "
                "probably not running. Retry the round without it.",
                culprits=[st.peers[j].name],
                round_id=st.round_id,
                attempt=st.attempt,
            ) from e

    def _send_ctl(self, st: _Round, j: int, frames: list[bytes]) -> None:
        st.sent_ctl.setdefault(j, []).append(frames)
        peer = st.peers[j]
        try:
            self._ctl_socket(peer).send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            # no connection to queue on: the peer refused the handshake (its monitor
            # event may not be read yet). Reconnect now and send this round's messages
            # again; a peer that never answers fails the round by the timeout.
            self._retry_at[(peer.endpoint, peer.public_key)] = time.monotonic()

    def _send_keys(self, st: _Round) -> None:
        creds = self.credentials() if self.credentials is not None else None
        for j in st.others:
            header = st.header(
                KEY,
                j,
                n=st.out.size,
                dt=st.dtype.str,
                st=st.strategy,
                data=self.data_endpoint,
                enc=st.encrypted,
                cred=creds is not None,
            )
            frames = [header]
            if st.encrypted:
                st.send_keys[j] = crypto.new_key()
                frames.append(st.send_keys[j])
            if creds is not None:
                frames.append(creds)
            self._send_ctl(st, j, frames)

    def _send_shard(
        self, st: _Round, j: int, kind: str, source: np.ndarray, weight: float = 0.0
    ) -> None:
        shard = st.me if kind == MERGED else j
        a, b = st.bounds[shard]
        payload = source[a:b].data.cast("B")
        nonce = crypto.new_nonce() if st.encrypted else b""
        fields: dict[str, Any] = {"w": float(weight)} if kind == CONTRIB else {}
        header = st.header(
            kind,
            j,
            i=shard,
            dt=st.dtype.str,
            n=b - a,
            nonce=nonce.hex(),
            **fields,
        )
        body: Any = payload
        if st.encrypted:
            spare = self._seal_buffer(len(payload) + crypto.TAG_BYTES)
            body = crypto.seal(st.send_keys[j], nonce, header, payload, out=spare)
        tracker = self._send(st, self._data_socket(st.data_endpoints[j]), j, [header, body])
        if st.encrypted and tracker is not None:  # reusable once ZeroMQ has sent it
            self._spare_seal.append((body, tracker))
            del self._spare_seal[: -4 * len(st.peers)]
        st.stats.bytes_sent += len(header) + len(body)

    def _confirm(self, st: _Round) -> None:
        """Tell every participant this node holds the merged vector; wait until all say so.

        Without this last step a node could return (and crash, or exit) while its
        merged shard is still queued for a slower peer, which would then fail a
        round the others completed. With it, a round ends the same way on every
        node: if a peer fails the attempt and says so, this node fails it too and
        all retry together. A peer that dies after it sent everything only makes
        this wait end early (its connection drops) or time out, which is not an
        error: every value is here.
        """
        for j in st.others:
            self._send_ctl(st, j, [st.header(DONE, j)])

        def settled(j: int) -> bool:  # confirmed, or its process is gone (connection dropped)
            return j in st.done_from or (st.peers[j].endpoint, st.peers[j].public_key) in self._gone

        try:
            self._pump(st, lambda: all(settled(j) for j in st.others), "done")
        except PeerTimeout as e:
            logger.warning(
                "%s: round %d attempt %d complete here, but %s did not confirm it: %s",
                self.name,
                st.round_id,
                st.attempt,
                ", ".join(e.culprits),
                "it may have stopped after sending its shards",
            )

    def _broadcast_abort(self, st: _Round, err: BaseException) -> None:
        culprits = [
            st.peers.index(p)
            for p in st.peers
            if isinstance(err, RoundFailed) and p.name in err.culprits
        ]
        header = st.header(
            ABORT,
            0,
            c=culprits,
            why=str(err)[:400],
            timeout=isinstance(err, PeerTimeout),
        )
        for j in st.others:
            try:
                self._ctl_socket(st.peers[j]).send(header, flags=zmq.NOBLOCK)
            except zmq.ZMQError:
                logger.debug("Could not tell %s about the abort", st.peers[j].name)

    # -------------------------------------------------------------- receiving

    def _pump(self, st: _Round, done: Callable[[], bool], phase: str) -> None:
        """Receive until ``done()``; fail after ``timeout`` s without progress."""
        last_progress = time.monotonic()
        while True:
            if st.abort is not None:
                raise st.abort
            if done():
                return
            remaining = last_progress + self.timeout - time.monotonic()
            if remaining <= 0:
                self._grace(st, done)
                if st.abort is not None:
                    raise st.abort
                if done():
                    return
                raise self._timeout_error(st, phase)
            if self._poll_once(st, remaining):
                last_progress = time.monotonic()

    def _poll_once(self, st: _Round, wait_s: float) -> bool:
        progressed = False
        self._retry_refused(st)
        if self._retry_at:
            wait_s = min(wait_s, max(0.0, min(self._retry_at.values()) - time.monotonic()))
        for sock, _ in self._poller.poll(max(1, int(wait_s * 1000))):
            if sock in self._monitors:
                self._on_monitor(sock)
                continue
            frames = sock.recv_multipart(copy=False, flags=zmq.NOBLOCK)
            if sock is self._ctl_in:
                progressed |= self._on_control_frames(st, frames)
            else:
                progressed |= self._on_data(st, frames)
        return progressed

    def _grace(self, st: _Round, done: Callable[[], bool]) -> None:
        """Before blaming peers for a timeout, give their own aborts a moment to arrive."""
        end = time.monotonic() + min(1.0, self.timeout / 4)
        while st.abort is None and not done() and time.monotonic() < end:
            self._poll_once(st, end - time.monotonic())

    def _timeout_error(self, st: _Round, phase: str) -> PeerTimeout:
        if phase == "key":
            missing = [j for j in st.others if j not in st.recv_keys]
        elif phase == "contrib":
            missing = [j for j in st.others if j not in st.contribs]
        elif phase == "merged":
            missing = [j for j in st.others if j not in st.merged_from]
        elif phase == "done":
            missing = [j for j in st.others if j not in st.done_from]
        else:  # a reduce
            q = max(st.reduces) if st.reduces else 0
            missing = [j for j in st.others if j not in st.reduces.get(q, {})]
        names = st.names(missing)
        return PeerTimeout(
            f"Round {st.round_id} attempt {st.attempt}: no {phase} message from "
            f"{', '.join(names)} within {self.timeout:g}s. Retry the round without "
            f"{'it' if len(names) == 1 else 'them'}.",
            culprits=names,
            round_id=st.round_id,
            attempt=st.attempt,
        )

    def _drop(self, st: _Round, reason: str, level: int = logging.WARNING) -> bool:
        st.stats.dropped += 1
        logger.log(level, "%s dropped a message: %s", self.name, reason)
        return False

    def _reject(self, st: _Round, j: int, reason: str) -> PeerRejected:
        return PeerRejected(
            f"Round {st.round_id} attempt {st.attempt}: refused {st.peers[j].name}: {reason}",
            culprits=[st.peers[j].name],
            round_id=st.round_id,
            attempt=st.attempt,
        )

    def _on_control_frames(self, st: _Round, frames: list[zmq.Frame]) -> bool:
        header, reason = parse_header(frames[0].buffer)
        if header is None:
            return self._drop(st, f"control message with a bad header: {reason}")
        user = str(frames[0].get("User-Id"))  # set by ZAP: the sender's Z85 public key
        if header["k"] not in (KEY, REDUCE, ABORT, DONE):
            return self._drop(st, f"{header['k']} message on the control channel")
        if st.is_future(header):
            self._early.append((header, user, [f.bytes for f in frames]))
            return False
        if not st.is_current(header):
            return self._drop(
                st,
                f"{header['k']} message for round {header['r']} attempt {header['a']}, "
                f"this node is in round {st.round_id} attempt {st.attempt}",
                logging.INFO,
            )
        return self._on_control(st, header, user, frames)

    def _on_control(
        self, st: _Round, header: dict[str, Any], user: str, frames: list[zmq.Frame]
    ) -> bool:
        j = st.index_by_key.get(user)
        if j is None or j == st.me:
            return self._drop(st, f"control message from {user}, who is not a participant")
        if header["s"] != j:
            return self._drop(
                st, f"{st.peers[j].name} claims to be participant {header['s']} (spoofing)"
            )
        kind = header["k"]
        if kind == DONE:
            if j in st.done_from:
                return self._drop(st, f"done message from {st.peers[j].name} replayed")
            st.done_from.add(j)
            return True
        if kind == ABORT:
            culprits = [c for c in header["c"] if isinstance(c, int) and 0 <= c < len(st.peers)]
            cls = PeerTimeout if header["timeout"] else PeerRejected
            st.abort = cls(
                f"Round {st.round_id} attempt {st.attempt} was abandoned by "
                f"{st.peers[j].name}: {header['why']}",
                culprits=st.names(culprits),
                round_id=st.round_id,
                attempt=st.attempt,
            )
            return True
        if kind == REDUCE:
            got = st.reduces.setdefault(header["q"], {})
            if j in got or len(frames) != 2 or len(frames[1]) != 8 * header["n"]:
                return self._drop(st, f"reduce message from {st.peers[j].name} replayed or cut")
            got[j] = np.frombuffer(frames[1].bytes, dtype="<f8")
            return True
        # KEY
        if j in st.recv_keys:
            return self._drop(st, f"key message from {st.peers[j].name} replayed")
        theirs = (header["n"], header["dt"], header["st"], header["enc"])
        ours = (st.out.size, st.dtype.str, st.strategy, st.encrypted)
        if theirs != ours:
            st.abort = self._reject(
                st,
                j,
                f"it has {header['n']} {np.dtype(header['dt']).name} parameters, merge "
                f"{header['st']}, encryption {header['enc']}; this node has {st.out.size} "
                f"{st.dtype.name}, merge {st.strategy}, encryption {st.encrypted}. All "
                "participants must train the same model with the same settings.",
            )
            return True
        if len(frames) != 1 + int(st.encrypted) + int(header["cred"]) or (
            st.encrypted and len(frames[1]) != crypto.KEY_BYTES
        ):
            return self._drop(st, f"key message from {st.peers[j].name} is malformed")
        if self.verify_peer is not None:
            refusal = self._check_identity(st, j, frames[-1].bytes if header["cred"] else None)
            if refusal is not None:
                st.abort = refusal
                return True
        st.recv_keys[j] = frames[1].bytes if st.encrypted else None
        st.data_endpoints[j] = header["data"]
        for pending in st.pending.pop(j, []):
            self._accept_shard(st, *pending)
        return True

    def _check_identity(self, st: _Round, j: int, creds: bytes | None) -> PeerRejected | None:
        """Run ``verify_peer``; a refusal fails the round naming the participant."""
        assert self.verify_peer is not None
        peer = st.peers[j]
        try:
            if creds is None:
                raise IdentityError(f"{peer.name} sent no identity credentials")
            self.verify_peer(peer, creds)
        except SwarmError as e:
            claimed = getattr(e, "claimed", None) or "no identity"
            logger.warning(
                "%s refused %s (claims %s, CURVE key %s): %s",
                self.name,
                peer.name,
                claimed,
                peer.public_key.decode(),
                e,
            )
            refusal = self._reject(st, j, f"its identity was not accepted: {e}")
            refusal.__cause__ = e
            return refusal
        return None

    def _on_data(self, st: _Round, frames: list[zmq.Frame]) -> bool:
        if len(frames) != 2:
            return self._drop(st, f"data message with {len(frames)} frames, expected 2")
        raw = frames[0].bytes
        header, reason = parse_header(raw)
        if header is None:
            return self._drop(st, f"data message with a bad header: {reason}")
        kind, j = header["k"], header["s"]
        if kind not in (CONTRIB, MERGED):
            return self._drop(st, f"{kind} message on the data channel")
        if not st.is_current(header):
            return self._drop(
                st,
                f"{kind} shard for round {header['r']} attempt {header['a']}, this node is in "
                f"round {st.round_id} attempt {st.attempt}",
            )
        if not (0 <= j < len(st.peers)) or j == st.me or header["t"] != st.me:
            return self._drop(st, f"{kind} shard from unknown sender {j} or for another node")
        shard = st.me if kind == CONTRIB else j
        a, b = st.bounds[shard]
        if header["i"] != shard or header["dt"] != st.dtype.str or header["n"] != b - a:
            return self._drop(
                st,
                f"{kind} shard from {st.peers[j].name} has index {header['i']}, dtype "
                f"{header['dt']}, length {header['n']}; expected {shard}, {st.dtype.str}, {b - a}",
            )
        expected = payload_nbytes(header) + (crypto.TAG_BYTES if st.encrypted else 0)
        if len(frames[1]) != expected:
            return self._drop(
                st,
                f"{kind} shard from {st.peers[j].name} has {len(frames[1])} bytes, "
                f"expected {expected} (truncated or padded)",
            )
        if (kind == CONTRIB and j in st.contribs) or (kind == MERGED and j in st.merged_from):
            return self._drop(st, f"{kind} shard from {st.peers[j].name} replayed")
        if st.encrypted and j not in st.recv_keys:
            queue = st.pending.setdefault(j, [])
            if len(queue) >= _PENDING_LIMIT:
                return self._drop(st, f"too many shards from {st.peers[j].name} before its key")
            queue.append((header, raw, frames[1]))
            return False
        return self._accept_shard(st, header, raw, frames[1])

    def _recv_buffer(self, size: int, dtype: np.dtype[Any]) -> np.ndarray:
        for i, buf in enumerate(self._spare_recv):
            if buf.size == size and buf.dtype == dtype:
                return self._spare_recv.pop(i)
        return np.empty(size, dtype=dtype)

    def _seal_buffer(self, size: int) -> bytearray | None:
        for i, (buf, tracker) in enumerate(self._spare_seal):
            if len(buf) == size and tracker.done:
                del self._spare_seal[i]
                return buf
        return None

    def _accept_shard(
        self, st: _Round, header: dict[str, Any], raw: bytes, payload: zmq.Frame
    ) -> bool:
        kind, j = header["k"], header["s"]
        a, b = st.bounds[st.me if kind == CONTRIB else j]
        target = self._recv_buffer(b - a, st.dtype) if kind == CONTRIB else st.out[a:b]
        if st.encrypted:
            key = st.recv_keys[j]
            assert key is not None
            ok = crypto.open_into(
                key,
                bytes.fromhex(header["nonce"]),
                raw,
                payload.buffer,
                target.data.cast("B"),
            )
            if not ok:
                if kind == MERGED:  # the failed decryption may have scribbled on our slot
                    st.out[a:b] = 0
                return self._drop(
                    st,
                    f"{kind} shard claiming to be from {st.peers[j].name} failed "
                    "authentication (tampered, or sealed by someone else)",
                )
        elif kind == CONTRIB:
            target = np.frombuffer(payload.buffer, dtype=st.dtype)
        else:
            target[:] = np.frombuffer(payload.buffer, dtype=st.dtype)
        st.stats.bytes_received += len(raw) + len(payload)
        if kind == CONTRIB:
            st.contribs[j] = (target, float(header["w"]))
        else:
            st.merged_from.add(j)
            st.hash_ready_shards()
        return True

    # ------------------------------------------------------------------ merging

    def _merge_own_shard(
        self,
        st: _Round,
        own: np.ndarray,
        weight: float,
        merge: Strategy,
        layout: Layout | None,
    ) -> np.ndarray:
        a, b = st.bounds[st.me]
        # merge in the order of the participants' names, not of their votes: float sums
        # depend on order, and a swarm should give the same model however its votes raced
        order = sorted(range(len(st.peers)), key=lambda j: st.peers[j].name)
        shards, weights = [], []
        for j in order:
            shard, w = (own[a:b], weight) if j == st.me else st.contribs[j]
            shards.append(shard)
            weights.append(w)
        names = [st.peers[j].name for j in order]
        ctx = ShardContext(
            peers=names, offset=a, layout=layout, reduce=lambda p: self._reduce(st, p)
        )
        try:
            return merge(shards, weights, ctx)
        except MergeError as e:
            if e.peer is None:
                raise
            raise self._reject(st, order[names.index(e.peer)], str(e)) from e

    def _reduce(self, st: _Round, partial: np.ndarray) -> np.ndarray:
        """Sum ``partial`` over all owners, in participant order (identical everywhere)."""
        partial = np.ascontiguousarray(partial, dtype="<f8")
        q = st.next_reduce
        st.next_reduce += 1
        st.reduces.setdefault(q, {})[st.me] = partial
        header = st.header(REDUCE, 0, q=q, n=partial.size)
        for j in st.others:
            self._send_ctl(st, j, [header, partial.tobytes()])
        got = st.reduces[q]
        self._pump(st, lambda: all(j in got for j in st.others), "reduce")
        total = np.zeros(partial.size)
        for j in range(len(st.peers)):
            value = got[j]
            if value.size != partial.size or not np.isfinite(value).all():
                raise self._reject(st, j, "it sent a malformed or non-finite reduce message")
            total += value
        return total
