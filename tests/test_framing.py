"""The wire header: well-formed headers parse, anything else is refused with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlib.transport.framing import CONTRIB, KEY, PROTOCOL_VERSION, encode_header, parse_header


def _contrib(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = dict(
        r=3, a=0, s=1, t=0, i=0, dt="<f4", n=10, w=2.0, nonce="00" * 12
    )
    fields.update(overrides)
    return fields


def test_a_well_formed_header_round_trips() -> None:
    header, reason = parse_header(encode_header(CONTRIB, **_contrib()))
    assert reason == ""
    assert header is not None and header["k"] == CONTRIB and header["n"] == 10


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b"x" * 5000, "larger than"),
        (json.dumps({"v": 1, "k": "contrib"}).encode(), "protocol version"),
        (json.dumps({"v": PROTOCOL_VERSION, "k": "pickle"}).encode(), "unknown message kind"),
        (encode_header(CONTRIB, **_contrib(extra=1)), "do not match"),
        (encode_header(CONTRIB, **_contrib(n="10")), "wrong type"),
        (encode_header(CONTRIB, **_contrib(n=True)), "wrong type"),
        (encode_header(CONTRIB, **_contrib(r=-1)), "out of range"),
        (encode_header(CONTRIB, **_contrib(dt="|O")), "not allowed"),
        (encode_header(CONTRIB, **_contrib(nonce="abcd")), "nonce"),
        (b'{"v":1,"k":"contrib","w":NaN}', "not JSON"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    header, why = parse_header(raw)
    assert header is None
    assert reason in why


def test_non_finite_numbers_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_header(CONTRIB, **_contrib(w=float("inf")))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes) -> None:
    header, reason = parse_header(raw)
    assert (header is None) == bool(reason)


def test_key_header_schema() -> None:
    raw = encode_header(
        KEY, r=0, a=0, s=0, t=1, n=5, dt="<f8", st="mean", data="tcp://x:1", enc=True,
        cred=False, w=3.0,
    )  # fmt: skip
    assert parse_header(raw)[0] is not None
    for weight in ("3", True):  # a weight that is not a number is refused
        bad = raw.replace(b'"w":3.0', b'"w":' + json.dumps(weight).encode())
        assert parse_header(bad)[0] is None
