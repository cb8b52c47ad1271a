"""Replicated shard owners: who merges which shard, and which of its copies a node takes.

With ``replicas=r`` the owners of shard *k* among *N* participants are
*k, k+1, …, k+r-1* (mod *N*), in the round's agreed participant order, so every
participant computes the same assignment and owns *r* shards. Each participant
sends its slice of shard *k* to all *r* owners; each owner merges it (merges are
deterministic, so honest owners produce the same bytes) and sends it to
everyone. A node takes a merged shard only when more than half of its *r*
copies are bit-identical (its own counts when it is an owner): ``r = 3``
outvotes one wrong owner per shard, ``r = 2`` detects a wrong owner but
cannot tell which of the two it is, ``r = 1`` is the plain protocol and trusts
the single owner.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from swarmlib.errors import ConfigurationError

__all__ = ["Vote", "blame", "check_replicas", "majority", "outvoted", "owned_by", "owners_of"]


def check_replicas(replicas: int, participants: int, secure: bool = False) -> None:
    """Raise unless ``replicas`` owners per shard fit a round of ``participants``.

    ``secure`` (secure aggregation) masks each contribution for one owner, so it
    allows only ``replicas == 1``. The one check of these rules: the exchange, the
    session's rules and the callback all call it.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ConfigurationError(
            f"Invalid value for argument `owner_replicas`. Received: {replicas!r}. Expected "
            "a whole number >= 1 (3 outvotes one wrong owner per shard; 1 is the plain protocol)."
        )
    if replicas > participants:
        raise ConfigurationError(
            f"owner_replicas={replicas} needs at least {replicas} participants in a round; this "
            f"one may have {participants}. Raise min_peers to {replicas}, or lower owner_replicas."
        )
    if secure and replicas > 1:
        raise ConfigurationError(
            f"owner_replicas={replicas} cannot be combined with secure aggregation: secure "
            "aggregation masks each contribution for its shard's one owner and reveals the "
            "unmasking keys to it alone. Choose one: secure aggregation (owners see only sums) "
            "or replicated owners (a wrong merge is outvoted)."
        )


def owners_of(shard: int, participants: int, replicas: int) -> list[int]:
    """The participants that merge ``shard``, first owner first."""
    return [(shard + t) % participants for t in range(replicas)]


def owned_by(me: int, participants: int, replicas: int) -> list[int]:
    """The shards participant ``me`` merges, in shard order."""
    return sorted({(me - t) % participants for t in range(replicas)})


@dataclass(frozen=True)
class Vote:
    """The outcome of comparing the copies of one merged shard (or reduce partial).

    ``winner`` is an owner whose copy more than half of the copies equal, or
    None when no copy has a majority; ``dissenters`` are the owners whose copy
    differs from the winner's (every owner, when there is no winner).
    """

    winner: int | None
    dissenters: list[int]


def majority(copies: dict[int, np.ndarray]) -> Vote:
    """Compare the owners' copies byte for byte; see :class:`Vote`."""
    groups: list[list[int]] = []
    for owner in sorted(copies):
        raw = copies[owner].view(np.uint8)
        for group in groups:
            first = copies[group[0]].view(np.uint8)
            if raw.shape == first.shape and np.array_equal(raw, first):
                group.append(owner)
                break
        else:
            groups.append([owner])
    best = max(groups, key=len)
    if 2 * len(best) <= len(copies):
        return Vote(None, sorted(copies))
    return Vote(best[0], sorted(o for o in copies if o not in best))


def outvoted(
    disputes: dict[int, Vote], copies: dict[int, dict[int, np.ndarray]]
) -> dict[int, bytes]:
    """Owners whose copy a majority outvoted, with the SHA-256 of that copy (the evidence)."""
    return {o: hashlib.sha256(copies[k][o].tobytes()).digest()
            for k, vote in sorted(disputes.items()) if vote.winner is not None
            for o in vote.dissenters}  # fmt: skip


def blame(what: str, disputes: dict[int, Vote], names: list[str]) -> tuple[list[int], str]:
    """The owners to refuse for the disputed shards, and why (``names``: the participants).

    Every owner that dissented on any shard is named, so that every node, once
    it has all the copies, names the same culprits and the retry leaves out the
    same participants everywhere.
    """
    culprits = sorted({o for vote in disputes.values() for o in vote.dissenters})
    parts = []
    for shard, vote in sorted(disputes.items()):
        who = ", ".join(names[o] for o in vote.dissenters)
        if vote.winner is not None:
            parts.append(f"{what} {shard}: {who} sent a copy the other owners outvoted")
        else:
            parts.append(f"{what} {shard}: the copies of {who} disagree and none has a majority")
    why = "; ".join(parts)
    if any(vote.winner is None for vote in disputes.values()):
        why += (
            ". No node can tell which of those owners is wrong, so the round goes on "
            "without all of them; owner_replicas=3 outvotes one wrong owner instead"
        )
    return culprits, why
