"""Serving and fetching a merged model, for nodes that join a swarm late.

Every node keeps its last few merged vectors, by SHA-256, and answers on a
CURVE-encrypted ROUTER socket that admits only the CURVE keys its ``allow``
callback accepts (the node admits the chain's members). A late node asks a
participant for the model whose hash the chain records, and checks the hash of
what it gets: a peer can refuse or fail to answer, but it cannot hand over
another model. Messages are the exchange's JSON headers (kinds ``fetch`` and
``model``) and one raw buffer; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import zmq
import zmq.auth.thread

from swarmlib.errors import FetchFailed
from swarmlib.transport.auth import CurveKeyPair
from swarmlib.transport.framing import FETCH, MODEL, encode_header, parse_header, payload_nbytes

__all__ = ["FETCH_DOMAIN", "ModelServer", "fetch_model"]

logger = logging.getLogger(__name__)

#: ZAP domain of the fetch socket.
FETCH_DOMAIN = "swarmlib-fetch"


class _Admit:
    def __init__(self, allow: Callable[[bytes], bool]):
        self.allow = allow

    def callback(self, domain: str, key: bytes) -> bool:
        try:
            ok = domain == FETCH_DOMAIN and bool(self.allow(key))
        except Exception:  # a failing check admits nobody
            logger.exception("The fetch admission check failed; refusing %r", key)
            return False
        if not ok:
            logger.warning("Refused a model fetch from CURVE key %s: not a member", key.decode())
        return ok


class ModelServer:
    """Answers ``fetch`` requests for the last ``keep`` merged models, in a thread.

    Args:
        keypair: This node's CURVE key pair (the same as its exchange's).
        allow: Called with a client's Z85 CURVE public key; admit it or not.
        bind: Where to listen. Defaults to a free port on 127.0.0.1.
        keep: How many recent models to hold. Defaults to 2.
    """

    def __init__(
        self,
        keypair: CurveKeyPair,
        *,
        allow: Callable[[bytes], bool],
        bind: str = "tcp://127.0.0.1:0",
        keep: int = 2,
    ):
        self.keep = keep
        self._models: OrderedDict[str, tuple[int, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._auth = zmq.auth.thread.ThreadAuthenticator(self._ctx, log=logger)
        self._auth.start()
        self._auth.configure_curve_callback(domain=FETCH_DOMAIN, credentials_provider=_Admit(allow))
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.linger = 0
        self._sock.curve_server = True
        self._sock.curve_secretkey = keypair.secret
        self._sock.curve_publickey = keypair.public
        self._sock.zap_domain = FETCH_DOMAIN.encode()
        self._sock.bind(bind)
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.public_key: bytes = keypair.public
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="swarmlib-fetch", daemon=True)
        self._thread.start()

    def publish(
        self, sha256: str, vector: np.ndarray, round_id: int = 0, *, copy: bool = True
    ) -> None:
        """Hold ``vector`` (a merged model) under its SHA-256 hex digest.

        Args:
            copy: Hold a copy. ``False`` holds ``vector`` itself, for a caller that
                hands it over (nothing may write to it afterwards); it saves copying
                the model every round. Defaults to ``True``.
        """
        with self._lock:
            self._models[sha256] = (round_id, np.array(vector, copy=True) if copy else vector)
            while len(self._models) > self.keep:
                self._models.popitem(last=False)

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            try:
                self._answer(self._sock.recv_multipart())
            except Exception as e:  # no request ends the server: log it and serve the next
                logger.warning("A fetch request raised %r; dropped", e)

    def _answer(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            return
        ident, raw = frames
        header, why = parse_header(raw)
        if header is None or header["k"] != FETCH:
            logger.info("Dropped a malformed fetch request: %s", why or "not a fetch")
            return
        with self._lock:
            held = self._models.get(header["h"])
        if held is None:
            reply = encode_header(MODEL, r=0, a=0, s=0, t=0, h=header["h"], dt="<f4", n=0,
                                  ok=False)  # fmt: skip
            self._sock.send_multipart([ident, reply])
            return
        round_id, vector = held
        reply = encode_header(MODEL, r=round_id, a=0, s=0, t=0, h=header["h"],
                              dt=vector.dtype.str, n=int(vector.size), ok=True)  # fmt: skip
        self._sock.send_multipart([ident, reply, vector.data], copy=False)

    def close(self) -> None:
        """Stop answering and release the socket."""
        self._stop.set()
        self._thread.join(5)
        self._sock.close(linger=0)
        self._auth.stop()
        self._ctx.term()


def fetch_model(
    endpoint: str,
    server_key: bytes,
    keypair: CurveKeyPair,
    sha256: str,
    *,
    timeout: float = 30.0,
) -> np.ndarray:
    """Ask the node at ``endpoint`` for the merged model with hash ``sha256``.

    Args:
        endpoint: The peer's fetch endpoint.
        server_key: The peer's Z85 CURVE public key (from the chain).
        keypair: This node's CURVE key pair (the peer admits members only).
        sha256: Hex SHA-256 of the wanted model (as the chain records it).
        timeout: Seconds to wait for the answer.

    Returns:
        The model's flat vector; its SHA-256 is ``sha256``.

    Raises:
        FetchFailed: no answer in time (the peer is gone, or refused this node),
            the peer no longer holds that model, or what came is not that model.
    """
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_secretkey = keypair.secret
    sock.curve_publickey = keypair.public
    sock.curve_serverkey = server_key
    try:
        sock.connect(endpoint)
        sock.send(encode_header(FETCH, r=0, a=0, s=0, t=0, h=sha256))
        if not sock.poll(int(timeout * 1000)):
            raise FetchFailed(
                f"No answer from {endpoint} within {timeout:g}s to a request for model "
                f"{sha256[:16]}…: the peer is gone, or does not admit this node."
            )
        frames = sock.recv_multipart()
    finally:
        sock.close(linger=0)
        ctx.term()
    header, why = parse_header(frames[0])
    if header is None or header["k"] != MODEL or header["h"] != sha256:
        raise FetchFailed(f"{endpoint} answered a model request with garbage ({why}).")
    if not header["ok"]:
        raise FetchFailed(f"{endpoint} no longer holds model {sha256[:16]}….")
    if len(frames) != 2 or len(frames[1]) != payload_nbytes(header):
        raise FetchFailed(f"{endpoint} sent a model of the wrong length.")
    body = frames[1]
    digest = hashlib.sha256(body).hexdigest()
    if digest != sha256:
        raise FetchFailed(
            f"{endpoint} sent a model whose SHA-256 is {digest[:16]}…, not the {sha256[:16]}… "
            "the chain records: refused."
        )
    return np.frombuffer(body, dtype=np.dtype(header["dt"])).copy()
