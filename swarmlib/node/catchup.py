"""A node that comes late: find the round the swarm is in, and fetch the swarm's model.

A node whose vote is refused because its round closed without it moves to the
round the swarm is in now (:func:`round_to_join`), so that every node keeps the
same round numbers. In that round it takes part with the swarm's latest merged
model instead of its own stale weights: it fetches the model from a participant
and checks it against the hash that participant recorded on chain
(:func:`fetch_swarm_model`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from zmq.utils import z85

from swarmlib.errors import FetchFailed
from swarmlib.ledger import LedgerClient, RoundInfo
from swarmlib.transport import CurveKeyPair
from swarmlib.transport.fetch import fetch_model

__all__ = ["fetch_swarm_model", "round_to_join"]

logger = logging.getLogger(__name__)

_FETCH_TIMEOUT_S = 10.0  # longest wait for one participant's model


def round_to_join(
    ledger: LedgerClient,
    session: str,
    refused: int,
    wait_s: float,
    sleep: Callable[[float], object] = time.sleep,
) -> tuple[int, int]:
    """The round and attempt a node whose vote for round ``refused`` came too late votes in.

    The highest round and attempt anyone voted in, if it is still open and not
    behind (a retried attempt of the very round refused included: the swarm may
    need this node's vote to reach ``min_peers`` in it); else attempt 0 of the
    round after it (or after ``refused``). When the latest attempt is of the
    refused round and has just closed, the chain cannot say yet whether its
    exchange succeeded (the swarm then votes the next round) or failed (its
    participants vote the next attempt): up to ``wait_s`` seconds, the next vote
    on chain tells.
    """
    latest = ledger.latest_round(session)
    if latest is None:
        return refused + 1, 0
    deadline = time.monotonic() + wait_s
    while latest[0] == refused and latest[2] and time.monotonic() < deadline:
        sleep(0.2)
        latest = ledger.latest_round(session) or latest
    current, attempt, closed = latest
    if not closed and current >= refused:
        return current, attempt
    return max(current, refused) + 1, 0


def fetch_swarm_model(
    ledger: LedgerClient,
    session: str,
    state: RoundInfo,
    vector: np.ndarray,
    curve: CurveKeyPair,
    timeout: float,
) -> tuple[np.ndarray, bytes] | None:
    """Fetch the swarm's model of the round before ``state`` from one of its participants.

    The participants of ``state`` each recorded on chain the hash of the merged
    model they loaded; the first that hands over a model with that hash (and of
    ``vector``'s size and dtype) wins. Returns the model and its hash, or
    ``None`` (logged: the node's own weights go in as they are).
    """
    me = ledger.account.address if ledger.account is not None else None
    for address in state.participants:
        h = ledger.vote(session, state.round, state.attempt, address).previous_merged_hash
        if address == me or h == b"\0" * 32:
            continue
        member = ledger.member(address)
        endpoints = member.endpoint.split()
        if len(endpoints) < 2:
            continue  # a node without a model server
        try:
            key = z85.encode(member.curve_key)
            limit = min(_FETCH_TIMEOUT_S, timeout)
            model = fetch_model(endpoints[1], key, curve, h.hex(), timeout=limit)
        except FetchFailed as e:
            logger.warning("Could not fetch the model from %s: %s", member.spiffe_id, e)
            continue
        if model.size != vector.size or model.dtype != vector.dtype:
            logger.warning("%s has a model of another shape", member.spiffe_id)
            continue
        logger.warning(
            "Loaded the swarm's model of round %d from %s (SHA-256 %s…, as on chain)",
            state.round - 1,
            member.spiffe_id,
            h.hex()[:16],
        )
        return model, h
    logger.warning(
        "No participant of round %d could hand over the swarm's model; this node's "
        "weights are merged in as they are",
        state.round,
    )
    return None
