"""CURVE admission: only the current round's participants complete a handshake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from swarmlib.transport.auth import ZAP_DOMAIN, CurveKeyPair, ParticipantAuthenticator

Server = tuple[ParticipantAuthenticator, str, CurveKeyPair]


@pytest.fixture
def server() -> Iterator[Server]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    auth = ParticipantAuthenticator(ctx)
    pair = CurveKeyPair.generate()
    sock = ctx.socket(zmq.PULL)
    sock.linger = 0
    sock.curve_server = True
    sock.curve_secretkey = pair.secret
    sock.curve_publickey = pair.public
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.bind("tcp://127.0.0.1:*")
    try:
        yield auth, sock.getsockopt_string(zmq.LAST_ENDPOINT), pair
    finally:
        sock.close(linger=0)
        auth.stop()
        ctx.term()


def _delivered(endpoint: str, server_key: bytes, client: CurveKeyPair) -> bool:
    """Whether a message from ``client`` gets through within a second (a real handshake)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.linger = 0
    push.curve_secretkey, push.curve_publickey = client.secret, client.public
    push.curve_serverkey = server_key
    monitor = push.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    )
    push.connect(endpoint)
    try:
        if not monitor.poll(3000):
            return False
        from zmq.utils.monitor import recv_monitor_message

        return bool(recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED)
    finally:
        push.disable_monitor()
        monitor.close(linger=0)
        push.close(linger=0)
        ctx.term()


def test_only_allowed_keys_get_in_and_the_set_can_change(server: Server) -> None:
    auth, endpoint, pair = server
    alice, bob = CurveKeyPair.generate(), CurveKeyPair.generate()
    auth.allow_only([alice.public])
    assert _delivered(endpoint, pair.public, alice)
    assert not _delivered(endpoint, pair.public, bob)
    auth.allow_only([bob.public])  # the next round's participants
    assert _delivered(endpoint, pair.public, bob)
    assert not _delivered(endpoint, pair.public, alice)
