"""Sending transactions: nonces, gas, fees, refusals named before or after mining."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError

from swarmlib import errors
from swarmlib.ledger import LedgerClient
from swarmlib.ledger.client import session_id
from tests.ledger_swarm import Swarm


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


def test_a_fresh_account_cannot_pay_for_gas(swarm: Swarm) -> None:
    broke = LedgerClient(swarm.w3, swarm.admin.address, Account.create())
    swarm.admin.add_member(broke.account.address, "spiffe://swarm.test/broke")  # type: ignore[union-attr]
    with pytest.raises(errors.InsufficientFunds, match="Fund the account"):
        broke.register("tcp://x:1", b"\x01" * 32)
