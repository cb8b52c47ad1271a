"""Sealing of bulk shards with AES-256-GCM (``cryptography``), keys fresh every attempt.

Each node draws, for every (round, attempt) and every other participant, a fresh
random 256-bit key and sends it to that participant over the CURVE-encrypted,
CURVE-authenticated control channel. Shards then travel on a plain ZeroMQ
socket, sealed with the sender→receiver key; the associated data is the header
frame exactly as sent, so round, attempt, sender, receiver, shard index, dtype,
length and merge weight are all authenticated with the buffer. Nonces are 96
random bits; a key seals at most two messages, so they never repeat. See
``docs/security.md`` for the protocol and its threat model.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_BYTES", "NONCE_BYTES", "TAG_BYTES", "new_key", "new_nonce", "open_into", "seal"]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def new_key() -> bytes:
    """A fresh random AES-256 key."""
    return AESGCM.generate_key(bit_length=8 * KEY_BYTES)


def new_nonce() -> bytes:
    """A fresh random 96-bit nonce."""
    return os.urandom(NONCE_BYTES)


def seal(
    key: bytes, nonce: bytes, header: bytes, payload: memoryview, out: bytearray | None = None
) -> bytearray:
    """Encrypt ``payload`` and authenticate it together with ``header``.

    Args:
        out: A buffer of ``len(payload) + 16`` bytes to reuse. Defaults to a new one.

    Returns:
        ``out``: the ciphertext followed by the 16-byte tag.
    """
    if out is None or len(out) != len(payload) + TAG_BYTES:
        out = bytearray(len(payload) + TAG_BYTES)
    AESGCM(key).encrypt_into(nonce, payload, header, out)
    return out


def open_into(key: bytes, nonce: bytes, header: bytes, sealed: memoryview, out: memoryview) -> bool:
    """Decrypt ``sealed`` into ``out`` (``len(sealed) - 16`` bytes).

    Returns:
        ``False`` if the message was tampered with, or sealed with another key,
        header or nonce; ``out`` must then be ignored.
    """
    try:
        AESGCM(key).decrypt_into(nonce, sealed, header, out)
    except InvalidTag:
        return False
    return True
