"""Binding a node's SPIFFE identity to its chain address and CURVE key; checking peers' bindings.

A node signs, with its SVID's private key, the statement "the workload holding
this SVID is chain address A, speaks CURVE key K at endpoint E, on chain C,
contract S". It sends that statement, the signature and its SVID chain in every
round's ``key`` message (over CURVE). Before a peer accepts any shard it checks,
in this order (each failure is a :class:`PeerIdentityRejected` with a
``reason``):

1. the chain parses and its leaf is a leaf (not a CA) with one SPIFFE ID;
2. the leaf is within its validity (``expired`` / ``not-yet-valid``);
3. the chain verifies against the trust bundle of the leaf's trust domain
   (``untrusted``), with ``cryptography``'s X.509 path validation;
4. the SPIFFE ID is the one an admin bound to that address on chain (``not-bound``);
5. SHA-256 of the leaf is the hash the member registered (``hash-mismatch``);
6. the statement names the address, CURVE key (the key that authenticated the
   connection), endpoint, chain and contract the verifier expects, and the
   signature verifies with the leaf's key (``binding``). This stops a valid SVID
   from being replayed with another node's CURVE key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from spiffe import X509Svid

from swarmlib.errors import PeerIdentityRejected

__all__ = [
    "Binding",
    "Credentials",
    "Expected",
    "make_credentials",
    "svid_hash",
    "verify_credentials",
]

_DOMAIN = b"swarmlib identity binding v1\n"
_MAX_CREDENTIALS = 32 * 1024


@dataclass(frozen=True)
class Binding:
    """What a node states about itself, signed with its SVID key."""

    address: str
    curve_key: str  # Z85 CURVE public key, as peers see it on the connection
    endpoint: str
    chain_id: int
    contract: str

    def message(self) -> bytes:
        """The exact bytes signed: a domain tag and canonical JSON."""
        return _DOMAIN + json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Expected:
    """What the verifier knows from the chain and the connection about the peer."""

    address: str
    spiffe_id: str
    svid_hash: bytes
    curve_key: str
    chain_id: int
    contract: str
    endpoint: str | None = None


@dataclass(frozen=True)
class Credentials:
    """SVID chain (DER, leaf first), the binding and its signature, as sent to peers."""

    chain: tuple[bytes, ...]
    binding: Binding
    signature: bytes

    def encode(self) -> bytes:
        """JSON with base64 fields; never pickled."""
        return json.dumps(
            {
                "v": 1,
                "chain": [base64.b64encode(c).decode() for c in self.chain],
                "binding": asdict(self.binding),
                "sig": base64.b64encode(self.signature).decode(),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Credentials:
        """Parse credentials from a peer.

        Raises:
            PeerIdentityRejected: ``malformed``.
        """
        try:
            if len(raw) > _MAX_CREDENTIALS:
                raise ValueError(f"{len(raw)} bytes is too large")
            obj = json.loads(raw)
            if obj.get("v") != 1 or not isinstance(obj.get("chain"), list) or not obj["chain"]:
                raise ValueError("unknown version or empty chain")
            b = obj["binding"]
            binding = Binding(
                str(b["address"]), str(b["curve_key"]), str(b["endpoint"]), int(b["chain_id"]),
                str(b["contract"]),
            )  # fmt: skip
            chain = tuple(base64.b64decode(c, validate=True) for c in obj["chain"])
            return cls(chain, binding, base64.b64decode(obj["sig"], validate=True))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise PeerIdentityRejected(
                f"malformed identity credentials: {e}", reason="malformed"
            ) from e


def svid_hash(cert: x509.Certificate) -> bytes:
    """SHA-256 of a certificate's DER encoding: what a member registers on chain."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()


def make_credentials(svid: X509Svid, binding: Binding) -> Credentials:
    """Sign ``binding`` with the SVID's private key."""
    key: Any = svid.private_key
    message = binding.message()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    else:
        raise TypeError(f"unsupported SVID key type {type(key).__name__}")
    chain = tuple(c.public_bytes(Encoding.DER) for c in svid.cert_chain)
    return Credentials(chain, binding, signature)


