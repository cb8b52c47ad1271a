"""Where a node's X.509-SVID comes from: a SPIFFE Workload API (SPIRE agent) or PEM files.

Both backends sit behind :class:`IdentitySource`: the current SVID (chain and
private key), the trust bundle of a trust domain, and a way to hear about
rotations. :class:`WorkloadSource` uses py-spiffe's ``X509Source``, which keeps
a stream open to the agent and swaps in each rotated SVID; callers read
:meth:`IdentitySource.svid` when they need it, so the next handshake uses the
new one without a restart.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from spiffe import TrustDomain, X509Bundle, X509Source, X509Svid
from spiffe.errors import PySpiffeError

from swarmlib.errors import IdentityUnavailable

__all__ = ["FileSource", "IdentitySource", "WorkloadSource", "open_source"]

logger = logging.getLogger(__name__)


class IdentitySource(ABC):
    """A node's SVID and the trust bundles it verifies peers against."""

    @abstractmethod
    def svid(self) -> X509Svid:
        """The current X.509-SVID (leaf first, then intermediates; with its private key)."""

    @abstractmethod
    def bundle(self, trust_domain: str) -> list[x509.Certificate]:
        """Trust anchors of ``trust_domain`` (empty if this node does not trust it)."""

    @abstractmethod
    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each SVID or bundle rotation."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what the source holds."""

    @property
    def spiffe_id(self) -> str:
        """This node's SPIFFE ID."""
        return str(self.svid().spiffe_id)

    def __enter__(self) -> IdentitySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSource(IdentitySource):
    """An SVID chain, its key and trust bundles from PEM files.

    Args:
        cert: PEM file with the leaf SVID, then any intermediates.
        key: PEM file with the SVID's private key (PKCS#8).
        bundles: Trust domain → PEM file of its CA certificates. Defaults to
            ``bundle`` for the SVID's own trust domain.
        bundle: PEM file of the own trust domain's CA certificates.

    Raises:
        IdentityUnavailable: a file is missing, unreadable or not a valid SVID.
    """

    def __init__(
        self,
        cert: str | Path,
        key: str | Path,
        bundle: str | Path | None = None,
        *,
        bundles: dict[str, str | Path] | None = None,
    ):
        self._paths = (Path(cert), Path(key))
        self._bundle_paths = {k: Path(v) for k, v in (bundles or {}).items()}
        self._callbacks: list[Callable[[], None]] = []
        self._svid = self._load_svid()
        if bundle is not None:
            self._bundle_paths.setdefault(self._svid.spiffe_id.trust_domain.name, Path(bundle))
        self._bundles = self._load_bundles()

    def _load_svid(self) -> X509Svid:
        cert, key = self._paths
        for path in (cert, key):
            if not os.access(path, os.R_OK):
                raise IdentityUnavailable(
                    f"Cannot read {path}: "
                    f"{'no such file' if not path.exists() else 'permission denied'}. "
                    "Issue an SVID with `swarmlib identity issue`, or use the Workload API."
                )
        try:
            return X509Svid.load(str(cert), str(key), _pem())
        except PySpiffeError as e:
            raise IdentityUnavailable(f"{cert} / {key} is not a usable X.509-SVID: {e}") from e

    def _load_bundles(self) -> dict[str, list[x509.Certificate]]:
        out = {}
        for td, path in self._bundle_paths.items():
            if not os.access(path, os.R_OK):
                raise IdentityUnavailable(f"Cannot read the trust bundle {path} of {td}.")
            try:
                out[td] = list(X509Bundle.load(TrustDomain(td), str(path), _pem()).x509_authorities)
            except PySpiffeError as e:
                raise IdentityUnavailable(f"{path} is not a usable trust bundle: {e}") from e
        return out

    def reload(self) -> None:
        """Re-read the files (after they were replaced) and notify subscribers."""
        self._svid = self._load_svid()
        self._bundles = self._load_bundles()
        for callback in list(self._callbacks):
            callback()

    def svid(self) -> X509Svid:
        return self._svid

    def bundle(self, trust_domain: str) -> list[x509.Certificate]:
        return list(self._bundles.get(trust_domain, []))

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)


class WorkloadSource(IdentitySource):
    """SVIDs and bundles from a SPIFFE Workload API (a SPIRE agent's unix socket).

    Args:
        socket_path: ``unix:///path`` or a path. Defaults to the
            ``SPIFFE_ENDPOINT_SOCKET`` environment variable.
        timeout: Seconds to wait for the first SVID. Defaults to 10.

    Raises:
        IdentityUnavailable: no socket configured, the socket does not exist, or
            no SVID arrived within the timeout.
    """

    def __init__(self, socket_path: str | None = None, *, timeout: float = 10.0):
        target = socket_path or os.environ.get("SPIFFE_ENDPOINT_SOCKET")
        if not target:
            raise IdentityUnavailable(
                "No SPIFFE Workload API socket: set SPIFFE_ENDPOINT_SOCKET (e.g. "
                "unix:///run/spire/sockets/agent.sock) or pass socket_path, or use PEM files."
            )
        path = target[len("unix://") :] if target.startswith("unix://") else target
        path = path.removeprefix("unix:")
        if not Path(path).exists():
            raise IdentityUnavailable(
                f"The Workload API socket {path} does not exist: is the SPIRE agent running, "
                "and is its socket mounted here?"
            )
        uri = target if target.startswith("unix:") else f"unix://{path}"
        try:
            self._source = X509Source(socket_path=uri, timeout_in_seconds=timeout)
        except PySpiffeError as e:
            raise IdentityUnavailable(
                f"No SVID from the Workload API at {path} within {timeout:g}s: {e}. Check that "
                "a registration entry matches this workload's selectors."
            ) from e
        self.socket_path = path

    def svid(self) -> X509Svid:
        return self._source.get_x509_context().default_svid

    def bundle(self, trust_domain: str) -> list[x509.Certificate]:
        found = self._source.get_bundle_for_trust_domain(TrustDomain(trust_domain))
        return list(found.x509_authorities) if found is not None else []

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._source.subscribe_for_updates(callback)

    def close(self) -> None:
        self._source.close()


def open_source(
    *,
    socket_path: str | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    bundle: str | Path | None = None,
) -> IdentitySource:
    """PEM files when ``cert`` is given, else the Workload API."""
    if cert is not None:
        if key is None:
            raise IdentityUnavailable("An SVID certificate file needs its key file too.")
        return FileSource(cert, key, bundle)
    return WorkloadSource(socket_path)


def _pem() -> Encoding:
    return Encoding.PEM
