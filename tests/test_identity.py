"""SPIFFE identity: dev CA, SVID sources (files, a stand-in SPIRE agent), bindings, checks."""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from swarmlib import errors
from swarmlib.cli import main
from swarmlib.identity import (
    Binding,
    Credentials,
    DevCA,
    Expected,
    FileSource,
    WorkloadSource,
    make_credentials,
    svid_hash,
    verify_credentials,
)
from swarmlib.ledger.keys import load_or_create_account
from swarmlib.merge import Mean
from swarmlib.testing.agent import DevAgent
from swarmlib.transport import CurveKeyPair, Peer, ShardedExchange
from swarmlib.transport.auth import CurveKeyPair as _Pair

TD = "swarm.test"
CHAIN_ID, CONTRACT = 1337, "0x" + "ab" * 20
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def ca() -> DevCA:
    return DevCA.create(TD)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Node:
    """A node's identity: SVID files, CURVE key, chain address, and what the chain says of it."""

    def __init__(self, ca: DevCA, folder: Path, name: str, *, hours: float = 24.0):
        issued = ca.issue_files(f"spiffe://{TD}/{name}", folder / name, hours=hours)
        self.source = FileSource(issued.cert, issued.key, issued.bundle)
        self.curve = CurveKeyPair.generate()
        self.address = "0x" + os.urandom(20).hex()
        self.endpoint = f"tcp://127.0.0.1:{7000 + len(name)}"

    def binding(self, **changes: object) -> Binding:
        fields = dict(address=self.address, curve_key=self.curve.public.decode(),
                      endpoint=self.endpoint, chain_id=CHAIN_ID, contract=CONTRACT)  # fmt: skip
        fields.update(changes)
        return Binding(**fields)  # type: ignore[arg-type]

    def credentials(self, **changes: object) -> Credentials:
        return make_credentials(self.source.svid(), self.binding(**changes))

    def expected(self, **changes: object) -> Expected:
        fields = dict(address=self.address, spiffe_id=self.source.spiffe_id,
                      svid_hash=svid_hash(self.source.svid().leaf),
                      curve_key=self.curve.public.decode(), chain_id=CHAIN_ID, contract=CONTRACT,
                      endpoint=self.endpoint)  # fmt: skip
        fields.update(changes)
        return Expected(**fields)  # type: ignore[arg-type]


@pytest.fixture
def node(ca: DevCA, tmp_path: Path) -> Node:
    return Node(ca, tmp_path, "node-1")


