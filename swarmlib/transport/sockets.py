"""The exchange's sockets: what they are bound to, who may connect, reconnecting, buffers.

:class:`ExchangeSockets` owns one ZeroMQ context with a CURVE control socket
(admitting only the current round's participants through a ZAP authenticator),
a data socket for sealed shards, one outgoing socket per peer, and the monitors
that notice a refused handshake. libzmq never retries a connection whose
handshake the server refused, so a refused socket is replaced after a pause
that doubles with each refusal in a row (see :meth:`ExchangeSockets.due_retries`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from swarmlib.errors import ConfigurationError
from swarmlib.transport.auth import ZAP_DOMAIN, CurveKeyPair, ParticipantAuthenticator

__all__ = ["BufferPool", "ExchangeSockets", "PeerKey", "tcp_bind_address"]

logger = logging.getLogger(__name__)

RETRY_S = 0.2  # pause before reconnecting to a peer that refused our CURVE handshake
RETRY_MAX_S = 3.0  # the pause doubles with each refusal in a row, up to this
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_WATCHED = _HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED

#: A peer as the sockets know it: its control endpoint and Z85 CURVE public key.
PeerKey = tuple[str, bytes]


def tcp_bind_address(endpoint: str) -> str:
    """``tcp://host:port`` as ZeroMQ binds it (port 0 or * for any free port)."""
    if not endpoint.startswith("tcp://"):
        raise ConfigurationError(
            f"Invalid endpoint {endpoint!r}: expected tcp://host:port (port 0 or * for any)."
        )
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    if not host or not port:
        raise ConfigurationError(f"Invalid endpoint {endpoint!r}: expected tcp://host:port.")
    return f"tcp://{host}:{'*' if port in ('0', '*') else port}"


class BufferPool:
    """Buffers reused from round to round.

    Fresh pages cost the kernel a fault and a memset each, which adds up to a
    fifth of a round on large models. Receive buffers come back once the round
    is over; seal buffers once ZeroMQ has sent them (their tracker is done).
    """

    def __init__(self) -> None:
        self.spare_recv: list[np.ndarray] = []
        self._spare_seal: list[tuple[bytearray, zmq.MessageTracker]] = []

    def recv(self, size: int, dtype: np.dtype[Any]) -> np.ndarray:
        for i, buf in enumerate(self.spare_recv):
            if buf.size == size and buf.dtype == dtype:
                return self.spare_recv.pop(i)
        return np.empty(size, dtype=dtype)

    def seal(self, size: int) -> bytearray | None:
        for i, (buf, tracker) in enumerate(self._spare_seal):
            if len(buf) == size and tracker.done:
                del self._spare_seal[i]
                return buf
        return None

    def sent(self, buf: bytearray, tracker: zmq.MessageTracker, keep: int) -> None:
        """``buf`` is on its way; keep the last ``keep`` such buffers for reuse."""
        self._spare_seal.append((buf, tracker))
        del self._spare_seal[:-keep]


