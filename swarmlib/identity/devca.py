"""A development certificate authority that issues X.509-SVIDs, for one machine and for tests.

``swarmlib identity init-ca --trust-domain TD --out DIR`` makes ``DIR/ca.pem``
(the trust bundle) and ``DIR/ca-key.pem``; ``swarmlib identity issue --ca DIR
--spiffe-id spiffe://TD/... --out DIR`` makes ``svid.pem`` (leaf, then CA),
``svid-key.pem`` and a copy of the bundle, ``bundle.pem``. Keys are EC P-256,
written with permissions 0600. Leaves carry exactly one URI SAN (the SPIFFE ID),
``digitalSignature`` key usage, client and server auth, and live one day by
default (SPIRE's default SVID TTL is one hour; a dev CA lives a year). In
production, SVIDs come from a SPIRE agent instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from spiffe import SpiffeId, TrustDomain
from spiffe.errors import PySpiffeError

from swarmlib._files import write_private
from swarmlib.errors import ConfigurationError

__all__ = ["CA_CERT", "CA_KEY", "DevCA", "IssuedSvid"]

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(*allowed: str) -> x509.KeyUsage:
    """A KeyUsage extension with exactly the ``allowed`` bits set."""
    bits = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    return x509.KeyUsage(**{bit: bit in allowed for bit in bits})


@dataclass(frozen=True)
class IssuedSvid:
    """Paths of an issued SVID."""

    cert: Path
    key: Path
    bundle: Path
    spiffe_id: str


class DevCA:
    """A self-signed CA for one trust domain.

    Args:
        trust_domain: e.g. ``"hospital-a.example"``.
        cert: The CA certificate.
        key: The CA private key.
    """

    def __init__(self, trust_domain: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.trust_domain = trust_domain
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, trust_domain: str, *, days: int = 365) -> DevCA:
        """A new CA for ``trust_domain``, valid for ``days`` days."""
        try:
            td = TrustDomain(trust_domain)
        except (PySpiffeError, ValueError) as e:
            raise ConfigurationError(f"Invalid trust domain {trust_domain!r}: {e}") from e
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "swarmlib dev CA"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{td.name} dev CA"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage("key_cert_sign", "crl_sign"), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://{td.name}")]
                ),
                critical=False,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(td.name, cert, key)

    @classmethod
    def load(cls, folder: str | Path) -> DevCA:
        """Load a CA written by :meth:`save`.

        Raises:
            ConfigurationError: the files are missing or unreadable.
        """
        folder = Path(folder)
        try:
            cert = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
            key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), None)
        except (OSError, ValueError) as e:
            raise ConfigurationError(
                f"Cannot load the dev CA from {folder}: {e}. Create one with "
                "`swarmlib identity init-ca --trust-domain TD --out DIR`."
            ) from e
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"{folder / CA_KEY} is not an EC private key.")
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        trust_domain = uris.get_values_for_type(x509.UniformResourceIdentifier)[0]
        return cls(trust_domain[len("spiffe://") :], cert, key)

    def save(self, folder: str | Path) -> Path:
        """Write ``ca.pem`` and ``ca-key.pem`` (0600) to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CA_CERT).write_bytes(_pem(self.cert))
        write_private(folder / CA_KEY, _key_pem(self.key))
        return folder

    def issue(
        self,
        spiffe_id: str,
        *,
        hours: float = 24.0,
        not_before: dt.datetime | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """Issue a leaf X.509-SVID for ``spiffe_id`` in this CA's trust domain.

        Args:
            hours: Lifetime. Defaults to 24.
            not_before: Start of validity. Defaults to five minutes ago.
            key: The leaf key. Defaults to a fresh P-256 key.

        Raises:
            ConfigurationError: a malformed ID, or one of another trust domain.
        """
        try:
            sid = SpiffeId(spiffe_id)
        except (PySpiffeError, ValueError) as e:
            raise ConfigurationError(f"Invalid SPIFFE ID {spiffe_id!r}: {e}") from e
        if sid.trust_domain.name != self.trust_domain:
            raise ConfigurationError(
                f"{spiffe_id} is not in this CA's trust domain {self.trust_domain!r}."
            )
        if not sid.path:
            raise ConfigurationError(
                f"{spiffe_id} needs a path, e.g. spiffe://{self.trust_domain}/node-1."
            )
        key = key or ec.generate_private_key(ec.SECP256R1())
        start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIRE")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(hours=hours))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage("digital_signature", "key_agreement"), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(sid))]),
                critical=False,  # as SPIRE issues them (the subject is not empty)
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert, key

    def issue_files(self, spiffe_id: str, folder: str | Path, *, hours: float = 24.0) -> IssuedSvid:
        """Issue an SVID and write ``svid.pem``, ``svid-key.pem`` (0600) and ``bundle.pem``."""
        cert, key = self.issue(spiffe_id, hours=hours)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "svid.pem").write_bytes(_pem(cert) + _pem(self.cert))
        write_private(folder / "svid-key.pem", _key_pem(key))
        (folder / "bundle.pem").write_bytes(_pem(self.cert))
        return IssuedSvid(
            folder / "svid.pem", folder / "svid-key.pem", folder / "bundle.pem", spiffe_id
        )
