"""The same client over real JSON-RPC: anvil and `swarmlib chain serve`, each in its own process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from swarmlib import errors
from swarmlib.cli import main
from swarmlib.ledger import LedgerClient, connect, dev_accounts, load_artifact
from swarmlib.ledger.audit import audit
from swarmlib.ledger.chain import with_retries
from swarmlib.ledger.server import ChainServer
from tests.chains import anvil, free_port, served_chain

pytestmark = pytest.mark.slow


def _funded_accounts(url: str, n: int) -> list[LocalAccount]:
    """Fresh keys, funded the way each chain allows."""
    if "anvil" in _CHAINS.get(url, ""):
        accounts = [Account.create() for _ in range(n)]
        for a in accounts:
            requests.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance",
                      "params": [a.address, hex(10**20)]},
                timeout=5,
            ).raise_for_status()  # fmt: skip
        return accounts
    return dev_accounts()[:n]


_CHAINS: dict[str, str] = {}


@pytest.fixture(scope="module", params=["anvil", "chain serve"])
def rpc(request: pytest.FixtureRequest) -> Iterator[str]:
    start = anvil if request.param == "anvil" else served_chain
    with start() as url:
        _CHAINS[url] = request.param
        yield url


def _deployed(rpc: str) -> tuple[Web3, LedgerClient, list[LedgerClient]]:
    """A fresh SwarmLedger with three registered members, on ``rpc``."""
    w3 = connect(rpc)
    admin_acct, *node_accts = _funded_accounts(rpc, 4)
    admin = LedgerClient.deploy(w3, admin_acct, rpc=rpc)
    nodes = [LedgerClient(w3, admin.address, a, rpc=rpc) for a in node_accts]
    for i, node in enumerate(nodes):
        admin.add_member(node.account.address, f"spiffe://swarm.test/node-{i}")  # type: ignore[union-attr]
        node.register(f"tcp://127.0.0.1:{7100 + i}", bytes([i + 1]) * 32, bytes([i + 9]) * 32)
    return w3, admin, nodes


def test_deploy_members_and_a_full_round(rpc: str) -> None:
    w3, admin, nodes = _deployed(rpc)
    admin.create_session("train", min_peers=2, quorum_wait=60, round_timeout=30)
    for r, prev in enumerate([b"\0" * 32, b"\x11" * 32]):
        for node in reversed(nodes):
            node.ready("train", r, 0, 50, prev)
        state = nodes[0].wait_for_round("train", r, timeout=10)
        assert state.closed
        assert state.participants == tuple(n.account.address for n in reversed(nodes))  # type: ignore[union-attr]
    rows = audit(admin, "train")
    assert [(row.round, row.status) for row in rows] == [(0, "agree"), (1, "pending")]
    with pytest.raises(errors.NotAMember):
        LedgerClient(w3, admin.address, _funded_accounts(rpc, 5)[-1], rpc=rpc).ready(
            "train", 2, 0, 1
        )


def test_wrong_chain_id_is_refused(rpc: str) -> None:
    chain_id = connect(rpc).eth.chain_id
    with pytest.raises(errors.WrongChain, match=f"chain id {chain_id}, not 1"):
        connect(rpc, expected_chain_id=1)


def test_an_address_without_code_is_refused(rpc: str) -> None:
    with pytest.raises(errors.NoContract, match="No contract at"):
        LedgerClient(connect(rpc), "0x" + "12" * 20, rpc=rpc)


def test_a_contract_of_another_version_is_refused(rpc: str) -> None:
    # the same source built otherwise (a byte of the compiler's metadata differs), deployed
    # raw: a node of this version must not use a contract whose functions may differ
    w3 = connect(rpc)
    deployer = _funded_accounts(rpc, 1)[0]
    runtime = bytearray(bytes.fromhex(load_artifact().deployed_bytecode.removeprefix("0x")))
    runtime[-3] ^= 1
    # init code: copy the 12 bytes' tail (the runtime) to memory and return it
    init = b"\x61" + len(runtime).to_bytes(2, "big") + bytes.fromhex("80600c6000396000f3")
    tx = {"data": init + runtime, "nonce": w3.eth.get_transaction_count(deployer.address),
          "gas": 5_000_000, "gasPrice": w3.eth.gas_price, "chainId": w3.eth.chain_id}  # fmt: skip
    sent = w3.eth.send_raw_transaction(deployer.sign_transaction(tx).raw_transaction)
    address = w3.eth.wait_for_transaction_receipt(sent, timeout=30)["contractAddress"]
    assert bytes(w3.eth.get_code(address)) == bytes(runtime)
    with pytest.raises(errors.ContractMismatch, match="not the SwarmLedger of this swarmlib"):
        LedgerClient(w3, address, deployer, rpc=rpc)
    with pytest.raises(errors.NoContract):  # what callers that catch the wider error get
        LedgerClient(w3, address, deployer, rpc=rpc)
    # a client that only reads (an audit of an older deployment) is warned, and reads
    with pytest.warns(errors.SwarmWarning, match="not the SwarmLedger of this swarmlib"):
        reader = LedgerClient(w3, address, rpc=rpc)
    assert reader.members() == [] and not reader.is_admin(deployer.address)  # no constructor ran


def test_an_unfunded_key_is_refused_before_sending(rpc: str) -> None:
    w3 = connect(rpc)
    admin = LedgerClient.deploy(w3, _funded_accounts(rpc, 1)[0], rpc=rpc)
    broke = LedgerClient(w3, admin.address, Account.create(), rpc=rpc)
    admin.add_member(broke.account.address, "spiffe://swarm.test/broke")  # type: ignore[union-attr]
    with pytest.raises(errors.InsufficientFunds, match="Fund the account"):
        broke.register("tcp://127.0.0.1:1", b"\x01" * 32)


def test_an_unreachable_rpc_fails_clearly_in_bounded_time() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(errors.ChainUnreachable, match="did not answer"):
        connect(url, timeout=1)
    assert time.monotonic() - started < 10


def test_a_stopped_chain_server_is_unreachable_over_a_kept_alive_connection() -> None:
    server = ChainServer(port=0)
    server.start()
    w3 = connect(server.url, timeout=1)  # its HTTP connection is kept alive, and reused
    assert w3.eth.block_number >= 0
    server.stop()
    with pytest.raises(errors.ChainUnreachable, match="did not answer"):
        with_retries(lambda: w3.eth.block_number, "eth_blockNumber", server.url)


def test_rpc_must_be_embedded_or_a_url() -> None:
    with pytest.raises(errors.ConfigurationError, match="embedded"):
        connect("127.0.0.1:8545")


def test_cli_deploys_adds_members_creates_a_session_and_audits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with served_chain() as url:
        key = tmp_path / "admin.key"
        key.write_text(dev_accounts()[0].key.hex())
        assert main(["chain", "deploy", "--rpc", url, "--key", str(key)]) == 0
        address = capsys.readouterr().out.strip().splitlines()[-1]
        common = ["--rpc", url, "--contract", address, "--key", str(key)]
        member = dev_accounts()[1]
        assert main(["member", "add", *common, "--address", member.address,
                     "--spiffe-id", "spiffe://swarm.test/a"]) == 0  # fmt: skip
        assert main(["session", "create", *common, "--name", "s", "--min-peers", "1",
                     "--merge", "coordmedian", "--quorum-wait", "0"]) == 0  # fmt: skip
        assert main(["session", "create", *common, "--name", "open"]) == 0  # rules: the nodes'
        assert "rules to be fixed by the first node" in capsys.readouterr().out
        assert main(["session", "create", *common, "--name", "robust", "--min-peers", "3",
                     "--owner-replicas", "3"]) == 0  # fmt: skip
        assert main(["session", "create", *common, "--name", "bad", "--min-peers", "2",
                     "--owner-replicas", "3"]) == 1  # fmt: skip
        assert "Raise min_peers to 3" in capsys.readouterr().err
        node = LedgerClient(connect(url), address, member, rpc=url)
        node.register("tcp://127.0.0.1:1", b"\x01" * 32)
        node.ready("s", 0, 0, 42)
        node.ready("s", 1, 0, 42, b"\xab" * 32)
        capsys.readouterr()
        assert main(["audit", "--rpc", url, "--contract", address]) == 0
        out = capsys.readouterr().out
        assert "spiffe://swarm.test/a (42)" in out and "agree" in out and "abababab" in out
        assert "min_peers=1, merge='coordinate_median'" in out  # the session's rules, on chain
        assert "session 'open' rules: not fixed yet" in out
        assert "owner_replicas=3" in out  # session 'robust'
        # errors are one clear line and exit status 1
        assert main(["member", "add", *common, "--address", member.address,
                     "--spiffe-id", "not-a-spiffe-id"]) == 1  # fmt: skip
        assert "Invalid SPIFFE ID" in capsys.readouterr().err
        assert main(["member", "remove", *common, "--address", dev_accounts()[5].address]) == 1
        assert "NotAMember" in capsys.readouterr().err
        assert main(["audit", "--rpc", url, "--contract", "0x" + "12" * 20]) == 1
        assert "No contract" in capsys.readouterr().err


def test_the_chain_server_answers_a_repeated_read_anew_after_every_transaction() -> None:
    # waiting nodes repeat the same read; the server remembers answers until the chain changes
    server = ChainServer(port=0)
    server.start()
    try:
        w3 = connect(server.url)
        admin_acct, a, b = dev_accounts()[:3]
        admin = LedgerClient.deploy(w3, admin_acct, rpc=server.url)
        view = admin.contract.functions.memberAddresses()
        block = w3.eth.block_number
        assert view.call() == view.call() == []
        admin.add_member(a.address, "spiffe://swarm.test/a")
        assert view.call() == [a.address]  # the same request, within the same second
        assert w3.eth.block_number == block + 1
        admin.add_member(b.address, "spiffe://swarm.test/b")
        assert view.call() == [a.address, b.address]
        assert w3.eth.block_number == block + 2
    finally:
        server.stop()


def test_a_round_missing_a_dead_member_closes_after_the_quorum_wait_whatever_the_chain_clock(
    rpc: str,
) -> None:
    """The chain's block clock may run far from the wall clock (each block at least a second
    after the last, on chains that mine one block per transaction); the quorum wait is the
    participants' own: it passes without any new transaction."""
    _, admin, nodes = _deployed(rpc)
    for _ in range(30):  # 30 blocks in a second or two: the block clock runs ~30 s ahead
        admin.fund(admin.account.address, 1)  # type: ignore[union-attr]
    admin.create_session("s", min_peers=2, quorum_wait=2, round_timeout=60)
    nodes[0].ready("s", 0, 0, 10)
    nodes[1].ready("s", 0, 0, 10)  # nodes[2] is dead: it never votes
    got: dict[int, object] = {}

    def wait(i: int) -> None:
        try:
            got[i] = nodes[i].wait_for_round("s", 0, timeout=15)
        except Exception as e:  # reported below
            got[i] = e

    threads = [threading.Thread(target=wait, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i in (0, 1):
        state = got[i]
        assert not isinstance(state, Exception), state
        assert state.closed and len(state.participants) == 2  # type: ignore[attr-defined]
