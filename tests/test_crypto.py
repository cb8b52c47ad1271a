"""Sealing shards: AES-256-GCM over the payload, authenticated together with its header."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from swarmlib.transport import crypto


def _open(key: bytes, nonce: bytes, header: bytes, sealed: bytes) -> bytes | None:
    out = bytearray(len(sealed) - crypto.TAG_BYTES)
    ok = crypto.open_into(key, nonce, header, memoryview(sealed), memoryview(out))
    return bytes(out) if ok else None


@given(payload=st.binary(max_size=4096), header=st.binary(min_size=1, max_size=256))
def test_what_is_sealed_opens_to_the_same_bytes(payload: bytes, header: bytes) -> None:
    key, nonce = crypto.new_key(), crypto.new_nonce()
    sealed = crypto.seal(key, nonce, header, memoryview(payload))
    assert len(sealed) == len(payload) + crypto.TAG_BYTES
    if len(payload) >= 16:  # not in the clear (a short one may match by chance)
        assert bytes(sealed[: len(payload)]) != payload
    assert _open(key, nonce, header, bytes(sealed)) == payload


def test_a_changed_byte_header_key_or_nonce_does_not_open() -> None:
    key, nonce, header = crypto.new_key(), crypto.new_nonce(), b'{"k":"contrib"}'
    payload = np.arange(64, dtype=np.float32).tobytes()
    sealed = bytes(crypto.seal(key, nonce, header, memoryview(payload)))
    flipped = bytearray(sealed)
    flipped[10] ^= 1
    assert _open(key, nonce, header, bytes(flipped)) is None
    assert _open(key, nonce, b'{"k":"merged"}', sealed) is None  # header swapped
    assert _open(crypto.new_key(), nonce, header, sealed) is None  # another peer's key
    assert _open(key, crypto.new_nonce(), header, sealed) is None


def test_a_reused_buffer_is_written_in_place_and_a_wrong_sized_one_is_replaced() -> None:
    key, nonce = crypto.new_key(), crypto.new_nonce()
    payload = memoryview(b"x" * 100)
    spare = bytearray(100 + crypto.TAG_BYTES)
    assert crypto.seal(key, nonce, b"h", payload, out=spare) is spare
    other = crypto.seal(key, nonce, b"h", payload, out=bytearray(3))
    assert len(other) == 100 + crypto.TAG_BYTES
    assert len({crypto.new_key() for _ in range(8)}) == 8  # fresh keys every time
    assert len(crypto.new_key()) == crypto.KEY_BYTES and len(nonce) == crypto.NONCE_BYTES