def _spiffe_id_of(leaf: x509.Certificate) -> str:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as e:
        raise PeerIdentityRejected("the certificate has no SPIFFE ID", reason="not-leaf") from e
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    if len(uris) != 1 or not uris[0].startswith("spiffe://"):
        raise PeerIdentityRejected(
            f"an SVID carries exactly one spiffe:// URI SAN; this one has {uris}", reason="not-leaf"
        )
    return str(uris[0])


def _check_signature(leaf: x509.Certificate, creds: Credentials) -> bool:
    key: Any = leaf.public_key()
    message = creds.binding.message()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(creds.signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(creds.signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(creds.signature, message)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify_credentials(
    creds: Credentials,
    expected: Expected,
    bundle: Callable[[str], list[x509.Certificate]],
    *,
    now: dt.datetime | None = None,
) -> str:
    """Check a peer's credentials; returns its verified SPIFFE ID.

    Args:
        creds: What the peer sent.
        expected: What the chain and the connection say the peer must be.
        bundle: Trust anchors of a trust domain (``IdentitySource.bundle``).
        now: The time to check validity at. Defaults to now.

    Raises:
        PeerIdentityRejected: with the ``reason`` listed in the module docstring.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        certs = [x509.load_der_x509_certificate(c) for c in creds.chain]
    except ValueError as e:
        raise PeerIdentityRejected(f"unparsable certificate: {e}", reason="malformed") from e
    leaf, intermediates = certs[0], certs[1:]
    claimed = _spiffe_id_of(leaf)

    _check_certificate(claimed, leaf, intermediates, bundle, now)
    _check_bound(claimed, leaf, creds.binding, expected)
    if not _check_signature(leaf, creds):
        raise _reject(claimed, "the binding signature does not verify with the SVID key", "binding")
    return claimed


def _reject(claimed: str, message: str, reason: str) -> PeerIdentityRejected:
    return PeerIdentityRejected(f"{claimed}: {message}", reason=reason, claimed=claimed)


def _check_certificate(
    claimed: str,
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    bundle: Callable[[str], list[x509.Certificate]],
    now: dt.datetime,
) -> None:
    """A leaf (not a CA), valid now, chaining to its trust domain's bundle."""
    try:
        is_ca = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        raise _reject(claimed, "a CA certificate was presented as a leaf SVID", "not-leaf")
    if now < leaf.not_valid_before_utc:
        raise _reject(
            claimed,
            f"certificate not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M}Z",
            "not-yet-valid",
        )
    if now > leaf.not_valid_after_utc:
        raise _reject(
            claimed, f"certificate expired at {leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z", "expired"
        )
    trust_domain = claimed[len("spiffe://") :].split("/", 1)[0]
    anchors = bundle(trust_domain)
    if not anchors:
        raise _reject(claimed, f"no trust bundle for trust domain {trust_domain!r}", "untrusted")
    verifier = PolicyBuilder().store(Store(anchors)).time(now).build_client_verifier()
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as e:
        raise _reject(
            claimed, f"chain does not verify against the {trust_domain} bundle: {e}", "untrusted"
        ) from e


def _check_bound(claimed: str, leaf: x509.Certificate, b: Binding, expected: Expected) -> None:
    """The SPIFFE ID, certificate and binding are the ones the chain holds for the peer."""
    if claimed != expected.spiffe_id:
        raise _reject(
            claimed,
            f"address {expected.address} is bound on chain to {expected.spiffe_id}, "
            f"not to {claimed}",
            "not-bound",
        )
    if svid_hash(leaf) != expected.svid_hash:
        raise _reject(
            claimed,
            "the certificate is not the one the member registered on chain (hash "
            f"{svid_hash(leaf).hex()[:16]}…, registered {expected.svid_hash.hex()[:16]}…)",
            "hash-mismatch",
        )
    wanted = (
        expected.address.lower(),
        expected.curve_key,
        expected.chain_id,
        expected.contract.lower(),
    )
    stated = (b.address.lower(), b.curve_key, b.chain_id, b.contract.lower())
    if stated != wanted or (expected.endpoint is not None and b.endpoint != expected.endpoint):
        raise _reject(
            claimed,
            f"its signed binding names address {b.address}, CURVE key {b.curve_key}, chain "
            f"{b.chain_id}, contract {b.contract}; expected {expected.address}, "
            f"{expected.curve_key}, {expected.chain_id}, {expected.contract} (an SVID replayed "
            "with another node's key?)",
            "binding",
        )
