"""Waiting for a round to close: polling the chain cheaply, closing it once it may be closed.

A round's state changes only with a transaction, so a waiting node reads the
round again only when a new block has been mined (reading the block number costs
the chain far less than running the contract: on the embedded chain, 4 ms
against 25 ms).

Which clock measures the quorum wait: the voters' own. Once a voter has waited
``quorum_wait`` seconds by its monotonic clock it asks the contract to close the
round (``askToClose``, one transaction); the round closes when ``min_peers``
voters have asked. Block time cannot be trusted for it: a chain that mines a
block per transaction (the embedded chain, anvil without ``--block-time``) puts
every block at least a second after the last, so its clock runs ahead of the
wall clock when transactions come fast, and no block at all comes while every
live node waits. The contract's block-time rule stays, for chains with a block
period: a node also asks it to close the round when a new block may have made it
closable, once the wait has passed by the chain's own timestamps, and every few
seconds in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import swarmlib.errors as errors
from swarmlib.errors import QuorumTimeout, SwarmEnded, TransactionFailed

if TYPE_CHECKING:
    from swarmlib.ledger.client import LedgerClient, RoundInfo

__all__ = ["RoundWaiter"]

_CLOSE_RETRY_S = 2.0  # how often a waiting node asks to close a round its clock says is not due


class RoundWaiter:
    """One node's wait for one round attempt (see :meth:`LedgerClient.wait_for_round`)."""

    def __init__(
        self,
        client: LedgerClient,
        session: str,
        round_id: int,
        attempt: int,
        timeout: float | None,
    ):
        self.client = client
        self.session = session
        self.round_id = round_id
        self.attempt = attempt
        self.info = client.session(session)
        self.limit = float(self.info.round_timeout if timeout is None else timeout)
        self._next_close = 0.0
        # the quorum wait by this node's clock, from when it began waiting (it has voted)
        self._wait_over_at = time.monotonic() + self.info.quorum_wait
        self._asked = False

    def wait(self, poll: float, max_poll: float, sleep: Callable[[float], object]) -> RoundInfo:
        """Poll with backoff (``poll`` up to ``max_poll`` s) until the round closes."""
        c, min_peers = self.client, self.info.min_peers
        deadline = time.monotonic() + self.limit
        stragglers_until = time.monotonic() + self.info.quorum_wait
        delay, seen_block, votes = poll, -1, 0
        state: RoundInfo | None = None
        while True:
            block = c._rpc(lambda: c.w3.eth.block_number, "eth_blockNumber")
            changed = block != seen_block
            if changed:
                seen_block = block
                state = c.round(self.session, self.round_id, self.attempt, with_members=True)
                if state.closed:
                    return state
                votes = len(state.participants)
            if state is not None and c.account is not None and votes >= min_peers:
                if self._try_close(state, changed):
                    seen_block = -1  # closed, by this node or another: read it again
                    continue
            elif votes < min_peers and time.monotonic() >= stragglers_until:
                self._raise_if_ended()
            if time.monotonic() >= deadline:
                raise QuorumTimeout(
                    f"Round {self.round_id} attempt {self.attempt} of session {self.session!r} "
                    f"did not close within {self.limit:g}s: {votes} member(s) voted, min_peers "
                    f"is {min_peers}, {c.active_member_count()} member(s) are active. Start "
                    "more nodes or lower min_peers."
                )
            sleep(delay)
            delay = min(max_poll, delay * 1.5)

    def _try_close(self, state: RoundInfo, changed: bool) -> bool:
        """Ask the contract to close the round, when it may be closable; True if it is closed."""
        if not self._asked and time.monotonic() >= self._wait_over_at and self._is_voter(state):
            self._asked = True
            try:  # the wait is over by this node's clock: the chain's may say otherwise
                self.client.ask_to_close(self.session, self.round_id, self.attempt)
                return True
            except (errors.RoundClosed, TransactionFailed):
                return True  # closed meanwhile
        # by the chain's clock: when a block came, and every few seconds in between
        wait_over = time.time() >= state.opened_at + self.info.quorum_wait
        if not (changed or wait_over or time.monotonic() >= self._next_close):
            return False
        self._next_close = time.monotonic() + _CLOSE_RETRY_S
        try:  # the check is simulated first, so a refusal costs no gas
            self.client.close_round(self.session, self.round_id, self.attempt)
            return True
        except (errors.RoundClosed, TransactionFailed):
            return True  # another participant closed it (maybe in the same block)
        except errors.QuorumWaitNotOver:
            return False

    def _is_voter(self, state: RoundInfo) -> bool:
        account = self.client.account
        return account is not None and account.address in state.participants

    def _raise_if_ended(self) -> None:
        """After the quorum wait, too few members left in the session: the round never closes.

        (A late starter may still come within the quorum wait.)
        """
        present = self.client.presence(self.session)
        min_peers = self.info.min_peers
        if present.started and len(present.members) < min_peers:
            raise SwarmEnded(
                f"Round {self.round_id} of session {self.session!r} cannot reach min_peers="
                f"{min_peers}: only {len(present.members)} member(s) are still training, the "
                "others left the session. Start more nodes or lower min_peers to go on together."
            )
