"""SwarmLedger's rules on the embedded chain (py-evm in process)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError

from swarmlib import errors
from swarmlib.ledger import LedgerClient, connect, dev_accounts
from swarmlib.ledger.audit import audit, format_audit
from swarmlib.ledger.client import PresenceInfo, session_id
from swarmlib.ledger.rules import SessionRules

H = [bytes([i]) * 32 for i in range(8)]  # stand-ins for merged-model hashes


class Swarm:
    """A deployed ledger with an admin and three registered members; ``nodes[3]`` is not one."""

    def __init__(self) -> None:
        self.w3: Web3 = connect("embedded")
        accounts = dev_accounts()
        self.admin = LedgerClient.deploy(self.w3, accounts[0])
        self.nodes = [LedgerClient(self.w3, self.admin.address, a) for a in accounts[1:5]]
        for i, node in enumerate(self.nodes[:3]):
            self.add(i)
            node.register(f"tcp://127.0.0.1:{7000}", b"\x01" * 32, b"\x02" * 32)
        self.outsider = LedgerClient(self.w3, self.admin.address, accounts[6])

    def add(self, i: int) -> None:
        self.admin.add_member(self.addr(i), f"spiffe://swarm.test/node-{i}")

    def addr(self, i: int) -> str:
        return self.nodes[i].account.address  # type: ignore[union-attr]

    def travel(self, seconds: int) -> None:
        tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
        now = tester.get_block_by_number("pending")["timestamp"]
        tester.time_travel(now + seconds)


@pytest.fixture
def swarm() -> Iterator[Swarm]:
    yield Swarm()


def test_deployer_is_the_only_admin_and_membership_is_admin_only(swarm: Swarm) -> None:
    assert swarm.admin.is_admin(swarm.admin.account.address)  # type: ignore[union-attr]
    assert not swarm.admin.is_admin(swarm.addr(0))
    with pytest.raises(errors.NotAdmin, match="only an admin"):
        swarm.nodes[0].add_member(swarm.outsider.account.address, "spiffe://swarm.test/x")  # type: ignore[union-attr]
    with pytest.raises(errors.NotAdmin):
        swarm.nodes[0].remove_member(swarm.addr(1))
    with pytest.raises(errors.NotAdmin):
        swarm.nodes[0].create_session("s", min_peers=1)
    swarm.admin.add_admin(swarm.addr(3))
    swarm.nodes[3].remove_admin(swarm.admin.account.address)  # type: ignore[union-attr]
    with pytest.raises(errors.LastAdmin):
        swarm.nodes[3].remove_admin(swarm.addr(3))
    with pytest.raises(errors.AlreadyMember):
        swarm.nodes[3].add_member(swarm.addr(0), "spiffe://swarm.test/again")


def test_members_are_bound_to_spiffe_ids_and_register_their_transport(swarm: Swarm) -> None:
    m = swarm.admin.member(swarm.addr(0))
    assert (m.spiffe_id, m.active, m.registered) == ("spiffe://swarm.test/node-0", True, True)
    assert (m.endpoint, m.curve_key, m.svid_hash) == (
        "tcp://127.0.0.1:7000",
        b"\x01" * 32,
        b"\x02" * 32,
    )
    swarm.add(3)
    assert not swarm.admin.member(swarm.addr(3)).registered
    assert swarm.admin.active_member_count() == 4
    assert [x.address for x in swarm.admin.members()] == [swarm.addr(i) for i in range(4)]
    # one call for several records (a node reads its round's participants so), in the order asked
    stranger = swarm.outsider.account.address  # type: ignore[union-attr]
    batch = swarm.admin.members_of([swarm.addr(2), stranger, swarm.addr(0)])
    assert batch == [swarm.admin.member(a) for a in (swarm.addr(2), stranger, swarm.addr(0))]
    assert not batch[1].active and batch[1].spiffe_id == ""


@pytest.mark.parametrize(
    "bad",
    ["node-1", "http://swarm.test/a", "spiffe://", "spiffe://swarm.test", "spiffe://td//a",
     "spiffe://TD/a", "spiffe://td/a b"],
)  # fmt: skip
def test_malformed_spiffe_ids_are_refused(swarm: Swarm, bad: str) -> None:
    with pytest.raises(errors.InvalidSpiffeId, match="spiffe://<trust-domain>/<path>"):
        swarm.admin.add_member(swarm.outsider.account.address, bad)  # type: ignore[union-attr]


def test_the_contract_itself_refuses_a_non_spiffe_id(swarm: Swarm) -> None:
    fn = swarm.admin.contract.functions.addMember(swarm.outsider.account.address, "http://x/y")  # type: ignore[union-attr]
    with pytest.raises(errors.InvalidSpiffeId):
        swarm.admin._send(fn, "addMember")


def test_non_members_and_removed_members_are_refused(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2)
    with pytest.raises(errors.NotAMember, match="not an active member"):
        swarm.outsider.ready("s", 0, 0, 10)
    with pytest.raises(errors.NotAMember):
        swarm.outsider.register("tcp://x:1", b"\x01" * 32)
    swarm.add(3)
    with pytest.raises(errors.NotRegistered):
        swarm.nodes[3].ready("s", 0, 0, 10)
    swarm.admin.remove_member(swarm.addr(2))
    assert swarm.admin.active_member_count() == 3
    assert not swarm.admin.member(swarm.addr(2)).active
    with pytest.raises(errors.NotAMember):
        swarm.nodes[2].ready("s", 0, 0, 10)
    with pytest.raises(errors.NotAMember):
        swarm.nodes[2].register("tcp://x:1", b"\x01" * 32)


def test_round_closes_when_every_member_voted_in_vote_order(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    swarm.nodes[2].ready("s", 0, 0, 30)
    first = swarm.nodes[0].ready("s", 0, 0, 10)
    assert not swarm.admin.round("s", 0).closed  # min_peers reached, wait not over, one missing
    assert swarm.admin.round("s", 0, with_members=True).members == ()  # only once closed
    with pytest.raises(errors.AlreadyVoted):
        swarm.nodes[0].ready("s", 0, 0, 10)
    closing = swarm.nodes[1].ready("s", 0, 0, 20)
    state = swarm.admin.round("s", 0)
    assert state.closed
    assert state.participants == (swarm.addr(2), swarm.addr(0), swarm.addr(1))
    # the closing voter learns the participants from its own receipt, without reading the round
    # (opened_at is unknown there); another voter's receipt does not close it: it reads the chain
    from_receipt = swarm.nodes[1].wait_for_round("s", 0, vote=closing)
    assert (from_receipt.participants, from_receipt.closed, from_receipt.opened_at) == (
        state.participants, True, 0)  # fmt: skip
    # a waiting voter reads the round and its participants' records in one call
    waited = swarm.nodes[0].wait_for_round("s", 0, vote=first)
    assert waited == swarm.admin.round("s", 0, with_members=True)
    assert (waited.participants, waited.opened_at) == (state.participants, state.opened_at)
    assert list(waited.members) == swarm.admin.members_of(state.participants)
    assert [m.spiffe_id.rsplit("/", 1)[1] for m in waited.members] == ["node-2", "node-0", "node-1"]
    swarm.add(3)
    swarm.nodes[3].register("tcp://late:1", b"\x03" * 32)
    with pytest.raises(errors.RoundClosed):  # a late member waits for the next round
        swarm.nodes[3].ready("s", 0, 0, 5)
    logs = swarm.admin.contract.events.RoundAgreed().get_logs(from_block=0)
    assert list(logs[-1]["args"]["participants"]) == list(state.participants)
    votes = swarm.admin.contract.events.Voted().get_logs(from_block=0)
    assert [(v["args"]["member"], v["args"]["nSamples"], v["args"]["position"]) for v in votes] == [
        (swarm.addr(2), 30, 1), (swarm.addr(0), 10, 2), (swarm.addr(1), 20, 3)
    ]  # fmt: skip


def test_quorum_wait_lets_min_peers_close_without_the_rest(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    with pytest.raises(errors.RoundNotOpen):
        swarm.nodes[0].close_round("s", 0)
    swarm.nodes[0].ready("s", 0, 0, 10)
    with pytest.raises(errors.QuorumNotReached):
        swarm.nodes[0].close_round("s", 0)
    swarm.nodes[1].ready("s", 0, 0, 10)
    with pytest.raises(errors.QuorumWaitNotOver):
        swarm.nodes[0].close_round("s", 0)
    swarm.travel(601)
    state = swarm.nodes[1].wait_for_round("s", 0, timeout=10)  # closes it
    assert state.closed and state.participants == (swarm.addr(0), swarm.addr(1))
    with pytest.raises(errors.RoundClosed):
        swarm.nodes[2].ready("s", 0, 0, 10)


def test_a_failed_attempt_is_retried_as_the_next_attempt(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    swarm.nodes[0].ready("s", 0, 0, 10)
    with pytest.raises(errors.PreviousAttemptOpen):
        swarm.nodes[0].ready("s", 0, 1, 10)
    for node in swarm.nodes[1:3]:
        node.ready("s", 0, 0, 10)
    assert swarm.admin.round("s", 0, 0).closed
    # node 2 timed out in the exchange: the others retry without it
    swarm.nodes[0].ready("s", 0, 1, 10)
    swarm.nodes[1].ready("s", 0, 1, 10)
    swarm.travel(601)
    state = swarm.nodes[0].wait_for_round("s", 0, 1, timeout=10)
    assert state.participants == (swarm.addr(0), swarm.addr(1))


def test_the_latest_round_and_attempt_are_one_call_away(swarm: Swarm) -> None:
    # where a late node joins, without scanning Voted events from block 0
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    swarm.admin.create_session("other", min_peers=2, quorum_wait=600)
    assert swarm.admin.latest_round("s") is None
    swarm.nodes[0].ready("s", 0, 0, 10)
    assert swarm.admin.latest_round("s") == (0, 0, False)
    for node in swarm.nodes[1:3]:
        node.ready("s", 0, 0, 10)
    assert swarm.admin.latest_round("s") == (0, 0, True)
    swarm.nodes[0].ready("s", 0, 1, 10)  # a retry
    assert swarm.admin.latest_round("s") == (0, 1, False)
    swarm.nodes[1].ready("s", 0, 1, 10)
    swarm.travel(601)
    swarm.nodes[0].wait_for_round("s", 0, 1, timeout=10)
    swarm.nodes[1].ready("s", 1, 0, 10)
    assert swarm.admin.latest_round("s") == (1, 0, False)
    assert swarm.admin.latest_round("other") is None  # sessions are separate


def test_round_0_waits_for_a_member_that_has_not_started_yet(swarm: Swarm) -> None:
    swarm.add(3)  # added by the admin, but its node has not registered (started) yet
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    for node in swarm.nodes[:3]:
        node.ready("s", 0, 0, 10)
    assert not swarm.admin.round("s", 0).closed
    swarm.nodes[3].register("tcp://slow:1", b"\x03" * 32)
    swarm.nodes[3].ready("s", 0, 0, 10)
    assert swarm.admin.round("s", 0).participants == tuple(swarm.addr(i) for i in range(4))


def test_a_member_that_missed_a_round_is_not_waited_for_until_it_votes(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    assert swarm.admin.presence("s") == PresenceInfo(False, ())
    for node in swarm.nodes[:2]:
        node.ready("s", 0, 0, 10)
    assert not swarm.admin.round("s", 0).closed  # round 0 waits for every member
    swarm.travel(601)
    swarm.nodes[0].wait_for_round("s", 0, timeout=10)  # node 2 died: closed without it
    assert swarm.admin.presence("s") == PresenceInfo(True, (swarm.addr(0), swarm.addr(1)))
    for node in swarm.nodes[:2]:
        node.ready("s", 1, 0, 10)
    assert swarm.admin.round("s", 1).closed  # no second quorum wait for the dead node
    swarm.nodes[2].ready("s", 2, 0, 10)  # it comes back: the next round waits for it again
    swarm.nodes[0].ready("s", 2, 0, 10)
    swarm.nodes[1].ready("s", 2, 0, 10)
    assert swarm.admin.round("s", 2).participants == tuple(swarm.addr(i) for i in (2, 0, 1))
    assert len(swarm.admin.presence("s").members) == 3


def test_a_member_that_leaves_ends_the_wait_for_it_and_a_lone_node_learns_at_once(
    swarm: Swarm,
) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600, round_timeout=600)
    for node in swarm.nodes[:3]:
        node.ready("s", 0, 0, 10)
    for node in swarm.nodes[:2]:
        node.ready("s", 1, 0, 10)
    swarm.nodes[2].leave("s")  # it finished training
    swarm.nodes[2].leave("s")  # leaving twice does nothing
    state = swarm.nodes[0].wait_for_round("s", 1, timeout=10)  # closes without a quorum wait
    assert state.participants == (swarm.addr(0), swarm.addr(1))
    # a session with a short quorum wait (a late starter's window), then a lone node
    swarm.admin.create_session("t", min_peers=2, quorum_wait=1, round_timeout=600)
    for node in swarm.nodes[:2]:
        node.ready("t", 0, 0, 10)
    swarm.nodes[0].wait_for_round("t", 0, timeout=30)
    swarm.nodes[1].leave("t")
    swarm.nodes[0].ready("t", 1, 0, 10)
    started = time.monotonic()
    with pytest.raises(errors.SwarmEnded, match=r"only 1 member\(s\) are still training"):
        swarm.nodes[0].wait_for_round("t", 1)  # after the quorum wait, not the round timeout
    assert time.monotonic() - started < 60
    assert [e["args"]["member"] for e in swarm.admin.contract.events.Left().get_logs(
        from_block=0)] == [swarm.addr(2), swarm.addr(1)]  # fmt: skip
    with pytest.raises(errors.UnknownSession):
        swarm.nodes[0].leave("nope")


def test_a_refused_call_carries_the_contract_error_like_a_refused_estimate(swarm: Swarm) -> None:
    # the client re-simulates a transaction that failed on chain to name the refusal
    swarm.admin.create_session("s", min_peers=1, quorum_wait=0)
    swarm.nodes[0].ready("s", 0, 0, 10)
    swarm.nodes[0].wait_for_round("s", 0, timeout=10)
    fn = swarm.nodes[0].contract.functions.closeRound(session_id("s"), 0, 0)
    selector = Web3.keccak(text="RoundClosed(bytes32,uint64,uint32)")[:4].hex()
    for simulate in (fn.call, fn.estimate_gas):
        with pytest.raises(ContractCustomError) as caught:
            simulate({"from": swarm.addr(0)})
        assert str(caught.value.data).removeprefix("0x").startswith(selector.removeprefix("0x"))


def test_a_node_counts_its_nonce_and_recovers_when_its_account_sent_elsewhere(
    swarm: Swarm,
) -> None:
    swarm.admin.create_session("s", min_peers=1, quorum_wait=0)
    node = swarm.nodes[0]
    node.ready("s", 0, 0, 10)  # the node now counts its nonce itself
    twin = LedgerClient(swarm.w3, swarm.admin.address, node.account)  # same key, elsewhere
    twin.ready("s", 1, 0, 10)
    node.ready("s", 2, 0, 10)  # its count is stale: the chain refuses it, it asks and resends
    assert [swarm.admin.vote("s", r, 0, swarm.addr(0)).voted for r in range(3)] == [True] * 3


def test_a_refused_vote_is_mined_as_failed_and_named_and_the_node_votes_on(
    swarm: Swarm,
) -> None:
    # votes are sent without a simulation first (one contract run fewer per vote, every
    # round): a refusal costs a failed transaction but is named all the same
    swarm.admin.create_session("s", min_peers=3)
    node = swarm.nodes[0]
    node.ready("s", 0, 0, 10)  # the first vote estimates the gas of `ready`
    block = swarm.w3.eth.block_number
    with pytest.raises(errors.AlreadyVoted, match="already voted"):
        node.ready("s", 0, 0, 10)
    assert swarm.w3.eth.block_number == block + 1
    failed = swarm.w3.eth.get_block(block + 1, full_transactions=True)["transactions"][0]
    assert failed["from"] == node.account.address
    assert swarm.w3.eth.get_transaction_receipt(failed["hash"])["status"] == 0
    node.ready("s", 1, 0, 10)  # and the node votes on after the failed transaction
    assert swarm.admin.vote("s", 1, 0, node.account.address).voted


def test_other_transactions_are_simulated_and_a_refusal_mines_nothing(swarm: Swarm) -> None:
    newcomer = Account.create().address
    swarm.admin.add_member(newcomer, "spiffe://example.org/newcomer")  # estimates the gas
    block = swarm.w3.eth.block_number
    with pytest.raises(errors.AlreadyMember):
        swarm.admin.add_member(newcomer, "spiffe://example.org/newcomer")  # simulated
    assert swarm.w3.eth.block_number == block


def test_a_vote_that_runs_out_of_gas_is_estimated_again_and_resent(swarm: Swarm) -> None:
    # the kept gas limit can fall short when a vote costs more than the one it was estimated
    # for (a closing vote of a large round); the node re-estimates and sends it again, once
    swarm.admin.create_session("s", min_peers=1, quorum_wait=0)
    node = swarm.nodes[0]
    node.ready("s", 0, 0, 10)
    node._signer._limits["ready"] = 30_000  # type: ignore[union-attr]
    block = swarm.w3.eth.block_number
    node.ready("s", 1, 0, 10)
    assert swarm.admin.vote("s", 1, 0, swarm.addr(0)).voted
    assert swarm.w3.eth.block_number == block + 2  # the failed transaction, then the vote
    assert node._signer._limits["ready"] > 100_000  # type: ignore[union-attr]


def test_waiting_for_an_unreachable_quorum_fails_in_bounded_time(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=3, quorum_wait=0, round_timeout=2)
    swarm.nodes[0].ready("s", 0, 0, 10)
    with pytest.raises(errors.QuorumTimeout, match=r"1 member\(s\) voted, min_peers is 3"):
        swarm.nodes[0].wait_for_round("s", 0)  # the session's round timeout: 2 s


def test_sessions_are_separate_and_validated(swarm: Swarm) -> None:
    swarm.admin.create_session("a", min_peers=3)
    swarm.admin.create_session("b", min_peers=1, quorum_wait=0)
    with pytest.raises(errors.SessionExists):
        swarm.admin.create_session("a", min_peers=2)
    with pytest.raises(errors.InvalidSessionParameters):
        swarm.admin.create_session("c", min_peers=1, round_timeout=0)
    with pytest.raises(errors.UnknownSession):
        swarm.nodes[0].ready("nope", 0, 0, 1)
    with pytest.raises(errors.UnknownSession):
        swarm.admin.session("nope")
    swarm.nodes[0].ready("b", 0, 0, 1)
    assert swarm.admin.round("b", 0).closed  # one peer suffices in b
    assert not swarm.admin.round("a", 0).participants
    assert swarm.admin.session_names() == ["a", "b"]


def test_a_session_without_rules_takes_no_vote_until_the_first_member_fixes_them(
    swarm: Swarm,
) -> None:
    swarm.admin.create_session("open", quorum_wait=0)  # min_peers and merge left to the nodes
    assert swarm.admin.session_rules("open") is None
    with pytest.raises(errors.RulesNotFixed, match="a node fixes them when it joins"):
        swarm.nodes[0].ready("open", 0, 0, 10)
    swarm.nodes[1].fix_rules("open", SessionRules(2, "coordinate_median"))
    with pytest.raises(errors.RulesAlreadyFixed):  # the first one wins, for good
        swarm.nodes[0].fix_rules("open", SessionRules(1, "mean"))
    assert swarm.nodes[0].session_rules("open") == SessionRules(2, "coordinate_median")
    swarm.nodes[0].ready("open", 0, 0, 10)
    assert not swarm.admin.round("open", 0).closed  # min_peers=2 as fixed
    swarm.nodes[1].ready("open", 0, 0, 10)
    assert swarm.admin.round("open", 0).closed
    # a creator that sets them fixes them at once
    swarm.admin.create_session("set", min_peers=3, merge="krum")
    assert swarm.admin.session_rules("set") == SessionRules(3, "krum")
    with pytest.raises(errors.RulesAlreadyFixed):
        swarm.nodes[0].fix_rules("set", SessionRules(3, "krum"))


def _round(swarm: Swarm, r: int, hashes: list[bytes], voters: tuple[int, ...] = (0, 1, 2)) -> None:
    for i, prev in zip(voters, hashes, strict=True):
        swarm.nodes[i].ready("s", r, 0, 100 * (i + 1), prev)


def test_audit_shows_participants_samples_and_hash_agreement(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    _round(swarm, 0, [H[0]] * 3)  # nothing merged before round 0
    _round(swarm, 1, [H[1]] * 3)  # all loaded the same merged model of round 0
    _round(swarm, 2, [H[2], H[2], H[3]])  # node 2 loaded something else after round 1
    rows = audit(swarm.admin, "s")
    assert [(r.round, r.status) for r in rows] == [(0, "agree"), (1, "MISMATCH"), (2, "pending")]
    assert rows[0].merged_hash == H[1]
    assert rows[0].samples == [100, 200, 300]
    assert rows[0].spiffe_ids == [f"spiffe://swarm.test/node-{i}" for i in range(3)]
    text = format_audit(rows, "s")
    assert "MISMATCH" in text and "spiffe://swarm.test/node-2" in text
    assert H[3].hex()[:12] in text


def test_a_fresh_account_cannot_pay_for_gas(swarm: Swarm) -> None:
    broke = LedgerClient(swarm.w3, swarm.admin.address, Account.create())
    swarm.admin.add_member(broke.account.address, "spiffe://swarm.test/broke")  # type: ignore[union-attr]
    with pytest.raises(errors.InsufficientFunds, match="Fund the account"):
        broke.register("tcp://x:1", b"\x01" * 32)
