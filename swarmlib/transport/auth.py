"""CURVE key pairs and the ZAP authenticator that admits only this round's participants."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth.thread
from zmq.utils import z85

from swarmlib._files import write_private
from swarmlib.errors import ConfigurationError

__all__ = ["ZAP_DOMAIN", "CurveKeyPair", "ParticipantAuthenticator"]

#: ZAP domain of the control socket; the authenticator serves exactly this domain.
ZAP_DOMAIN = "swarmlib"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class CurveKeyPair:
    """A ZeroMQ CURVE key pair, both halves Z85-encoded (40 bytes each).

    The secret half never appears in ``repr`` or logs.
    """

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> CurveKeyPair:
        """A fresh key pair (``zmq.curve_keypair``)."""
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    def __repr__(self) -> str:
        return f"CurveKeyPair(public={self.public.decode()!r})"

    @property
    def public_raw(self) -> bytes:
        """The public key as 32 raw bytes (as the chain contract stores it)."""
        return bytes(z85.decode(self.public))

    def save(self, folder: str | Path) -> Path:
        """Write ``curve.key`` (public) and ``curve.key_secret`` (0600) to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "curve.key").write_bytes(self.public + b"\n")
        write_private(folder / "curve.key_secret", self.secret + b"\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> CurveKeyPair:
        """Read a key pair written by :meth:`save`."""
        folder = Path(folder)
        try:
            public = (folder / "curve.key").read_bytes().strip()
            secret = (folder / "curve.key_secret").read_bytes().strip()
        except OSError as e:
            raise ConfigurationError(f"Cannot read the CURVE key pair in {folder}: {e}") from e
        if len(public) != 40 or len(secret) != 40:
            raise ConfigurationError(
                f"{folder} does not hold a Z85 CURVE key pair (40 characters)."
            )
        return cls(public, secret)

    @classmethod
    def load_or_create(cls, folder: str | Path) -> CurveKeyPair:
        """The node's key pair in ``folder``, created there (once) if missing."""
        if (Path(folder) / "curve.key_secret").exists():
            return cls.load(folder)
        pair = cls.generate()
        pair.save(folder)
        logger.info("Created a CURVE key pair in %s (public key %s)", folder, pair.public.decode())
        return pair


class _Allowlist:
    """Credentials provider for ``zmq.auth``: a key is admitted iff it is in the set."""

    def __init__(self, is_member: Callable[[bytes], bool] | None = None) -> None:
        self._keys: frozenset[bytes] = frozenset()
        self._lock = threading.Lock()
        self._known: set[bytes] = set()  # every key ever admitted: peers, not strangers
        self._warned: set[bytes] = set()
        self._is_member = is_member

    def replace(self, keys: Iterable[bytes]) -> None:
        with self._lock:
            self._keys = frozenset(keys)
            self._known |= self._keys

    def callback(self, domain: str, key: bytes) -> bool:
        with self._lock:
            allowed = key in self._keys
            known = key in self._known
        if allowed:
            return True
        text = key.decode(errors="replace")
        if known or self._member(key):
            # a peer that reached this round (or the next) before this node did; it
            # retries, and gets in once this node starts that round
            logger.debug("Not yet admitting %s: this node is not in that round yet", text)
        else:
            # a key never seen in any participant list: warn once, then keep quiet
            level = logging.DEBUG if key in self._warned else logging.WARNING
            self._warned.add(key)
            logger.log(
                level,
                "Refused a CURVE connection from public key %s: not a participant of "
                "the round this node is in (domain %r). A participant that started the "
                "round before this node retries and gets in once this node starts it.",
                text,
                domain,
            )
        return False

    def _member(self, key: bytes) -> bool:
        if self._is_member is None:
            return False
        try:
            return bool(self._is_member(key))
        except Exception as e:  # e.g. the chain is unreachable: the refusal stands either way
            logger.debug("Could not check whether %r is a member: %s", key, e)
            return False


class ParticipantAuthenticator:
    """A ZAP handler on ``context`` that accepts CURVE clients whose key is allowed.

    Runs ``zmq.auth``'s thread authenticator with a callback, so the set of
    allowed keys can change between rounds without restarting anything.
    ``is_member`` tells a refused key of a swarm member (a peer a round ahead
    of this node, logged at debug level) from a stranger's (warned once).
    """

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        is_member: Callable[[bytes], bool] | None = None,
    ):
        self._allow = _Allowlist(is_member)
        self._auth = zmq.auth.thread.ThreadAuthenticator(context, log=logger)
        self._auth.start()
        self._auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self._allow)

    def allow_only(self, public_keys: Iterable[bytes]) -> None:
        """Admit exactly these Z85 public keys from now on."""
        self._allow.replace(public_keys)

    def stop(self) -> None:
        """Stop the authenticator thread."""
        self._auth.stop()
