"""SwarmNode end to end: real processes, a chain served on 127.0.0.1, real SVIDs, numpy weights."""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from web3 import Web3

from swarmlib import errors
from swarmlib.identity import DevCA, FileSource, svid_hash
from swarmlib.ledger import LedgerClient, connect, dev_accounts
from swarmlib.ledger.audit import audit
from swarmlib.ledger.rules import SessionRules
from swarmlib.ledger.server import ChainServer
from swarmlib.merge import Mean, get_strategy
from swarmlib.node import NodeConfig, SwarmNode
from tests.node_worker import node_weights, run_node

pytestmark = pytest.mark.slow
TD = "swarm.test"


def _swarm(
    chain: ChainServer,
    tmp: Path,
    n: int,
    *,
    min_peers: int | None,
    merge: str = "mean",
    round_timeout: int = 60,
    quorum_wait: int = 3,
    rules: SessionRules | None = None,
) -> tuple[LedgerClient, list[dict[str, str]]]:
    """A contract with ``n`` members and session ``s`` (without rules if ``min_peers`` is None)."""
    w3 = connect(chain.url)
    accounts = dev_accounts()
    admin = LedgerClient.deploy(w3, accounts[0], rpc=chain.url)
    admin.create_session(
        "s",
        min_peers=min_peers or 0,
        merge=merge,
        quorum_wait=quorum_wait,
        round_timeout=round_timeout,
        rules=rules,
    )
    ca = DevCA.create(TD)
    ca.save(tmp / "ca")
    envs = []
    for i in range(n):
        folder = tmp / f"node-{i}"
        issued = ca.issue_files(f"spiffe://{TD}/node-{i}", folder)
        key = folder / "eth.key"
        key.write_text(accounts[i + 1].key.hex())
        admin.add_member(accounts[i + 1].address, issued.spiffe_id)
        envs.append(
            {
                "SWARMLIB_RPC": chain.url,
                "SWARMLIB_CONTRACT": admin.address,
                "SWARMLIB_SESSION": "s",
                "SWARMLIB_KEY_FILE": str(key),
                "SWARMLIB_SVID_CERT": str(issued.cert),
                "SWARMLIB_SVID_KEY": str(issued.key),
                "SWARMLIB_TRUST_BUNDLE": str(issued.bundle),
                "SWARMLIB_TIMEOUT": "10",
                "SWARMLIB_NODE_INDEX": str(i),
                "SWARMLIB_NODE_COUNT": str(n),
            }
        )
    return admin, envs


def _run(envs: list[dict[str, str]], rounds: int, samples: list[int]) -> list[tuple[str, object]]:
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    try:
        for i, env in enumerate(envs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=run_node, args=(env, rounds, samples[i], child), daemon=True)
            p.start()
            pipes.append(parent)
            procs.append(p)
        out = []
        for parent in pipes:
            assert parent.poll(180), "a node did not report within 180 s"
            out.append(parent.recv())
        return out
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(10)


def _assert_merged_means(out: list[tuple[str, object]], rounds: int, samples: list[int]) -> None:
    """Every node loaded the sample-weighted mean of every round, with the same hash."""
    for r in range(rounds):
        expected = Mean()(
            [np.concatenate([w.ravel() for w in node_weights(i, r)]) for i in range(3)], samples
        )
        hashes = {res[r][1] for _, res, *_ in out}  # type: ignore[index]
        assert len(hashes) == 1
        merged = [np.asarray(a, np.float32) for a in out[0][1][r][2]]  # type: ignore[index]
        # the chain orders participants by vote, so sums may round differently than here
        np.testing.assert_allclose(
            np.concatenate([m.ravel() for m in merged]), expected, rtol=1e-5, atol=1e-6
        )


def test_three_nodes_agree_every_round_and_the_audit_says_so(
    chain: ChainServer, tmp_path: Path
) -> None:
    admin, envs = _swarm(chain, tmp_path, 3, min_peers=3)
    samples = [100, 200, 300]
    out = _run(envs, 3, samples)
    assert all(status == "ok" for status, *_ in out), out
    _assert_merged_means(out, 3, samples)
    rows = audit(admin, "s")
    # the last round's hash comes from the round receipts (no next vote records it)
    assert [(row.round, row.status) for row in rows] == [(0, "agree"), (1, "agree"), (2, "agree")]
    assert rows[0].merged_hash.hex() == out[0][1][0][1]  # type: ignore[union-attr, index]
    assert sorted(rows[0].samples) == samples


