"""Fetching the swarm's model for a late node: members only, and only the model on chain."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from swarmlib.errors import FetchFailed
from swarmlib.transport import CurveKeyPair
from swarmlib.transport.fetch import ModelServer, fetch_model

MEMBER = CurveKeyPair.generate()


@pytest.fixture
def server() -> Iterator[ModelServer]:
    made = ModelServer(CurveKeyPair.generate(), allow=lambda key: key == MEMBER.public)
    try:
        yield made
    finally:
        made.close()


def _sha(vector: np.ndarray) -> str:
    return hashlib.sha256(vector.tobytes()).hexdigest()


def test_a_member_fetches_the_model_with_the_hash_it_asks_for(server: ModelServer) -> None:
    old = np.arange(1000, dtype=np.float32)
    new = old * 2
    server.publish(_sha(old), old, round_id=4)
    server.publish(_sha(new), new, round_id=5)
    key = server.public_key
    for vector in (old, new):
        got = fetch_model(server.endpoint, key, MEMBER, _sha(vector), timeout=10)
        assert got.dtype == vector.dtype and got.tobytes() == vector.tobytes()
    server.publish(_sha(new + 1), new + 1)  # holds two: the oldest goes
    with pytest.raises(FetchFailed, match="no longer holds"):
        fetch_model(server.endpoint, key, MEMBER, _sha(old), timeout=10)


def test_a_stranger_gets_no_answer(server: ModelServer) -> None:
    vector = np.ones(10, np.float64)
    server.publish(_sha(vector), vector)
    stranger = CurveKeyPair.generate()
    with pytest.raises(FetchFailed, match="does not admit this node"):
        fetch_model(server.endpoint, server.public_key, stranger, _sha(vector),
                    timeout=2)  # fmt: skip


def test_a_model_that_is_not_the_one_on_chain_is_refused(server: ModelServer) -> None:
    honest = np.zeros(16, np.float32)
    forged = np.full(16, 9.0, np.float32)
    server.publish(_sha(honest), forged)  # a peer that hands over another model
    with pytest.raises(FetchFailed, match=r"not the .* the chain records"):
        fetch_model(server.endpoint, server.public_key, MEMBER, _sha(honest),
                    timeout=10)  # fmt: skip


def test_malformed_requests_are_dropped_and_serving_goes_on(server: ModelServer) -> None:
    vector = np.arange(8, dtype=np.float16)
    server.publish(_sha(vector), vector)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_secretkey, sock.curve_publickey = MEMBER.secret, MEMBER.public
    sock.curve_serverkey = server.public_key
    sock.connect(server.endpoint)
    for junk in ([b"not json"], [b'{"v":1,"k":"key"}'], [b"{}", b"extra"]):
        sock.send_multipart(junk)
    assert not sock.poll(500), "the server answered a malformed request"
    sock.close()
    ctx.term()
    got = fetch_model(server.endpoint, server.public_key, MEMBER, _sha(vector),
                      timeout=10)  # fmt: skip
    assert got.tobytes() == vector.tobytes()