class ExchangeSockets:
    """Bound sockets, per-peer connections and their monitors, for one exchange.

    Args:
        keypair: This node's CURVE key pair.
        bind: Control endpoint to bind (``tcp://host:port``).
        data_bind: Data endpoint to bind. Defaults to the control host, any port.
        advertise_host: Host peers use for the data endpoint. Required with a
            wildcard bind.
        linger_ms: How long closing waits to deliver queued messages.
        is_member: Whether a Z85 CURVE key is a member's (tells how a refused
            handshake is logged).

    Raises:
        ConfigurationError: an endpoint cannot be bound, or a wildcard bind
            without ``advertise_host``.
    """

    def __init__(
        self,
        keypair: CurveKeyPair,
        *,
        bind: str,
        data_bind: str | None,
        advertise_host: str | None,
        linger_ms: int,
        is_member: Callable[[bytes], bool] | None,
    ):
        self.keypair = keypair
        self.linger_ms = linger_ms
        self.closed = False
        bind_addr = tcp_bind_address(bind)
        host = bind_addr[len("tcp://") :].rpartition(":")[0]
        data_addr = tcp_bind_address(data_bind or f"tcp://{host}:0")
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._auth: ParticipantAuthenticator | None = None
        self._ctl_out: dict[PeerKey, zmq.Socket[bytes]] = {}
        self._monitors: dict[zmq.Socket[bytes], PeerKey] = {}
        self.retry_at: dict[PeerKey, float] = {}
        # refusals in a row per peer: the pause before the next try doubles with each, so
        # that a large swarm whose members start a round seconds apart does not spend its
        # CPU on CURVE handshakes (32 nodes on 2 cores retrying every 0.2 s never got in)
        self._refusals: dict[PeerKey, int] = {}
        self.gone: set[PeerKey] = set()  # peers whose connection dropped
        self._data_out: dict[str, zmq.Socket[bytes]] = {}
        self.pool = BufferPool()
        try:
            self._auth = ParticipantAuthenticator(self._ctx, is_member)
            self.ctl_in = self._ctx.socket(zmq.PULL)
            self.ctl_in.linger = 0
            self.ctl_in.curve_server = True
            self.ctl_in.curve_secretkey = keypair.secret
            self.ctl_in.curve_publickey = keypair.public
            self.ctl_in.zap_domain = ZAP_DOMAIN.encode()
            self.ctl_in.bind(bind_addr)
            self.data_in = self._ctx.socket(zmq.PULL)
            self.data_in.linger = 0
            self.data_in.bind(data_addr)
        except zmq.ZMQError as e:
            self.close()
            raise ConfigurationError(f"Cannot bind {bind!r} / {data_addr!r}: {e}") from e
        self.endpoint: str = self.ctl_in.getsockopt_string(zmq.LAST_ENDPOINT)
        data_ep = self.data_in.getsockopt_string(zmq.LAST_ENDPOINT)
        if advertise_host is not None:
            data_ep = f"tcp://{advertise_host}:{data_ep.rpartition(':')[2]}"
        elif host in ("*", "0.0.0.0", "[::]"):
            self.close()
            raise ConfigurationError(
                f"Bound to the wildcard address {host!r}: pass `advertise_host` so that "
                "peers know where to send shards."
            )
        self.data_endpoint: str = data_ep
        self._poller = zmq.Poller()
        self._poller.register(self.ctl_in, zmq.POLLIN)
        self._poller.register(self.data_in, zmq.POLLIN)
        self._arrivals = zmq.Poller()  # the same two sockets, without the connection monitors
        self._arrivals.register(self.ctl_in, zmq.POLLIN)
        self._arrivals.register(self.data_in, zmq.POLLIN)

    def admit_only(self, keys: Iterable[bytes]) -> None:
        """Let only these CURVE keys complete a handshake with the control socket."""
        if self._auth is not None:
            self._auth.allow_only(keys)

    def keep_only(self, wanted: set[PeerKey]) -> None:
        """Close the connections to peers not in ``wanted``; forget pending retries."""
        for key in [k for k in self._ctl_out if k not in wanted]:
            self._close_ctl(key, linger=0)
        self.retry_at.clear()

    def wait_for_traffic(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a message on the bound sockets, without reading it."""
        return bool(self._arrivals.poll(max(0, int(seconds * 1000))))

    def poll(self, wait_s: float) -> list[tuple[zmq.Socket[bytes], list[zmq.Frame]]]:
        """Messages that arrive within ``wait_s`` (monitor events are handled here)."""
        if self.retry_at:
            wait_s = min(wait_s, max(0.0, min(self.retry_at.values()) - time.monotonic()))
        arrived = []
        for sock, _ in self._poller.poll(max(1, int(wait_s * 1000))):
            if sock in self._monitors:
                self._on_monitor(sock)
            else:
                arrived.append((sock, sock.recv_multipart(copy=False, flags=zmq.NOBLOCK)))
        return arrived

    # -------------------------------------------------------------- outgoing

    def control(self, endpoint: str, public_key: bytes) -> zmq.Socket[bytes]:
        """The CURVE client socket to a peer, watched for refused handshakes."""
        key = (endpoint, public_key)
        sock = self._ctl_out.get(key)
        if sock is None:
            sock = self._ctx.socket(zmq.PUSH)
            sock.linger = self.linger_ms
            sock.curve_secretkey = self.keypair.secret
            sock.curve_publickey = self.keypair.public
            sock.curve_serverkey = public_key
            monitor = sock.get_monitor_socket(_WATCHED)
            self._monitors[monitor] = key
            self._poller.register(monitor, zmq.POLLIN)
            sock.connect(endpoint)
            self._ctl_out[key] = sock
        return sock

    def send_control(self, key: PeerKey, frames: list[bytes]) -> None:
        """Queue a control message to a peer; with no connection to queue on, reconnect soon.

        No connection means the peer refused the handshake (its monitor event may
        not be read yet): the caller sends the round's messages again on the new
        one (see :meth:`resend`); a peer that never answers fails the round by the
        timeout.
        """
        try:
            self.control(*key).send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.retry_soon(key)

    def resend(self, key: PeerKey, messages: list[list[bytes]]) -> None:
        """Replace a refused control socket to ``key`` and send ``messages`` again on it."""
        if key in self._ctl_out:
            self._close_ctl(key, linger=0)
        sock = self.control(*key)
        try:
            for frames in messages:
                sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.retry_soon(key, RETRY_S)

    def data(self, endpoint: str) -> zmq.Socket[bytes]:
        sock = self._data_out.get(endpoint)
        if sock is None:
            sock = self._ctx.socket(zmq.PUSH)
            sock.linger = self.linger_ms
            sock.connect(endpoint)
            self._data_out[endpoint] = sock
        return sock

    def due_retries(self) -> list[PeerKey]:
        """The refused peers whose pause is over (taken off the list)."""
        now = time.monotonic()
        due = [key for key, at in self.retry_at.items() if at <= now]
        for key in due:
            del self.retry_at[key]
        return due

    def retry_soon(self, key: PeerKey, pause: float = 0.0) -> None:
        self.retry_at[key] = time.monotonic() + pause

    def _close_ctl(self, key: PeerKey, linger: int) -> None:
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
            self.gone.add(key)
            return
        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.gone.discard(key)
            self._refusals.pop(key, None)
            return
        refusals = self._refusals[key] = self._refusals.get(key, 0) + 1
        pause = min(RETRY_MAX_S, RETRY_S * 2 ** (refusals - 1))
        logger.info(
            "%s refused the CURVE handshake (not started this round yet, or it does "
            "not admit this node); retrying in %.1fs",
            key[0],
            pause,
        )
        self.retry_at.setdefault(key, time.monotonic() + pause)

    def close(self) -> None:
        """Close every socket and the context (waits up to ``linger_ms`` for queued sends)."""
        if self.closed:
            return
        self.closed = True
        for key in list(self._ctl_out):
            self._close_ctl(key, linger=self.linger_ms)
        for sock in self._data_out.values():
            sock.close(linger=self.linger_ms)
        self._data_out.clear()
        for attr in ("ctl_in", "data_in"):
            inbound: zmq.Socket[bytes] | None = getattr(self, attr, None)
            if inbound is not None:
                inbound.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()
