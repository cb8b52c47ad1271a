"""Agree on a session's rules with the chain, before this node casts any vote.

The chain holds the session's rules (:class:`~swarmlib.ledger.SessionRules`).
If nobody has fixed them yet, this node fixes them from its own settings (the
first node to join wins a race; the others read what it fixed). A node whose
own settings disagree with the chain's is refused here, at ``join()``, with both
values named; a setting the node leaves open (``None``) takes the chain's.
"""

from __future__ import annotations

import logging

from swarmlib.errors import ConfigurationError, RulesAlreadyFixed
from swarmlib.ledger import DEFAULT_MERGE, LedgerClient, SessionRules
from swarmlib.merge import get_strategy

__all__ = ["agree_rules", "canonical_merge", "check_feasible", "check_rules"]

logger = logging.getLogger(__name__)


def canonical_merge(name: str) -> str:
    """A merge name or spec as the chain records it (``"coordmedian"`` -> ``"coordinate_median"``).

    Raises:
        ConfigurationError: an unknown strategy or bad parameters.
    """
    return get_strategy(name).spec


def check_feasible(rules: SessionRules, session: str) -> None:
    """Raise if the session's merge cannot run on a round of ``min_peers`` participants.

    Krum with ``f`` tolerates ``f`` Byzantine peers only among at least ``2f + 3``; a
    trimmed mean with ``k`` needs more than ``2k``. A round may close with ``min_peers``.

    Raises:
        ConfigurationError: naming the strategy's need and the session's ``min_peers``.
    """
    strategy = get_strategy(rules.merge)
    if strategy.min_peers > rules.min_peers:
        raise ConfigurationError(
            f"Session {session!r}: merge {strategy.spec} needs at least {strategy.min_peers} "
            f"participants in a round, but a round may close with min_peers="
            f"{rules.min_peers}. Raise min_peers to {strategy.min_peers}, or choose another merge."
        )


def check_rules(
    agreed: SessionRules, session: str, *, min_peers: int | None, merge: str | None
) -> None:
    """Raise if this node's settings (``None``: no preference) differ from ``agreed``.

    Raises:
        ConfigurationError: naming the setting, this node's value and the session's.
    """
    clashes = []
    if min_peers is not None and min_peers != agreed.min_peers:
        clashes.append(f"min_peers={min_peers} here, min_peers={agreed.min_peers} on chain")
    if merge is not None and canonical_merge(merge) != canonical_merge(agreed.merge):
        clashes.append(f"merge={canonical_merge(merge)!r} here, merge={agreed.merge!r} on chain")
    if clashes:
        raise ConfigurationError(
            f"This node's settings disagree with the rules of session {session!r}: "
            f"{'; '.join(clashes)}. Every node of a session uses the session's rules: pass "
            "the chain's values (or leave them unset to take them), or train in another session."
        )


def agree_rules(
    ledger: LedgerClient, session: str, *, min_peers: int | None, merge: str | None
) -> SessionRules:
    """The session's rules, fixed from this node's settings if nobody has fixed them yet.

    Raises:
        ConfigurationError: the settings disagree with the chain's rules, or the
            session has none yet and this node gives no ``min_peers``.
    """
    agreed = ledger.session_rules(session)
    if agreed is None:
        if min_peers is None:
            raise ConfigurationError(
                f"Session {session!r} has no rules yet and this node sets no min_peers: pass "
                "min_peers (SwarmCallback(min_peers=...), SWARMLIB_MIN_PEERS) so that the first "
                "node can fix them, or create the session with `swarmlib session create "
                "--min-peers N`."
            )
        wanted = SessionRules(min_peers, canonical_merge(merge or DEFAULT_MERGE))
        check_feasible(wanted, session)  # before it is fixed for good
        try:
            ledger.fix_rules(session, wanted)
            logger.info("Fixed the rules of session %r: %s", session, wanted)
            return wanted
        except RulesAlreadyFixed:  # another node was first: compare with what it fixed
            agreed = ledger.session_rules(session)
            assert agreed is not None
    check_rules(agreed, session, min_peers=min_peers, merge=merge)
    check_feasible(agreed, session)
    return agreed
