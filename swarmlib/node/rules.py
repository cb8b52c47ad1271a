"""Agree on a session's rules with the chain, before this node casts any vote.

The chain holds the session's rules (:class:`~swarmlib.ledger.SessionRules`:
``min_peers``, the merge strategy, secure aggregation, differential privacy,
owner replicas).
If nobody has fixed them yet, this node fixes them from its own settings (the
first node to join wins a race; the others read what it fixed). A node whose
own settings disagree with the chain's is refused here, at ``join()``, with both
values named; a setting the node leaves open (``None``) takes the chain's.
"""

from __future__ import annotations

import logging
from typing import Any

from swarmlib.errors import ConfigurationError, RulesAlreadyFixed
from swarmlib.ledger import DEFAULT_MERGE, LedgerClient, SessionRules
from swarmlib.merge import get_strategy
from swarmlib.transport.replicas import check_replicas
from swarmlib.transport.secagg import MIN_PARTICIPANTS

__all__ = ["agree_rules", "canonical_merge", "check_feasible", "check_rules"]

logger = logging.getLogger(__name__)


def canonical_merge(name: str) -> str:
    """A merge name or spec as the chain records it (``"coordmedian"`` -> ``"coordinate_median"``).

    Raises:
        ConfigurationError: an unknown strategy or bad parameters.
    """
    return get_strategy(name).spec


def check_feasible(rules: SessionRules, session: str) -> None:
    """Raise if the session's rules cannot run on a round of ``min_peers`` participants.

    Krum with ``f`` tolerates ``f`` Byzantine peers only among at least ``2f + 3``; a
    trimmed mean with ``k`` needs more than ``2k``; secure aggregation needs a
    linear merge and 3 participants; ``owner_replicas`` owners per shard need as many
    participants, and cannot mask for a single owner. A round may close with ``min_peers``.

    Raises:
        ConfigurationError: naming the rule's need and the session's ``min_peers``.
    """
    strategy = get_strategy(rules.merge)
    if strategy.min_peers > rules.min_peers:
        raise ConfigurationError(
            f"Session {session!r}: merge {strategy.spec} needs at least {strategy.min_peers} "
            f"participants in a round, but a round may close with min_peers="
            f"{rules.min_peers}. Raise min_peers to {strategy.min_peers}, or choose another merge."
        )
    if rules.secure_aggregation and not strategy.linear:
        raise ConfigurationError(
            f"Session {session!r}: secure aggregation shows owners only sums, so it merges by "
            f"the mean; merge {strategy.spec} needs each participant's values. Use "
            "merge='mean', or turn secure aggregation off."
        )
    if rules.secure_aggregation and rules.min_peers < MIN_PARTICIPANTS:
        raise ConfigurationError(
            f"Session {session!r}: secure aggregation needs rounds of at least "
            f"{MIN_PARTICIPANTS} participants (with two, each learns the other's model from "
            f"the mean and its own), but min_peers={rules.min_peers}. Raise min_peers to 3."
        )
    try:
        check_replicas(rules.owner_replicas, rules.min_peers, rules.secure_aggregation)
    except ConfigurationError as e:
        raise ConfigurationError(f"Session {session!r}: {e}") from None


def _show(name: str, value: Any) -> str:
    return f"{name}={value}" if name == "privacy" else f"{name}={value!r}"


def check_rules(agreed: SessionRules, session: str, **settings: Any) -> None:
    """Raise if this node's settings (``None``: no preference) differ from ``agreed``.

    ``settings`` are any of ``min_peers``, ``merge``, ``secure_aggregation``,
    ``privacy`` (a :class:`~swarmlib.privacy.GaussianDP`) and ``owner_replicas``.

    Raises:
        ConfigurationError: naming the setting, this node's value and the session's.
    """
    clashes = []
    for name, value in settings.items():
        if value is None:
            continue
        ours, theirs = value, getattr(agreed, name)
        if name == "merge":
            ours, theirs = canonical_merge(value), canonical_merge(theirs)
        if ours != theirs:
            clashes.append(f"{_show(name, ours)} here, {_show(name, theirs)} on chain")
    if clashes:
        raise ConfigurationError(
            f"This node's settings disagree with the rules of session {session!r}: "
            f"{'; '.join(clashes)}. Every node of a session uses the session's rules: pass "
            "the chain's values (or leave them unset to take them), or train in another session."
        )


def agree_rules(ledger: LedgerClient, session: str, **settings: Any) -> SessionRules:
    """The session's rules, fixed from this node's settings if nobody has fixed them yet.

    ``settings`` as for :func:`check_rules`; ``min_peers`` is needed to fix them.

    Raises:
        ConfigurationError: the settings disagree with the chain's rules, or the
            session has none yet and this node gives no ``min_peers``.
    """
    agreed = ledger.session_rules(session)
    if agreed is None:
        if settings.get("min_peers") is None:
            raise ConfigurationError(
                f"Session {session!r} has no rules yet and this node sets no min_peers: pass "
                "min_peers (SwarmCallback(min_peers=...), SWARMLIB_MIN_PEERS) so that the first "
                "node can fix them, or create the session with `swarmlib session create "
                "--min-peers N`."
            )
        wanted = SessionRules(
            settings["min_peers"],
            canonical_merge(settings.get("merge") or DEFAULT_MERGE),
            bool(settings.get("secure_aggregation")),
            settings.get("privacy"),
            settings.get("owner_replicas") or 1,
        )
        check_feasible(wanted, session)  # before it is fixed for good
        try:
            ledger.fix_rules(session, wanted)
            logger.info("Fixed the rules of session %r: %s", session, wanted)
            return wanted
        except RulesAlreadyFixed:  # another node was first: compare with what it fixed
            agreed = ledger.session_rules(session)
            assert agreed is not None
    check_rules(agreed, session, **settings)
    check_feasible(agreed, session)
    return agreed
