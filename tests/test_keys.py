"""Node keys on disk: the Ethereum account file and the CURVE key pair."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from swarmlib import errors
from swarmlib.ledger.keys import load_account, load_or_create_account
from swarmlib.transport import CurveKeyPair


def test_an_account_is_created_once_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "node" / "eth.key"
    path.parent.mkdir()
    made = load_or_create_account(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_account(path).address == made.address  # not made again
    assert load_account(path).key == made.key


def test_an_encrypted_keystore_needs_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "eth.json"
    made = load_or_create_account(path, "correct horse")
    assert made.key.hex() not in path.read_text()  # stored encrypted
    assert load_account(path, "correct horse").address == made.address
    with pytest.raises(errors.ConfigurationError, match="encrypted keystore: give its passphrase"):
        load_account(path)
    with pytest.raises(errors.ConfigurationError, match="does not hold a usable private key"):
        load_account(path, "wrong")


def test_a_missing_or_garbled_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigurationError, match="Cannot read key file"):
        load_account(tmp_path / "nope.key")
    (tmp_path / "bad.key").write_text("not hex")
    with pytest.raises(errors.ConfigurationError, match="64 hex digits"):
        load_account(tmp_path / "bad.key")


def test_a_curve_key_pair_is_kept_private_and_never_shows_its_secret(tmp_path: Path) -> None:
    pair = CurveKeyPair.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "curve.key_secret").stat().st_mode) == 0o600
    assert CurveKeyPair.load_or_create(tmp_path) == pair
    assert pair.secret.decode() not in repr(pair) and pair.public.decode() in repr(pair)
    assert len(pair.public_raw) == 32
    (tmp_path / "curve.key").write_bytes(b"short\n")
    with pytest.raises(errors.ConfigurationError, match="does not hold a Z85 CURVE key pair"):
        CurveKeyPair.load(tmp_path)
    with pytest.raises(errors.ConfigurationError, match="Cannot read the CURVE key pair"):
        CurveKeyPair.load(tmp_path / "elsewhere")
