"""Wire format of the exchange: a small JSON header frame, then at most one raw buffer.

Nothing is pickled. A header is compact JSON with a fixed schema per message
kind; :func:`parse_header` refuses anything else (unknown kind, missing or extra
field, wrong type, oversized frame) with a reason that the receiver logs. The
header bytes, exactly as sent, are the associated data of the AES-GCM seal, so
every field (round, attempt, sender, receiver, shard, dtype, length, weight) is
authenticated together with the buffer.

Kinds:

========  =========  ==========================================================
kind      socket     meaning and payload
========  =========  ==========================================================
key       control    sender's per-round AES key for the receiver (32 bytes, or
                     none in plaintext mode), with secure aggregation its part
                     of the pair's mask key (32 bytes), its data endpoint, model
                     facts and merge weight, then its identity credentials
                     (opaque bytes) when it has some
reduce    control    an owner's partial float64 sums of shard ``i`` for a strategy's
                     cross-shard reduce
abort     control    the sender gives up this attempt; names the culprits
done      control    the sender holds the whole merged vector (the round's last step)
have      control    secure aggregation: the sender holds every masked slice of its shard
reveal    control    secure aggregation: the sender's self-mask key for the
                     receiver's shard (32 bytes), sent once every owner said ``have``
contrib   data       the sender's slice of shard ``i``, for an owner of it, with its weight
merged    data       shard ``i`` as the sender (an owner of it) merged it, for every
                     participant
fetch     fetch      a late node asks for the merged model with SHA-256 ``h``
model     fetch      the answer: that model's raw vector (``ok``), or nothing
========  =========  ==========================================================
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = [
    "ABORT",
    "CONTRIB",
    "DONE",
    "FETCH",
    "HAVE",
    "KEY",
    "MAX_HEADER_BYTES",
    "MAX_INT",
    "MERGED",
    "MODEL",
    "PROTOCOL_VERSION",
    "REDUCE",
    "REVEAL",
    "WIRE_DTYPES",
    "encode_header",
    "parse_header",
]

PROTOCOL_VERSION = 3
MAX_HEADER_BYTES = 2048

KEY = "key"
REDUCE = "reduce"
ABORT = "abort"
CONTRIB = "contrib"
MERGED = "merged"
DONE = "done"
HAVE = "have"
REVEAL = "reveal"
FETCH = "fetch"
MODEL = "model"

#: dtypes allowed on the wire (little-endian floats; 64-bit ring elements of secure aggregation).
WIRE_DTYPES = frozenset({"<f2", "<f4", "<f8", "<u8"})
#: Largest integer a header field may hold (round, attempt, index, length, weight).
MAX_INT = 2**63 - 1
_HEX = frozenset("0123456789abcdef")

_COMMON: dict[str, type] = {"v": int, "k": str, "r": int, "a": int, "s": int, "t": int}
_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    KEY: {
        "n": int,
        "dt": str,
        "st": str,
        "data": str,
        "enc": bool,
        "cred": bool,
        "w": (int, float),
    },
    REDUCE: {"q": int, "n": int, "i": int},
    ABORT: {"c": list, "why": str, "timeout": bool},
    CONTRIB: {"i": int, "dt": str, "n": int, "w": (int, float), "nonce": str},
    MERGED: {"i": int, "dt": str, "n": int, "nonce": str},
    DONE: {},
    HAVE: {},
    REVEAL: {},
    FETCH: {"h": str},
    MODEL: {"h": str, "dt": str, "n": int, "ok": bool},
}


def encode_header(kind: str, **fields: Any) -> bytes:
    """Serialise a header; raises ``ValueError`` on a non-finite number."""
    header = {"v": PROTOCOL_VERSION, "k": kind, **fields}
    return json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    # bool is an int in Python; a header field typed int must not accept true/false
    if isinstance(value, bool) and kind is not bool:
        return False
    return isinstance(value, kind)


def parse_header(raw: bytes | memoryview) -> tuple[dict[str, Any] | None, str]:
    """Parse and check a header frame.

    Returns:
        ``(header, "")`` when it is well formed, else ``(None, reason)``.
    """
    if len(raw) > MAX_HEADER_BYTES:
        return None, f"header of {len(raw)} bytes is larger than {MAX_HEADER_BYTES}"
    try:
        header = json.loads(bytes(raw), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"header is not JSON ({e})"
    if not isinstance(header, dict):
        return None, "header is not an object"
    if header.get("v") != PROTOCOL_VERSION:
        return None, f"protocol version {header.get('v')!r}, expected {PROTOCOL_VERSION}"
    schema = _SCHEMA.get(header.get("k"))  # type: ignore[arg-type]
    if schema is None:
        return None, f"unknown message kind {header.get('k')!r}"
    expected = {**_COMMON, **schema}
    if set(header) != set(expected):
        return None, f"fields {sorted(header)} do not match {sorted(expected)}"
    for name, kind in expected.items():
        if not _is(header[name], kind):
            return None, f"field {name!r} has the wrong type"
    return _check_values(header)


def _check_values(header: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Ranges of a header whose fields have the right types (every check is total)."""
    for name in ("r", "a", "s", "t", "n", "i", "q"):
        if name in header and not 0 <= header[name] <= MAX_INT:
            return None, f"field {name!r} is out of range"
    if "dt" in header and header["dt"] not in WIRE_DTYPES:
        return None, f"dtype {header['dt']!r} is not allowed on the wire"
    if "w" in header:
        weight = header["w"]
        if isinstance(weight, int) and abs(weight) > MAX_INT:
            return None, "weight is out of range"
        if not math.isfinite(weight):
            return None, "weight is not finite"
    nonce = header.get("nonce")
    if nonce and (len(nonce) != 24 or not set(nonce) <= _HEX):
        return None, "nonce is not 12 bytes of lower-case hex"
    if "c" in header and not all(_is(c, int) and 0 <= c <= MAX_INT for c in header["c"]):
        return None, "culprits are not participant indices"
    return header, ""


def payload_nbytes(header: dict[str, Any]) -> int:
    """Bytes of plaintext the header announces."""
    return int(header["n"]) * int(np.dtype(header["dt"]).itemsize)