def _verify(creds: Credentials, expected: Expected, ca: DevCA, **kw: object) -> str:
    bundles = {TD: [ca.cert]}
    return verify_credentials(creds, expected, lambda td: bundles.get(td, []), **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ dev CA and files


def test_dev_ca_and_svids_on_disk(tmp_path: Path) -> None:
    assert main(["identity", "init-ca", "--trust-domain", TD, "--out", str(tmp_path / "ca")]) == 0
    assert main(["identity", "issue", "--ca", str(tmp_path / "ca"), "--spiffe-id",
                 f"spiffe://{TD}/n1", "--out", str(tmp_path / "n1")]) == 0  # fmt: skip
    assert _mode(tmp_path / "ca" / "ca-key.pem") == 0o600
    assert _mode(tmp_path / "n1" / "svid-key.pem") == 0o600
    src = FileSource(tmp_path / "n1" / "svid.pem", tmp_path / "n1" / "svid-key.pem",
                     tmp_path / "n1" / "bundle.pem")  # fmt: skip
    assert src.spiffe_id == f"spiffe://{TD}/n1"
    leaf = src.svid().leaf
    assert isinstance(leaf.public_key().curve, type(DevCA.create(TD).key.curve))  # type: ignore[union-attr]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}/n1"]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=24)
    assert len(src.bundle(TD)) == 1 and src.bundle("other.test") == []


def test_the_dev_ca_refuses_foreign_or_malformed_ids(ca: DevCA) -> None:
    with pytest.raises(errors.ConfigurationError, match="not in this CA's trust domain"):
        ca.issue("spiffe://other.test/x")
    with pytest.raises(errors.ConfigurationError, match="Invalid SPIFFE ID"):
        ca.issue("spiffe://swarm.test/a//b")
    with pytest.raises(errors.ConfigurationError, match="Invalid trust domain"):
        DevCA.create("Not A Domain")


def test_missing_or_unusable_files_are_clear_errors(tmp_path: Path, node: Node) -> None:
    with pytest.raises(errors.IdentityUnavailable, match="no such file"):
        FileSource(tmp_path / "nope.pem", tmp_path / "nope-key.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    key = tmp_path / "node-1" / "svid-key.pem"
    with pytest.raises(errors.IdentityUnavailable, match=r"not a usable X\.509-SVID"):
        FileSource(garbage, key)
    with pytest.raises(errors.IdentityUnavailable, match="trust bundle"):
        FileSource(tmp_path / "node-1" / "svid.pem", key, tmp_path / "missing-bundle.pem")
    with pytest.raises(errors.ConfigurationError, match="Cannot load the dev CA"):
        DevCA.load(tmp_path / "no-ca")


# ------------------------------------------------------------------ Workload API


@pytest.fixture
def agent(ca: DevCA, tmp_path: Path) -> Iterator[DevAgent]:
    with DevAgent(tmp_path / "agent.sock", ca, f"spiffe://{TD}/node-7") as running:
        yield running


def test_workload_api_serves_the_svid_through_the_real_client(agent: DevAgent) -> None:
    with WorkloadSource(agent.endpoint, timeout=5) as src:
        assert src.spiffe_id == f"spiffe://{TD}/node-7"
        assert src.svid().leaf == agent.cert
        assert src.bundle(TD) == [agent.ca.cert]


def test_workload_api_from_the_environment(
    agent: DevAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPIFFE_ENDPOINT_SOCKET", agent.endpoint)
    with WorkloadSource(timeout=5) as src:
        assert src.spiffe_id == f"spiffe://{TD}/node-7"


def test_a_rotated_svid_is_used_for_the_next_handshake(agent: DevAgent) -> None:
    with WorkloadSource(agent.endpoint, timeout=5) as src:
        first = src.svid().leaf
        rotated = threading.Event()
        src.subscribe(rotated.set)
        agent.rotate()
        assert rotated.wait(10), "the source did not hear about the rotation"
        assert src.svid().leaf == agent.cert != first
        # credentials made now (the next round's handshake) carry and are signed by the new SVID
        creds = make_credentials(src.svid(), Binding("0x01", "k" * 40, "tcp://x:1", 1, "0x02"))
        assert x509.load_der_x509_certificate(creds.chain[0]) == agent.cert


def test_a_missing_workload_socket_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPIFFE_ENDPOINT_SOCKET", raising=False)
    with pytest.raises(errors.IdentityUnavailable, match="SPIFFE_ENDPOINT_SOCKET"):
        WorkloadSource()
    with pytest.raises(errors.IdentityUnavailable, match="does not exist"):
        WorkloadSource(f"unix://{tmp_path}/absent.sock")


def test_a_silent_workload_socket_times_out(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # exists, accepts nothing useful
    try:
        started = time.monotonic()
        with pytest.raises(errors.IdentityUnavailable, match="No SVID"):
            WorkloadSource(str(path), timeout=1)
        assert time.monotonic() - started < 10
    finally:
        server.close()


# ------------------------------------------------------------------ verification


def test_valid_credentials_verify(node: Node, ca: DevCA) -> None:
    creds = Credentials.decode(node.credentials().encode())
    assert _verify(creds, node.expected(), ca) == f"spiffe://{TD}/node-1"


def _rejected(reason: str, creds: Credentials, expected: Expected, ca: DevCA, **kw: object) -> str:
    with pytest.raises(errors.PeerIdentityRejected) as err:
        _verify(creds, expected, ca, **kw)
    assert err.value.reason == reason, str(err.value)
    return str(err.value)


def test_wrong_trust_domain_is_untrusted(tmp_path: Path, node: Node, ca: DevCA) -> None:
    foreign = DevCA.create("other.test")
    issued = foreign.issue_files("spiffe://other.test/node-1", tmp_path / "foreign")
    src = FileSource(issued.cert, issued.key, issued.bundle)
    creds = make_credentials(src.svid(), node.binding())
    text = _rejected("untrusted", creds, node.expected(spiffe_id=src.spiffe_id,
                     svid_hash=svid_hash(src.svid().leaf)), ca)  # fmt: skip
    assert "no trust bundle for trust domain 'other.test'" in text


def test_a_look_alike_ca_for_our_trust_domain_is_untrusted(
    tmp_path: Path, node: Node, ca: DevCA
) -> None:
    impostor = DevCA.create(TD)  # same trust domain name, other key
    issued = impostor.issue_files(f"spiffe://{TD}/node-1", tmp_path / "impostor")
    src = FileSource(issued.cert, issued.key, issued.bundle)
    creds = make_credentials(src.svid(), node.binding())
    _rejected("untrusted", creds, node.expected(svid_hash=svid_hash(src.svid().leaf)), ca)


def test_an_id_not_bound_on_chain_is_refused(node: Node, ca: DevCA) -> None:
    text = _rejected(
        "not-bound", node.credentials(), node.expected(spiffe_id=f"spiffe://{TD}/node-2"), ca
    )
    assert "bound on chain to spiffe://swarm.test/node-2" in text


def test_expired_and_not_yet_valid_certificates_are_refused(node: Node, ca: DevCA) -> None:
    creds, expected = node.credentials(), node.expected()
    _rejected("expired", creds, expected, ca, now=NOW + dt.timedelta(days=2))
    _rejected("not-yet-valid", creds, expected, ca, now=NOW - dt.timedelta(days=1))


def test_a_ca_certificate_presented_as_a_leaf_is_refused(node: Node, ca: DevCA) -> None:
    forged = Credentials(
        chain=(ca.cert.public_bytes(Encoding.DER),), binding=node.binding(), signature=b""
    )
    text = _rejected("not-leaf", forged, node.expected(), ca)
    assert "CA certificate" in text


def test_a_certificate_other_than_the_registered_one_is_refused(node: Node, ca: DevCA) -> None:
    text = _rejected("hash-mismatch", node.credentials(), node.expected(svid_hash=b"\1" * 32), ca)
    assert "registered" in text


def test_a_valid_svid_replayed_with_another_nodes_curve_key_is_refused(
    node: Node, ca: DevCA
) -> None:
    """Mallory copies node-1's credentials (they travel to every peer) and connects with her key."""
    stolen = node.credentials()
    mallory = _Pair.generate()
    text = _rejected("binding", stolen, node.expected(curve_key=mallory.public.decode()), ca)
    assert "another node's key" in text
    # nor can she rewrite the binding: the signature no longer verifies
    rewritten = Credentials(
        stolen.chain, node.binding(curve_key=mallory.public.decode()), stolen.signature
    )
    _rejected("binding", rewritten, node.expected(curve_key=mallory.public.decode()), ca)
    # nor replay it to another chain or contract
    _rejected("binding", stolen, node.expected(chain_id=1), ca)


def test_malformed_credentials_are_refused() -> None:
    for raw in (b"", b"{}", b"x" * 40000, b'{"v": 1, "chain": ["@@"], "binding": {}, "sig": ""}'):
        with pytest.raises(errors.PeerIdentityRejected) as err:
            Credentials.decode(raw)
        assert err.value.reason == "malformed"


# ------------------------------------------------------------------ in the exchange


def test_the_exchange_refuses_a_peer_whose_identity_fails_and_names_it(
    ca: DevCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = [Node(ca, tmp_path, f"n{i}") for i in range(3)]
    exchanges = []
    for n in nodes:
        ex = ShardedExchange(n.curve, timeout=5, linger_ms=0, name=n.source.spiffe_id)
        n.endpoint = ex.endpoint
        exchanges.append(ex)
    # n2 is bound on chain to another SPIFFE ID than its SVID's
    bound = {n.curve.public: n.expected() for n in nodes}
    bound[nodes[2].curve.public] = nodes[2].expected(spiffe_id=f"spiffe://{TD}/someone-else")

    def verify(peer: Peer, raw: bytes) -> None:
        _verify(Credentials.decode(raw), bound[peer.public_key], ca)

    for n, ex in zip(nodes, exchanges, strict=True):
        ex.credentials = lambda n=n: n.credentials().encode()  # type: ignore[misc]
        ex.verify_peer = verify
    peers = [
        Peer(n.source.spiffe_id, ex.endpoint, n.curve.public)
        for n, ex in zip(nodes, exchanges, strict=True)
    ]
    out: list[object] = [None] * 3

    def run(i: int, who: list[Peer], attempt: int = 0) -> None:
        try:
            out[i] = exchanges[i].run_round(
                who,
                np.full(6, float(i), np.float32),
                round_id=0,
                attempt=attempt,
                merge=Mean().sharded(),
            )
        except Exception as e:
            out[i] = e

    try:
        with caplog.at_level(logging.WARNING):
            threads = [threading.Thread(target=run, args=(i, peers)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        for i in (0, 1):
            assert isinstance(out[i], errors.PeerRejected), out[i]
            assert out[i].culprits == (f"spiffe://{TD}/n2",)  # type: ignore[attr-defined]
        cause = out[0].__cause__  # type: ignore[union-attr]
        assert isinstance(cause, errors.PeerIdentityRejected)
        assert cause.claimed == f"spiffe://{TD}/n2"  # what it claimed to be, for the log
        # the honest two retry without n2 and agree
        threads = [threading.Thread(target=run, args=(i, peers[:2], 1)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(hasattr(out[i], "sha256") for i in (0, 1)), out[:2]
    finally:
        for ex in exchanges:
            ex.close()


# ------------------------------------------------------------------ node keys


def test_node_keys_are_created_once_owner_only_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        pair = CurveKeyPair.load_or_create(tmp_path / "keys")
        again = CurveKeyPair.load_or_create(tmp_path / "keys")
        account = load_or_create_account(tmp_path / "keys" / "eth.json", passphrase="s3cret")
        same = load_or_create_account(tmp_path / "keys" / "eth.json", passphrase="s3cret")
        plain = load_or_create_account(tmp_path / "keys" / "eth.key")
    assert pair == again and account.address == same.address
    assert _mode(tmp_path / "keys" / "curve.key_secret") == 0o600
    assert _mode(tmp_path / "keys" / "eth.json") == 0o600
    assert _mode(tmp_path / "keys" / "eth.key") == 0o600
    assert (tmp_path / "keys" / "eth.json").read_text().startswith("{")  # encrypted keystore
    for secret in (pair.secret.decode(), account.key.hex(), plain.key.hex()):
        assert secret not in caplog.text
    assert pair.secret.decode() not in repr(pair)
    with pytest.raises(errors.ConfigurationError, match="passphrase"):
        load_or_create_account(tmp_path / "keys" / "eth.json")
    with pytest.raises(errors.ConfigurationError, match="usable private key"):
        load_or_create_account(tmp_path / "keys" / "eth.json", passphrase="wrong")
