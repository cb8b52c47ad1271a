"""Secure aggregation's arithmetic: fixed-point encoding in a 64-bit ring, and the masks.

With secure aggregation on, what participant *i* sends the owner of shard *k* is

    y_ik = E(a_i x_i[k]) + S(b_ik) + sum over j not in {i, k} of  +-S(s_ij, k)   (mod 2**64)

where ``E`` encodes a float as a 64-bit integer with :data:`SCALE_BITS`
fractional bits, ``a_i`` is *i*'s share of the merge weight (its weight over
the sum of all weights, which every participant learns from the ``key``
messages), ``S`` is the AES-256-CTR keystream of a key read as unsigned 64-bit
integers, ``b_ik`` is a *self-mask* key that *i* draws fresh for owner *k*, and
``s_ij`` is the *pair* key that *i* and *j* share for this round attempt (``+``
when ``i < j``, ``-`` otherwise). In the owner's sum over every participant the
pair masks cancel; once each participant has revealed its self-mask key to the
owner (after every owner holds every contribution, see
:mod:`swarmlib.transport.exchange`), the owner removes those too and holds
``E(sum of a_i x_i[k])``: the weighted mean of its shard, and nothing about any
one participant's values.

Keys come from ``cryptography``: pair keys by HKDF-SHA256 from 32 random bytes
each side sends the other over the CURVE channel in that attempt's ``key``
message, keystreams by AES-256-CTR. Integer arithmetic mod 2**64 is exact and
commutative, so the merged shard does not depend on the order of the sum.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from swarmlib.errors import ConfigurationError

__all__ = [
    "LIMIT",
    "MIN_PARTICIPANTS",
    "RING_DTYPE",
    "SCALE_BITS",
    "SEED_BYTES",
    "Keystreams",
    "check_count",
    "decode_into",
    "encode_into",
    "masked_shard",
    "new_seed",
    "pair_key",
    "shares",
    "unmasked_sum",
]

#: Fractional bits of the fixed-point encoding: a resolution of 2**-32 (2.3e-10).
SCALE_BITS = 32
#: How values travel to their owner: little-endian unsigned 64-bit integers.
RING_DTYPE = np.dtype("<u8")
#: Largest magnitude a parameter may have (2**31): a weighted mean of values below it,
#: scaled by 2**32, stays inside the signed 64-bit range whatever the weights.
LIMIT = float(2 ** (63 - SCALE_BITS))
#: Bytes of a self-mask key and of each side's part of a pair key.
SEED_BYTES = 32
#: With two participants, each learns the other's model from the mean and its own.
MIN_PARTICIPANTS = 3

_SCALE = float(2**SCALE_BITS)
_BLOCK = 16


def new_seed() -> bytes:
    """Fresh random key material (32 bytes from the OS)."""
    return os.urandom(SEED_BYTES)


def shares(weights: list[float]) -> list[float]:
    """Each participant's share of the merge, ``w_i / sum(w)``, summed in the given order.

    Every participant computes it from the same list in the same order, so the
    floats are the same everywhere.
    """
    total = 0.0
    for w in weights:
        total += w
    return [w / total for w in weights]


def _check_range(values: np.ndarray) -> None:
    """Raise unless every value can be encoded (below :data:`LIMIT`, no NaN or Inf)."""
    peak = max(float(values.max()), -float(values.min())) if values.size else 0.0
    if not peak < LIMIT:  # also catches NaN (and Inf)
        raise ConfigurationError(
            f"This node's parameters reach {peak!r} in magnitude; secure aggregation encodes "
            f"values below {LIMIT:g} (and no NaN or Inf). The model has probably diverged: "
            "lower the learning rate, or clip the weights."
        )


def encode_into(values: np.ndarray, share: float, out: np.ndarray) -> None:
    """``out = round(share * values * 2**32)`` as 64-bit ring elements.

    Raises:
        ConfigurationError: a value is NaN, Inf, or not below :data:`LIMIT` in
            magnitude (a model that diverged: it cannot be encoded).
    """
    _check_range(values)
    _encode(values, share, out, np.empty(values.size))


def _encode(values: np.ndarray, share: float, out: np.ndarray, scratch: np.ndarray) -> None:
    np.multiply(values, share * _SCALE, out=scratch, dtype=np.float64)
    np.rint(scratch, out=scratch)
    np.copyto(out.view(np.int64), scratch, casting="unsafe")


def decode_into(total: np.ndarray, out: np.ndarray) -> None:
    """The float value of ring elements (``total / 2**32``), written into ``out``."""
    out[:] = total.view(np.int64) / _SCALE


def pair_key(
    part_lo: bytes, part_hi: bytes, lo: int, hi: int, round_id: int, attempt: int, agreement: str
) -> bytes:
    """The key participants ``lo < hi`` share for one round attempt.

    Each side's random part is sent to the other over CURVE; HKDF binds the key
    to the round, attempt, pair and the round's agreement, so no two attempts
    (or pairs) ever share a keystream.
    """
    info = b"swarmlib secure aggregation pair key" + struct.pack(">QIII", round_id, attempt, lo, hi)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=agreement.encode(), info=info).derive(
        part_lo + part_hi
    )


#: Ring elements masked per step (256 KiB): the step's keystreams, its slice of the
#: result and its summands stay in the CPU cache instead of crossing memory once per key.
CHUNK = 1 << 15


class Keystreams:
    """Builds masked and unmasked ring arrays in one cache-sized pass, reusing its buffers.

    The keystream of a key for shard *k* is AES-256-CTR from the counter block
    ``(k, 0)``, read as unsigned 64-bit integers; shards never overlap.
    """

    def __init__(self) -> None:
        self._zeros = memoryview(bytes(CHUNK * RING_DTYPE.itemsize))
        self._stream = bytearray(CHUNK * RING_DTYPE.itemsize + _BLOCK)  # update_into's spare block
        self._scratch = np.empty(CHUNK)

    def combine(
        self,
        out: np.ndarray,
        shard: int,
        values: np.ndarray,
        share: float,
        keys: list[tuple[bytes, int]],
        summands: list[np.ndarray] = (),  # type: ignore[assignment]
    ) -> None:
        """``out = E(share * values) + sum(summands) + sum of sign * S(key)`` (mod 2**64).

        ``keys`` pairs each key with its sign (+1 adds its keystream, -1
        subtracts it). The result is the same as one whole-array pass per term.

        Raises:
            ConfigurationError: ``values`` cannot be encoded (see :func:`encode_into`).
        """
        _check_range(values)
        ciphers = [
            (Cipher(algorithms.AES(key), modes.CTR(struct.pack(">QQ", shard, 0))).encryptor(), sign)
            for key, sign in keys
        ]
        for a in range(0, out.size, CHUNK):
            b = min(out.size, a + CHUNK)
            part = out[a:b]
            _encode(values[a:b], share, part, self._scratch[: b - a])
            for summand in summands:
                np.add(part, summand[a:b], out=part)
            for encryptor, sign in ciphers:
                encryptor.update_into(self._zeros[: (b - a) * RING_DTYPE.itemsize], self._stream)
                stream = np.frombuffer(self._stream, dtype=RING_DTYPE, count=b - a)
                (np.add if sign > 0 else np.subtract)(part, stream, out=part)


def masked_shard(
    values: np.ndarray,
    share: float,
    shard: int,
    me: int,
    self_key: bytes,
    pair_keys: dict[int, bytes],
    streams: Keystreams,
) -> np.ndarray:
    """What participant ``me`` sends the owner of ``shard``: its encoded share, masked.

    ``pair_keys`` holds the key ``me`` shares with each other participant; the
    owner's own pair is left out (the owner knows that key).
    """
    out = np.empty(values.size, dtype=RING_DTYPE)
    keys = [(self_key, +1)] + [
        (key, +1 if me < j else -1) for j, key in pair_keys.items() if j != shard
    ]
    streams.combine(out, shard, values, share, keys)
    return out


def unmasked_sum(
    own: np.ndarray,
    share: float,
    shard: int,
    masked: list[np.ndarray],
    self_keys: list[bytes],
    streams: Keystreams,
    out: np.ndarray,
) -> None:
    """The owner's merged shard: its own encoded share plus every masked slice, unmasked.

    ``masked`` holds the other participants' slices, ``self_keys`` the
    self-mask keys they revealed; the pair masks cancel in the sum. Written, as
    floats, into ``out``.
    """
    total = np.empty(own.size, dtype=RING_DTYPE)
    streams.combine(total, shard, own, share, [(key, -1) for key in self_keys], masked)
    decode_into(total, out)


def check_count(n: int) -> None:
    """Raise unless a round of ``n`` participants can aggregate securely."""
    if n < MIN_PARTICIPANTS:
        raise ConfigurationError(
            f"Secure aggregation needs at least {MIN_PARTICIPANTS} participants in a round; "
            f"this one has {n}: with two, each learns the other's model from the mean and its "
            "own. Raise min_peers to 3 or more."
        )
