"""SwarmLedger's rules on the embedded chain (py-evm in process)."""

from __future__ import annotations

import time

import pytest

from swarmlib import errors
from swarmlib.ledger.client import PresenceInfo
from swarmlib.ledger.rules import SessionRules
from tests.ledger_swarm import Swarm


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


def test_a_member_removed_before_its_round_closes_is_taken_out_of_it(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    for i in (2, 0):
        swarm.nodes[i].ready("s", 0, 0, 10 * (i + 1))
    swarm.admin.remove_member(swarm.addr(2))  # its vote is in, the round is still open
    assert swarm.admin.round("s", 0).participants == (swarm.addr(0),)
    assert not swarm.admin.vote("s", 0, 0, swarm.addr(2)).voted
    assert swarm.addr(2) not in swarm.admin.presence("s").members
    swarm.nodes[1].ready("s", 0, 0, 20)  # the last member the session still expects
    state = swarm.admin.round("s", 0)
    assert state.closed and state.participants == (swarm.addr(0), swarm.addr(1))


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


def test_only_voters_of_a_closed_round_report_one_another(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    evidence = bytes(range(32))
    swarm.nodes[0].ready("s", 0, 0, 10)
    swarm.nodes[1].ready("s", 0, 0, 10)
    with pytest.raises(errors.RoundNotOpen):  # still open: nothing to report yet
        swarm.nodes[0].report("s", 0, 0, swarm.addr(1), evidence)
    swarm.nodes[2].ready("s", 0, 0, 10)  # closes it
    swarm.nodes[0].report("s", 0, 0, swarm.addr(1), evidence)
    with pytest.raises(errors.NotVoted):  # the accused must be a voter of that attempt
        swarm.nodes[0].report("s", 0, 0, swarm.addr(3), evidence)
    with pytest.raises(errors.NotAMember):
        swarm.outsider.report("s", 0, 0, swarm.addr(1), evidence)
    with pytest.raises(errors.ConfigurationError, match="32-byte"):
        swarm.nodes[0].report("s", 0, 0, swarm.addr(1), b"short")
    logs = swarm.admin.contract.events.Reported().get_logs(from_block=0)
    assert [(e["args"]["reporter"], e["args"]["accused"], e["args"]["evidence"]) for e in logs] == [
        (swarm.addr(0), swarm.addr(1), evidence)]  # fmt: skip


def test_voters_of_a_closed_round_record_receipts(swarm: Swarm) -> None:
    swarm.admin.create_session("s", min_peers=2, quorum_wait=600)
    contribution, merged = bytes(range(32)), bytes(range(1, 33))
    swarm.nodes[0].ready("s", 0, 0, 10)
    with pytest.raises(errors.RoundNotOpen):  # nothing merged yet
        swarm.nodes[0].receipt("s", 0, 0, contribution, merged)
    swarm.nodes[1].ready("s", 0, 0, 10)
    swarm.nodes[2].ready("s", 0, 0, 10)  # closes it
    swarm.nodes[0].receipt("s", 0, 0, contribution, merged, initial=True)
    swarm.add(3)
    with pytest.raises(errors.NotVoted):  # a member that took no part has nothing to record
        swarm.nodes[3].receipt("s", 0, 0, contribution, merged)
    with pytest.raises(errors.NotAMember):
        swarm.outsider.receipt("s", 0, 0, contribution, merged)
    with pytest.raises(errors.ConfigurationError, match="32 bytes"):
        swarm.nodes[0].receipt("s", 0, 0, b"short", merged)
    logs = swarm.admin.contract.events.Receipt().get_logs(from_block=0)
    assert [(e["args"]["member"], e["args"]["contributionHash"], e["args"]["mergedHash"],
             e["args"]["initial"]) for e in logs] == [
        (swarm.addr(0), contribution, merged, True)]  # fmt: skip


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