def test_votes_cast_ahead_agree_the_round_while_the_nodes_work(
    chain: ChainServer, tmp_path: Path
) -> None:
    admin, envs = _swarm(chain, tmp_path, 3, min_peers=3)
    for env in envs:
        env["TEST_VOTE_AHEAD"] = "1.5"  # seconds of "training" between the vote and sync()
    samples = [100, 200, 300]
    out = _run(envs, 4, samples)
    assert all(status == "ok" for status, *_ in out), out
    _assert_merged_means(out, 4, samples)
    # rounds 1-3 were agreed before any node called sync(): the votes did not wait for weights
    assert [early for _, _, early in out] == [[True] * 3] * 3  # type: ignore[misc]
    assert [(row.round, row.status) for row in audit(admin, "s")][:3] == [
        (0, "agree"),
        (1, "agree"),
        (2, "agree"),
    ]


def test_a_sync_after_a_vote_ahead_must_bring_the_voted_n_samples(
    chain: ChainServer, tmp_path: Path
) -> None:
    _, envs = _swarm(chain, tmp_path, 1, min_peers=1)
    weights = node_weights(0, 0)
    with SwarmNode(NodeConfig.from_env(envs[0])) as node:
        node.vote_ahead(10)
        with pytest.raises(errors.ConfigurationError, match=r"voted n_samples=10 .* pass the same"):
            node.sync(weights, 20)
        merged = node.sync(weights, 10).weights  # the vote was kept: the round goes on with it
        assert node.round == 1
        for got, sent in zip(merged, weights, strict=True):
            np.testing.assert_array_equal(got, sent)


def test_a_finish_sent_in_the_background_is_in_order_with_the_next_votes(
    chain: ChainServer, tmp_path: Path
) -> None:
    admin, envs = _swarm(chain, tmp_path, 1, min_peers=1)
    me = dev_accounts()[1].address
    with SwarmNode(NodeConfig.from_env(envs[0])) as node:
        node.sync(node_weights(0, 0), 10)
        node.finish(wait=False)  # as the callback's on_train_end: fit() does not wait for it
        node.sync(node_weights(0, 1), 10)  # the next fit: its vote comes after the finish
        assert admin.presence("s").members == (me,)
        w3 = node.ledger.w3
        sent = w3.eth.get_transaction_count(me)
        node.finish(wait=False)  # the sync brought the node back: this leave is sent
        node.vote_ahead(10)  # queued after that leave: brings the node back again
        node.finish(wait=False)  # waits for the vote first, then leaves in the background
        node.leave()  # waits for that, and sends no second leave: the node did not vote since
        # a leave, the vote, a leave
        assert w3.eth.get_transaction_count(me) == sent + 3
        assert admin.presence("s").members == ()
    assert [row.round for row in audit(admin, "s")] == [0, 1, 2]


@pytest.mark.parametrize("merge", ["mean", "coordinate_median"])
def test_a_late_node_joins_the_current_round_and_keeps_in_step(
    chain: ChainServer, tmp_path: Path, merge: str
) -> None:
    # the nodes name no merge: every one of them, the late one too, merges with the session's
    _, envs = _swarm(chain, tmp_path, 3, min_peers=2, merge=merge, quorum_wait=3,
                     round_timeout=600)  # fmt: skip
    for env in envs:
        env["TEST_PACE"] = "0.8"
    envs[2]["TEST_START_AFTER_ROUND"] = "3"  # rounds 0 to 3 close without node 2
    out = _run(envs, 10, [100, 100, 100])
    assert [status for status, _ in out[:2]] == ["ok", "ok"], out
    # node 2 still has rounds to go when the others finish and leave the session: it learns
    # from the chain that it is alone (SwarmEnded) instead of waiting out the round timeout
    assert out[2][0] == "ended", out[2]
    by_round = [{r: h for r, h, _ in res} for _, res in out]  # type: ignore[union-attr]
    late = by_round[2]
    assert min(late) > 0, "the late node should have joined after round 0"
    shared = [r for r in late if r in by_round[0] and r in by_round[1]]
    assert shared, "the late node never merged with the others"
    for r in shared:  # same round numbers, same merged model
        assert late[r] == by_round[0][r] == by_round[1][r], f"round {r} differs"
    # in its first round it took part with the swarm's model of the round before (fetched
    # from a peer, checked against the hash on chain), not with its own stale weights
    first = min(late)
    models = {r: np.concatenate([np.ravel(a) for a in m]) for r, _, m in out[0][1]}  # type: ignore[union-attr]
    contributions = [np.concatenate([w.ravel() for w in node_weights(i, first)]) for i in (0, 1)]
    expected = get_strategy(merge)(
        [*contributions, models[first - 1].astype(np.float32)], [100, 100, 100]
    )
    np.testing.assert_allclose(models[first], expected, rtol=1e-5, atol=1e-6)


