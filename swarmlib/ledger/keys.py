"""The node's Ethereum key: created once, kept owner-only, encrypted when given a passphrase."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from swarmlib._files import write_private
from swarmlib.errors import ConfigurationError

__all__ = ["load_account", "load_or_create_account"]

logger = logging.getLogger(__name__)


def load_account(path: str | Path, passphrase: str | None = None) -> LocalAccount:
    """Read a hex private key file, or an encrypted keystore (JSON) with ``passphrase``.

    Raises:
        ConfigurationError: unreadable file, wrong passphrase, or not a key.
    """
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise ConfigurationError(f"Cannot read key file {path}: {e.strerror}.") from e
    try:
        if text.startswith("{"):
            if passphrase is None:
                raise ConfigurationError(
                    f"{path} is an encrypted keystore: give its passphrase "
                    "(SWARMLIB_KEY_PASSPHRASE for the CLI)."
                )
            account: LocalAccount = Account.from_key(Account.decrypt(json.loads(text), passphrase))
        else:
            account = Account.from_key(text)
    except (ValueError, TypeError) as e:
        raise ConfigurationError(
            f"{path} does not hold a usable private key (64 hex digits, or a keystore JSON "
            f"with the right passphrase): {e}"
        ) from e
    return account


def load_or_create_account(path: str | Path, passphrase: str | None = None) -> LocalAccount:
    """The node's account at ``path``, created (once, 0600) if the file does not exist.

    With a passphrase the key is stored as an encrypted keystore (scrypt, AES);
    without, as hex. The key itself is never logged, only the address.
    """
    path = Path(path)
    if path.exists():
        return load_account(path, passphrase)
    account: LocalAccount = Account.create()
    if passphrase is not None:
        write_private(path, json.dumps(Account.encrypt(account.key, passphrase)).encode())
    else:
        write_private(path, account.key.hex().encode() + b"\n")
    logger.info("Created the node's Ethereum key in %s (address %s)", path, account.address)
    return account
