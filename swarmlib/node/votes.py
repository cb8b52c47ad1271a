"""A node's chain writes that overlap training: votes cast ahead, round receipts, leaving.

Every write of one node goes through one background worker, in order, so that no
two transactions race for a nonce: a round's receipt, a vote cast ahead of a sync,
a ``leave`` sent when ``fit`` ends, and the next round's vote come out one after
the other. A write sent from the caller's thread (a vote in ``sync``) first waits
for those still being sent (:meth:`Votes.settle_writes`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from swarmlib.errors import ConfigurationError, SwarmError
from swarmlib.ledger import LedgerClient, MemberInfo, RoundInfo

__all__ = ["EarlyVote", "Votes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EarlyVote:
    """A vote cast ahead of its sync, and the round it closed, if it did."""

    receipt: Any
    agreed: RoundInfo | None
    members: list[MemberInfo] | None  # the participants' records, when it closed the round
    seconds: float  # how long casting it took


class Votes:
    """The votes cast ahead and the leave of one node in one session.

    Args:
        ledger: The node's contract client.
        session: The session's name.
        before_vote: Called in the worker before each vote cast ahead (the node
            publishes a rotated SVID there).
    """

    def __init__(self, ledger: LedgerClient, session: str, before_vote: Callable[[], None]):
        self.ledger = ledger
        self.session = session
        self.before_vote = before_vote
        self._worker: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, int, Future[EarlyVote]] | None = None  # round, n_samples, vote
        self._writes: list[Future[None]] = []  # receipts and a leave not waited for
        self.finished = False  # the chain has this node's leave, and it has not voted since

    def _background(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="swarmlib-chain")
        return self._worker

    def ahead(self, round_id: int, n_samples: int, last_hash: bytes) -> None:
        """Cast the vote for ``round_id`` in the background (nothing if one is out already)."""
        if self._ahead is not None:
            return

        def vote() -> EarlyVote:
            started = time.perf_counter()
            self.finished = False  # after a leave queued before it: the vote brings it back
            self.before_vote()
            receipt = self.ledger.ready(self.session, round_id, 0, n_samples, last_hash)
            agreed = self.ledger.agreed_by(receipt, self.session, round_id, 0)
            members = None if agreed is None else self.ledger.members_of(agreed.participants)
            return EarlyVote(receipt, agreed, members, time.perf_counter() - started)

        self._ahead = (round_id, n_samples, self._background().submit(vote))

    def take(self, n_samples: int) -> Future[EarlyVote] | None:
        """The vote cast ahead for the coming sync, if any (checked against its ``n_samples``)."""
        if self._ahead is None:
            return None
        round_id, voted, future = self._ahead
        if voted != n_samples:  # kept: a sync() with the voted n_samples still takes it
            raise ConfigurationError(
                f"vote_ahead() voted n_samples={voted} for round {round_id}, but sync() came "
                f"with n_samples={n_samples}: pass the same n_samples."
            )
        self._ahead = None
        return future

    def settle(self) -> None:
        """Wait for every write still being sent: a vote cast ahead (abandoned), a leave."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            try:
                ahead[2].result()
            except SwarmError as e:  # the vote is abandoned: say why
                logger.warning("The vote cast ahead for round %d failed: %s", ahead[0], e)
        self.settle_writes()

    def settle_writes(self) -> None:
        """Wait for receipts and a leave still being sent, before this thread sends (nonces)."""
        writes, self._writes = self._writes, []
        for write in writes:
            write.result()  # each logs its own failure

    def receipt(
        self, round_id: int, attempt: int, contribution: bytes, merged: bytes, *, initial: bool
    ) -> None:
        """Record this node's receipt of a merged round on chain, in the background.

        A receipt that fails is logged, not raised: the model is merged either way,
        and ``swarmlib audit`` shows the round without it.
        """

        def send() -> None:
            try:
                self.ledger.receipt(self.session, round_id, attempt, contribution, merged,
                                    initial=initial)  # fmt: skip
            except SwarmError as e:
                logger.warning("Could not record the receipt of round %d attempt %d on chain: %s",
                               round_id, attempt, e)  # fmt: skip

        self._writes.append(self._background().submit(send))

    def report(self, round_id: int, attempt: int, accused: str, evidence: bytes) -> None:
        """Record on chain, in the background, that ``accused`` (an address) was outvoted.

        ``evidence`` is the SHA-256 of its outvoted copy. A report that fails is
        logged, not raised: the round took the majority's copy either way.
        """

        def send() -> None:
            try:
                self.ledger.report(self.session, round_id, attempt, accused, evidence)
            except SwarmError as e:
                logger.warning("Could not report %s on chain for round %d attempt %d: %s",
                               accused, round_id, attempt, e)  # fmt: skip

        self._writes.append(self._background().submit(send))

    def leave(self, *, wait: bool) -> None:
        """Tell the chain this node stopped training (once; logged, not raised, on failure)."""
        self.settle()
        if self.finished:
            return

        def send() -> None:
            try:
                self.ledger.leave(self.session)
                self.finished = True
            except SwarmError as e:
                logger.warning("Could not tell the chain that this node finished: %s", e)

        if wait:
            send()
        else:
            self._writes.append(self._background().submit(send))

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown()
            self._worker = None