def test_the_first_node_fixes_the_rules_and_one_that_disagrees_is_refused_before_voting(
    chain: ChainServer, tmp_path: Path
) -> None:
    admin, envs = _swarm(chain, tmp_path, 3, min_peers=None)  # the nodes fix the rules
    unset = SwarmNode(NodeConfig.from_env(envs[1]))
    with pytest.raises(errors.ConfigurationError, match=r"has no rules yet .* pass min_peers"):
        unset.join()
    with SwarmNode(NodeConfig.from_env(envs[0], min_peers=2, merge="coordmedian")) as first:
        assert first.rules == SessionRules(2, "coordinate_median")
        for settings, clash in [
            ({"min_peers": 3}, "min_peers=3 here, min_peers=2 on chain"),
            ({"merge": "mean"}, "merge='mean' here, merge='coordinate_median' on chain"),
        ]:
            other = SwarmNode(NodeConfig.from_env(envs[1], **settings))
            with pytest.raises(errors.ConfigurationError, match=clash):
                other.join()
            assert not other.joined
        same = SwarmNode(NodeConfig.from_env(envs[1], min_peers=2, merge="coordinate_median"))
        taker = SwarmNode(NodeConfig.from_env(envs[2]))  # sets nothing: takes the chain's
        with same, taker:
            assert same.rules == taker.rules == first.rules
    assert admin.latest_round("s") is None  # the refused nodes never voted: nobody waits on them


def test_a_merge_that_cannot_run_on_min_peers_participants_is_refused_before_it_is_fixed(
    chain: ChainServer, tmp_path: Path
) -> None:
    admin, envs = _swarm(chain, tmp_path, 1, min_peers=None)
    node = SwarmNode(NodeConfig.from_env(envs[0], min_peers=3, merge="krum"))
    with pytest.raises(errors.ConfigurationError, match=r"krum\(f=1\) needs at least 5 .*=3"):
        node.join()
    assert admin.session_rules("s") is None  # nothing was fixed on chain


def test_a_rotated_svid_is_published_before_the_next_vote(
    chain: ChainServer, tmp_path: Path
) -> None:
    _, envs = _swarm(chain, tmp_path, 1, min_peers=1)
    env = envs[0]
    source = FileSource(env["SWARMLIB_SVID_CERT"], env["SWARMLIB_SVID_KEY"],
                        env["SWARMLIB_TRUST_BUNDLE"])  # fmt: skip
    me = dev_accounts()[1].address
    with SwarmNode(NodeConfig.from_env(env), identity=source) as node:
        node.sync(node_weights(0, 0), 10)
        before = node.ledger.member(me).svid_hash
        DevCA.load(tmp_path / "ca").issue_files(f"spiffe://{TD}/node-0", tmp_path / "node-0")
        source.reload()  # SPIRE's Workload API notifies the same way
        node.sync(node_weights(0, 1), 10)
        after = node.ledger.member(me).svid_hash
    assert after == svid_hash(source.svid().leaf) != before


def test_peers_are_told_the_advertised_host_not_the_bound_one(
    chain: ChainServer, tmp_path: Path
) -> None:
    _, envs = _swarm(chain, tmp_path, 1, min_peers=1)
    with SwarmNode(NodeConfig.from_env(envs[0], advertise_host="localhost")) as node:
        registered = node.ledger.member(dev_accounts()[1].address).endpoint.split()
        assert [e.rpartition(":")[0] for e in registered] == ["tcp://localhost"] * 2
        node.sync(node_weights(0, 0), 10)  # and the node works under that name


def test_a_node_that_is_not_a_member_is_told_what_to_do(chain: ChainServer, tmp_path: Path) -> None:
    admin, envs = _swarm(chain, tmp_path, 1, min_peers=1)
    admin.remove_member(dev_accounts()[1].address)
    node = SwarmNode(NodeConfig.from_env(envs[0]))
    with pytest.raises(errors.NotAMember, match="swarmlib member add --address"):
        node.join()
    node.leave()


def test_missing_settings_name_their_variables() -> None:
    with pytest.raises(
        errors.ConfigurationError, match="SWARMLIB_CONTRACT, SWARMLIB_SESSION, SWARMLIB_KEY_FILE"
    ):
        NodeConfig.from_env({})
    with pytest.raises(errors.ConfigurationError, match="SWARMLIB_TIMEOUT"):
        NodeConfig.from_env({"SWARMLIB_TIMEOUT": "soon", "SWARMLIB_CONTRACT": "0x1",
                             "SWARMLIB_SESSION": "s", "SWARMLIB_KEY_FILE": "k"})  # fmt: skip


def test_an_unreachable_quorum_fails_in_bounded_time(chain: ChainServer, tmp_path: Path) -> None:
    _, envs = _swarm(chain, tmp_path, 2, min_peers=2, round_timeout=3)  # node 1 never starts
    with SwarmNode(NodeConfig.from_env(envs[0])) as node:
        started = time.monotonic()
        with pytest.raises(errors.QuorumTimeout, match=r"1 member\(s\) voted, min_peers is 2"):
            node.sync(node_weights(0, 0), 10)
        assert time.monotonic() - started < 20


class _LossyChain:
    """A JSON-RPC proxy to ``url`` that loses the answer to the first vote it forwards.

    The vote reaches the chain (it is mined), but its sender hears nothing, as when a
    chain stalls past the client's timeout: the client sends it again.
    """

    def __init__(self, url: str) -> None:
        selector = Web3.keccak(text="ready(bytes32,uint64,uint32,uint64,bytes32,bytes32)")[:4].hex()
        self.lost = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = requests.post(url, data=body, headers={"Content-Type": "application/json"})
                request = json.loads(body)
                raw = str((request.get("params") or [""])[0]) if isinstance(request, dict) else ""
                is_vote = request.get("method") == "eth_sendRawTransaction" and selector in raw
                if is_vote and proxy.lost == 0:
                    proxy.lost += 1
                    self.close_connection = True
                    return  # the chain has the vote; its answer is lost
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _start(env: dict[str, str], rounds: int, samples: int) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=run_node, args=(env, rounds, samples, child), daemon=True)
    proc.start()
    return proc, parent


def _wait_for_vote(reader: LedgerClient, address: str, round_id: int = 0) -> None:
    deadline = time.monotonic() + 120
    while not reader.vote("s", round_id, 0, address).voted:
        assert time.monotonic() < deadline, "the vote did not arrive"
        time.sleep(0.1)


def test_a_vote_whose_answer_was_lost_is_still_this_nodes_and_it_takes_part(
    chain: ChainServer, tmp_path: Path
) -> None:
    admin, envs = _swarm(chain, tmp_path, 2, min_peers=2)
    proc, pipe = _start(envs[1], 1, 100)  # node 1 votes first and waits for node 0
    lossy = _LossyChain(chain.url)
    try:
        _wait_for_vote(admin, dev_accounts()[2].address)
        with SwarmNode(NodeConfig.from_env(envs[0], rpc=lossy.url)) as node:
            result = node.sync(node_weights(0, 0), 100)  # its vote closes the round
        assert lossy.lost == 1
        assert pipe.poll(60)
        status, rounds = pipe.recv()
    finally:
        lossy.close()
        proc.kill()
        proc.join(10)
    assert status == "ok" and result.round == 0
    assert rounds[0][1] == bytes(node.last_hash).hex()  # the same merged model on both


def test_a_member_removed_while_its_vote_is_open_is_not_merged(
    chain: ChainServer, tmp_path: Path
) -> None:
    admin, envs = _swarm(chain, tmp_path, 4, min_peers=3, quorum_wait=600)
    removed = SwarmNode(NodeConfig.from_env(envs[3]))
    removed.join()
    errors_seen: list[BaseException] = []

    def sync_removed() -> None:
        try:
            removed.sync(node_weights(3, 0), 100)
        except BaseException as e:  # reported to the test
            errors_seen.append(e)

    try:
        removed.vote_ahead(100)
        _wait_for_vote(admin, dev_accounts()[4].address)
        admin.remove_member(dev_accounts()[4].address)  # after its vote, before the round closes
        worker = threading.Thread(target=sync_removed)
        worker.start()
        out = _run(envs[:3], 1, [100, 100, 100])
        worker.join(120)
    finally:
        removed.leave()
    assert all(status == "ok" for status, *_ in out), out
    merged = np.concatenate([np.ravel(a) for a in out[0][1][0][2]])  # type: ignore[index]
    expected = Mean()([np.concatenate([w.ravel() for w in node_weights(i, 0)]) for i in range(3)])
    np.testing.assert_allclose(merged, expected, rtol=1e-5, atol=1e-6)
    assert len(errors_seen) == 1 and isinstance(errors_seen[0], errors.NotAMember)
