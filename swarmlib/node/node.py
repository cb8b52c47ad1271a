"""SwarmNode: the middleware that turns "merge my weights with the swarm" into votes and a merge.

Usable without Keras for any list of numpy arrays::

    node = SwarmNode.from_env()          # SWARMLIB_* variables, see NodeConfig
    node.join()
    result = node.sync(weights, n_samples=len(x_train))   # every node gets the same merge
    weights = result.weights
    node.leave()

``join()`` agrees on the session's rules with the chain (``min_peers`` and the
merge strategy; see :mod:`swarmlib.node.rules`) before anything is voted. One
:meth:`SwarmNode.sync` is one round: vote ``ready`` on chain (with the hash of
the model loaded last round), wait until the round's participant list is
agreed, verify every participant's SPIFFE identity and merge over the sharded
exchange. A participant that fails the exchange is dropped and the round is
voted again as the next attempt. The merged model's hash is recorded with the
next vote, so ``swarmlib audit`` can show that every participant loaded it. A
node that comes late fetches the swarm's latest merged model from a participant
and checks it against the hash on chain (:mod:`swarmlib.node.catchup`).

The vote needs nothing of the weights, so a caller that knows a sync is coming
can cast it early with :meth:`SwarmNode.vote_ahead` (the Keras callback does, a
few batches before each sync): the round is then agreed while those batches
train, and ``sync`` goes straight to the exchange.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from eth_account.signers.local import LocalAccount
from web3 import Web3

from swarmlib.errors import (
    AlreadyVoted,
    ConfigurationError,
    FetchFailed,
    IdentityError,
    NotAMember,
    PeerRejected,
    QuorumTimeout,
    RoundClosed,
    RoundFailed,
    RoundForfeited,
)
from swarmlib.identity import IdentitySource, open_source
from swarmlib.ledger import LedgerClient, MemberInfo, RoundInfo, SessionRules, connect
from swarmlib.ledger.chain import with_retries
from swarmlib.ledger.keys import load_or_create_account
from swarmlib.merge import First, ShardedMerge, Strategy, get_strategy
from swarmlib.node.catchup import fetch_swarm_model, round_to_join
from swarmlib.node.config import RULES, NodeConfig
from swarmlib.node.disclose import keep_contribution
from swarmlib.node.membership import Membership
from swarmlib.node.private import check_private, private_vector
from swarmlib.node.rules import agree_rules, check_rules
from swarmlib.node.votes import EarlyVote, Votes
from swarmlib.params import Layout, flatten, unflatten
from swarmlib.privacy import GaussianDP
from swarmlib.transport import CurveKeyPair, RoundResult, RoundStats, ShardedExchange
from swarmlib.transport.fetch import ModelServer

__all__ = ["MAX_ATTEMPTS", "SwarmNode", "SyncKind", "SyncResult"]

logger = logging.getLogger(__name__)

#: Attempts of one round before sync() gives up with the last attempt's error.
MAX_ATTEMPTS = 5

#: ``"sync"`` merges with the session's strategy; ``"initial"`` hands every node the
#: first participant's weights, so that all start from the same initialisation.
SyncKind = Literal["initial", "sync"]
_SCALAR_PREFIX = "scalar:"


@dataclass(frozen=True)
class SyncResult:
    """What one :meth:`SwarmNode.sync` gave back.

    Attributes:
        weights: The merged arrays, in the order, shapes and dtypes given.
        round: The round they were merged in.
        stats: What the exchange cost on this node (bytes, phases).
        timing: Seconds spent voting (``vote_s``, ``vote_ahead_s`` when the vote
            was cast ahead), waiting for the round to be agreed (``wait_s``)
            and in the exchange (``exchange_s``).
        scalars: The merged named scalars (e.g. ``{"val_loss": 0.31}``).
        merged: False when a securely aggregated round was forfeited
            (:class:`~swarmlib.errors.RoundForfeited`): ``weights`` are then
            this node's own, unmerged.
        epsilon: The privacy budget spent after this round, with differential
            privacy on; else ``None``.
    """

    weights: list[np.ndarray]
    round: int
    stats: RoundStats
    timing: dict[str, float]
    scalars: dict[str, float]
    merged: bool = True
    epsilon: float | None = None


@dataclass(frozen=True)
class _Joined:
    """Everything :meth:`SwarmNode.join` made, set once."""

    identity: IdentitySource
    account: LocalAccount
    w3: Web3
    ledger: LedgerClient
    rules: SessionRules
    strategy: Strategy
    curve: CurveKeyPair
    membership: Membership
    exchange: ShardedExchange
    model_server: ModelServer
    votes: Votes


class SwarmNode:
    """One node of a swarm: identity, chain membership, and the exchange.

    Args:
        config: The node's settings. Defaults to :meth:`NodeConfig.from_env`.
        identity: An identity source. Defaults to the SVID files or the
            Workload API named in the config.
        **overrides: NodeConfig fields (e.g. ``session="leukemia"``, ``min_peers=3``).
    """

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        identity: IdentitySource | None = None,
        **overrides: Any,
    ):
        self.config = config or NodeConfig.from_env(**overrides)
        self._identity = identity
        self.round = 0
        self.last_hash = b"\0" * 32
        self._joined: _Joined | None = None
        self._flat: np.ndarray | None = None  # flatten()'s buffer, reused round after round
        self._base: np.ndarray | None = None  # the last merged vector (read-only), for updates
        self._base_layout: Layout | None = None
        self._base_count = 0
        self._rng = np.random.default_rng()  # the privacy noise (seeded by the OS)

    @classmethod
    def from_env(cls, **overrides: Any) -> SwarmNode:
        """A node configured from ``SWARMLIB_*`` variables (and overrides)."""
        return cls(NodeConfig.from_env(**overrides))

    @property
    def joined(self) -> bool:
        """Whether :meth:`join` has run (and :meth:`leave` not since)."""
        return self._joined is not None

    def _state(self, what: str) -> _Joined:
        if self._joined is None:
            raise ConfigurationError(f"Call join() before {what}().")
        return self._joined

    @property
    def rules(self) -> SessionRules:
        """The session's rules, as agreed with the chain at :meth:`join`."""
        return self._state("rules").rules

    @property
    def ledger(self) -> LedgerClient:
        """The node's contract client."""
        return self._state("ledger").ledger

    @property
    def spiffe_id(self) -> str:
        return self._state("spiffe_id").identity.spiffe_id

    @property
    def endpoints(self) -> dict[str, str]:
        """Where this node listens: ``control`` (CURVE), ``data`` (sealed shards), ``fetch``."""
        j = self._state("endpoints")
        return {
            "control": j.exchange.endpoint,
            "data": j.exchange.data_endpoint,
            "fetch": j.model_server.endpoint,
        }

    # ------------------------------------------------------------------ join

    def expect(self, **rules: Any) -> None:
        """Require these session rules: before :meth:`join` they become this node's settings.

        ``rules`` are any of ``min_peers``, ``merge``, ``secure_aggregation``,
        ``privacy`` and ``owner_replicas``; ``None`` leaves one open. The Keras callback
        passes its own here.

        Raises:
            ConfigurationError: they differ from the node's own settings, or
                (after ``join``) from the session's rules on chain.
        """
        unknown = sorted(set(rules) - set(RULES))
        if unknown:
            raise ConfigurationError(f"Unknown rule(s) {', '.join(unknown)}; known: {RULES}.")
        if self._joined is not None:
            check_rules(self._joined.rules, self.config.session, **rules)
            return
        given: dict[str, Any] = rules
        for name, value in given.items():
            mine = getattr(self.config, name)
            if value is not None and mine is not None and mine != value:
                raise ConfigurationError(
                    f"{name}={value!r} was asked for, but this node is configured with "
                    f"{name}={mine!r}; pass one value."
                )
        self.config = replace(self.config, **{k: v for k, v in given.items() if v is not None})

    def join(self) -> None:
        """Load keys and SVID, check membership and the session's rules, register on chain.

        Raises:
            NotAMember: this node's address is not an active member (an admin adds it).
            IdentityError: no SVID, or its SPIFFE ID is not the one bound on chain.
            ConfigurationError: this node's ``min_peers`` or ``merge`` differ from
                the session's rules on chain (the message names both values).
            ChainUnreachable, WrongChain, NoContract: the chain settings are wrong.
        """
        c = self.config
        identity = self._identity or open_source(
            socket_path=c.spiffe_socket, cert=c.svid_cert, key=c.svid_key, bundle=c.trust_bundle
        )
        try:
            self._joined = _join_swarm(self.config, identity)
        except BaseException:
            if self._identity is None:
                identity.close()
            raise
        logger.info(
            "%s joined session %r as %s (endpoint %s, rules %s)",
            identity.spiffe_id,
            c.session,
            self._joined.account.address,
            self._joined.exchange.endpoint,
            self._joined.rules,
        )

    # ------------------------------------------------------------------ sync

    def vote_ahead(self, n_samples: int) -> None:
        """Cast this node's vote for its next round now, in the background.

        The vote — ``ready(round, n_samples, hash of the last merged model)`` —
        needs nothing of the weights about to be merged. A caller that knows a
        sync is coming (the Keras callback, a few batches before it) votes while
        those batches train: when this node is the last to vote, the round is
        agreed and its participants read by the time the weights are ready, and
        :meth:`sync` goes straight to the exchange. The order stays vote → agree
        → exchange; only the wait overlaps training.

        The next :meth:`sync` must follow with the same ``n_samples``; errors of
        the vote (the chain unreachable, a round agreed without this node) are
        raised there, as if it had voted itself. Until then the other
        participants may wait for this node's messages in the exchange, so vote
        ahead only of work that is short next to the exchange's timeout.
        Calling it again before ``sync`` does nothing.

        Raises:
            ConfigurationError: ``join()`` was not called, or ``n_samples`` is not positive.
        """
        j = self._state("vote_ahead")
        _check_samples(n_samples)
        if j.rules.privacy is not None and not j.rules.privacy.allows(self.round + 1):
            return  # sync() raises PrivacyBudgetSpent: no vote for a round that will not run
        j.votes.ahead(self.round, n_samples, self.last_hash)

    def sync(
        self,
        weights: Sequence[np.ndarray],
        n_samples: int,
        *,
        kind: SyncKind = "sync",
        scalars: Mapping[str, float] | None = None,
        copy: bool = True,
    ) -> SyncResult:
        """Merge ``weights`` with the swarm.

        Args:
            weights: This node's parameters (e.g. ``model.get_weights()``).
            n_samples: This node's merge weight, usually its training-set size.
            kind: ``"sync"`` merges with the session's strategy; ``"initial"``
                gives every node the first participant's weights. Defaults to
                ``"sync"``.
            scalars: Named numbers merged alongside the weights with the same
                strategy (e.g. ``{"val_loss": 0.4}`` for adaptive sync). Every
                participant must send the same names. Defaults to none.
            copy: Return arrays of their own. ``False`` returns read-only views of
                the merged model (which this node keeps serving to late joiners), for
                a caller that copies them anyway, as ``model.set_weights`` does: it
                saves a copy of the whole model per round. Defaults to ``True``.

        Returns:
            The merged weights and scalars, with the round and what it cost. A
            node that comes late (its round was agreed without it) joins the
            round the swarm is in now instead, so that every node keeps the same
            round numbers.

        Raises:
            QuorumTimeout: fewer than the session's ``min_peers`` could take part.
            RoundFailed: the round failed ``MAX_ATTEMPTS`` times, or because of this node.
            ConfigurationError: ``join()`` was not called, or bad arguments.
        """
        j = self._state("sync")
        _check_samples(n_samples)
        if kind not in ("initial", "sync"):
            raise ConfigurationError(f"`kind` must be 'initial' or 'sync'; got {kind!r}.")
        privacy = j.rules.privacy if kind == "sync" else None
        if privacy is not None:
            check_private(privacy, self.round, self._base, scalars)
        names = sorted(scalars or {})
        extra = [np.asarray([float((scalars or {})[n]) for n in names])] if names else []
        labels = (
            [*(f"weights[{i}]" for i in range(len(weights))), _SCALAR_PREFIX] if extra else None
        )
        vector, layout = flatten([*weights, *extra], labels, out=self._flat)
        self._flat = vector  # written again next round: the exchange reads it only in its round
        j.votes.settle_writes()
        j.votes.finished = False  # after any leave still being sent: this vote brings it back
        early = j.votes.take(n_samples)
        if early is None:
            j.membership.register_if_rotated()
        merges = {k: _Labelled(s.sharded(layout), names)
                  for k, s in (("initial", First()), ("sync", j.strategy))}  # fmt: skip
        result, timing, kind, sent = self._attempts(j, vector, n_samples, merges, kind, early,
                                                    privacy)  # fmt: skip
        if result is not None:
            self._record(j, result, sent, initial=kind == "initial")
        if result is None:  # forfeited: nothing merged, nothing to serve, the next round merges
            self.round += 1
            own = [np.array(w) for w in weights] if copy else list(weights)
            return SyncResult(own, self.round - 1, RoundStats(self.round - 1, 0, ()), timing,
                              {}, merged=False, epsilon=self.privacy_spent())  # fmt: skip
        self.last_hash = bytes.fromhex(result.sha256)
        # the merged vector is this round's own (the caller gets copies, or read-only views):
        # held, not copied
        j.model_server.publish(result.sha256, result.vector, self.round, copy=False)
        self.round += 1
        self._base, self._base_layout, self._base_count = result.vector, layout, len(weights)
        arrays = unflatten(result.vector, layout, copy=copy)
        merged_scalars = dict(zip(names, arrays.pop().tolist(), strict=True)) if names else {}
        return SyncResult(arrays, self.round - 1, result.stats, timing, merged_scalars,
                          epsilon=self.privacy_spent())  # fmt: skip

    # --------------------------------------------------------------- privacy

    def privacy_spent(self) -> float | None:
        """Epsilon spent so far in this session (``None`` without differential privacy).

        Counted over every round of the session up to this node's (conservatively,
        the initial one and rounds before this node joined included), with the
        session's :class:`~swarmlib.privacy.GaussianDP` and dp-accounting.
        """
        privacy = self._joined.rules.privacy if self._joined is not None else None
        return None if privacy is None else privacy.epsilon(self.round)

    def merged_weights(self) -> list[np.ndarray] | None:
        """Copies of the model merged last (``None`` before the first merge)."""
        if self._base is None or self._base_layout is None:
            return None
        arrays = unflatten(self._base, self._base_layout, copy=True)
        return arrays[: self._base_count]  # without the merged scalars

    def _attempts(
        self,
        j: _Joined,
        vector: np.ndarray,
        n_samples: int,
        merges: dict[str, _Labelled],
        kind: SyncKind,
        early: Future[EarlyVote] | None,
        privacy: GaussianDP | None,
    ) -> tuple[RoundResult | None, dict[str, float], SyncKind, np.ndarray]:
        """Vote, wait for the agreed round, exchange; retry failed attempts without culprits.

        Returns the result (``None`` for a forfeited round: secure aggregation, see
        :class:`~swarmlib.errors.RoundForfeited`), the timing, the kind of merge
        the round took (a late node's ``initial`` becomes ``sync``) and the vector sent.
        """
        excluded: set[str] = set()
        attempt, catching_up = 0, False
        noisy: np.ndarray | None = None
        timing = {"vote_s": 0.0, "wait_s": 0.0, "exchange_s": 0.0}
        while True:
            t0 = time.perf_counter()
            try:
                receipt, cast = self._vote(j, early, attempt, n_samples, timing)
                early = None
            except RoundClosed:
                # the round was agreed without this node (it came late): move to the round
                # the swarm is in now, so that this node's round numbers match everyone's
                target, at = round_to_join(j.ledger, self.config.session, self.round,
                                           wait_s=2 * self.config.timeout)  # fmt: skip
                logger.warning(
                    "Round %d attempt %d was agreed before this node voted; joining round %d "
                    "attempt %d", self.round, attempt, target, at,
                )  # fmt: skip
                early, self.round, attempt, excluded, catching_up = None, target, at, set(), True
                continue
            t1 = time.perf_counter()
            state, members = self._agreed(j, cast, attempt, receipt)
            if j.account.address not in state.participants:
                raise NotAMember(
                    f"Round {self.round} closed without this node's vote: an admin removed "
                    f"{j.account.address} from the swarm while the round was open. Ask an "
                    "admin to add it again (swarmlib member add).",
                    error="NotAMember",
                    args=(j.account.address,),
                )
            if catching_up:
                # the swarm is past its initial round: this node merges as the others do
                catching_up, kind, noisy = False, "sync", None
                vector = self._catch_up(j, state, vector, privacy)
            peers = j.membership.peers(state.participants, excluded, members)
            t2 = time.perf_counter()
            timing["vote_s"] += t1 - t0
            timing["wait_s"] += t2 - t1
            if len(peers) < j.rules.min_peers:
                raise QuorumTimeout(
                    f"Round {self.round}: {len(peers)} participant(s) after dropping "
                    f"{', '.join(sorted(excluded))}; the session needs {j.rules.min_peers} "
                    "(min_peers)."
                )
            secure = j.rules.secure_aggregation and kind == "sync"
            if privacy is not None and (noisy is None or secure):
                # noise is drawn once per round; under secure aggregation, where a failed
                # attempt released nothing, again for each attempt's number of participants
                assert self._base is not None  # check_private made sure
                noisy = private_vector(privacy, vector, self._base, len(peers), secure,
                                       self._rng, self.round)  # fmt: skip
            sent = vector if noisy is None else noisy
            try:
                result = j.exchange.run_round(
                    peers, sent, round_id=self.round,
                    attempt=attempt, merge=merges[kind], secure=secure,
                    replicas=j.rules.owner_replicas,
                    hash_contribution=self.config.receipts or bool(self.config.keep_contributions),
                    # a private merge counts every node alike: its sensitivity is clip_norm / n
                    weight=1.0 if privacy is not None else float(n_samples),
                )  # fmt: skip
                timing["exchange_s"] += time.perf_counter() - t2
                return result, timing, kind, sent
            except RoundForfeited as e:
                timing["exchange_s"] += time.perf_counter() - t2
                logger.warning("%s", e)
                return None, timing, kind, sent
            except RoundFailed as e:
                timing["exchange_s"] += time.perf_counter() - t2
                self._retry_or_raise(j, e, attempt, excluded)
                attempt += 1

    def _record(self, j: _Joined, result: RoundResult, sent: np.ndarray, *, initial: bool) -> None:
        """The round's receipt and reports on chain (in the background); the kept contribution.

        An owner whose merged copy the shard's other owners outvoted is reported
        (replicated shard owners), with the SHA-256 of its copy as evidence.
        """
        attempt = result.stats.attempt
        for name, evidence in result.outvoted.items():
            if name != j.identity.spiffe_id:
                logger.warning(
                    "Round %d attempt %d: %s's merge was outvoted by the shard's other owners "
                    "(copy sha256 %s); reporting it on chain", self.round, attempt, name,
                    evidence.hex()[:16],
                )  # fmt: skip
                j.votes.report(self.round, attempt, j.membership.address_of(name), evidence)
        if self.config.receipts:
            j.votes.receipt(self.round, attempt, bytes.fromhex(result.contribution),
                            bytes.fromhex(result.sha256), initial=initial)  # fmt: skip
        if self.config.keep_contributions:
            path = keep_contribution(
                self.config.keep_contributions, self.config.session, self.round, attempt, sent,
                address=j.account.address, spiffe_id=j.identity.spiffe_id,
                contribution=result.contribution, merged=result.sha256, initial=initial,
            )  # fmt: skip
            logger.info("Round %d: this node's contribution kept in %s", self.round, path)

    def _retry_or_raise(self, j: _Joined, e: RoundFailed, attempt: int, excluded: set[str]) -> None:
        """Raise ``e`` if this node is to blame or attempts are spent; else note the culprits."""
        if j.identity.spiffe_id in e.culprits or attempt + 1 >= MAX_ATTEMPTS:
            raise e
        rejected = isinstance(e, PeerRejected)
        if rejected:  # refused for what it sent: leave it out even if it votes again
            excluded.update(e.culprits)
        # a peer that timed out is left out by not voting again; one that does vote again
        # is alive (it was slow, or missed a message) and takes part
        logger.warning(
            "Round %d attempt %d failed (%s); voting attempt %d%s",
            self.round,
            attempt,
            e,
            attempt + 1,
            f" without {', '.join(e.culprits)}" if rejected else "",
        )

    def _vote(
        self,
        j: _Joined,
        early: Future[EarlyVote] | None,
        attempt: int,
        n_samples: int,
        timing: dict[str, float],
    ) -> tuple[Any, EarlyVote | None]:
        """This attempt's vote: the one cast ahead (raising what it raised), or a new one.

        A node restarted after a crash may find its round open with the vote of its
        previous life in it (``AlreadyVoted``): that vote stands, and the node takes
        part (``(None, None)``: the round is read from the chain).
        """
        try:
            if early is not None:
                cast = early.result()
                timing["vote_ahead_s"] = cast.seconds
                return cast.receipt, cast
            receipt = j.ledger.ready(self.config.session, self.round, attempt, n_samples,
                                     self.last_hash)  # fmt: skip
            return receipt, None
        except AlreadyVoted:
            logger.warning("Round %d attempt %d has this node's vote from before; taking part",
                           self.round, attempt)  # fmt: skip
            return None, None

    def _agreed(
        self, j: _Joined, cast: EarlyVote | None, attempt: int, receipt: Any
    ) -> tuple[RoundInfo, Sequence[MemberInfo] | None]:
        """The agreed round and its participants' records (read with it when possible)."""
        if cast is not None and cast.agreed is not None:
            return cast.agreed, cast.members  # this node's vote closed it
        state = j.ledger.wait_for_round(
            self.config.session,
            self.round,
            attempt,
            sleep=_nap(j.exchange),
            vote=receipt,
            # every waiting node polls the chain (a block-number read, cheap): often, so that
            # it has read the agreed round before the last voter's weights are ready; a large
            # swarm polls less often each (about 50 polls a second in all), so that one chain
            # serves it. The first participant's message wakes the rest.
            max_poll=min(2.0, max(0.05, 0.02 * j.rules.min_peers)),
        )
        return state, state.members or None

    def _catch_up(
        self, j: _Joined, state: RoundInfo, vector: np.ndarray, privacy: GaussianDP | None
    ) -> np.ndarray:
        """The swarm's latest model for a late node (its own ``vector`` if none can be had).

        Raises:
            FetchFailed: with differential privacy, when the model cannot be had: the
                node's own weights would be an update not bounded by ``clip_norm``.
        """
        fetched = fetch_swarm_model(
            j.ledger, self.config.session, state, vector, j.curve, self.config.timeout
        )
        if fetched is None:
            if privacy is not None:
                raise FetchFailed(
                    f"Round {self.round}: this node came late and could not fetch the swarm's "
                    "model. With differential privacy it cannot take part with its own weights "
                    "(its update against the swarm's model would not be bounded by clip_norm); "
                    "it tries again at its next sync."
                )
            return vector
        model, self.last_hash = fetched
        if privacy is not None:
            self._base = model  # the swarm's model: this node's update is nothing
            check_private(privacy, self.round, self._base, None)
        return model

    # ----------------------------------------------------------------- leave

    def finish(self, *, wait: bool = True) -> None:
        """Tell the swarm this node has stopped training: rounds no longer wait for it.

        Nodes that train on (they started later, or have more data) then know at
        once when too few members are left for their ``min_peers``
        (:class:`~swarmlib.errors.SwarmEnded`) instead of waiting out the round
        timeout. The next ``sync`` brings this node back. A chain that cannot be
        reached here is logged, not raised: training is over either way. A node
        that has finished and not voted since sends nothing again.

        Args:
            wait: Wait until the chain has it. ``False`` sends it in the
                background (the Keras callback does, so that ``fit`` returns
                without waiting for a block); the next ``sync``, :meth:`leave`
                and the interpreter's exit wait for it. Defaults to ``True``.
        """
        if self._joined is not None:
            self._joined.votes.leave(wait=wait)

    def leave(self) -> None:
        """:meth:`finish`, then close the exchange and the identity source.

        The chain membership stays: the node may join again later.
        """
        j, self._joined = self._joined, None
        if j is None:
            return
        j.votes.leave(wait=True)  # after one still being sent, and waited for
        j.votes.close()
        j.exchange.close()
        j.model_server.close()
        if self._identity is None:
            j.identity.close()

    def __enter__(self) -> SwarmNode:
        self.join()
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()


@dataclass(frozen=True)
class _Labelled:
    """A sharded merge whose spec also names the scalars merged with the weights."""

    inner: ShardedMerge
    scalars: list[str]

    @property
    def spec(self) -> str:
        return self.inner.spec + (f"+scalars({','.join(self.scalars)})" if self.scalars else "")

    @property
    def linear(self) -> bool:
        return self.inner.linear

    def __call__(
        self, shards: list[np.ndarray], weights: list[float], names: list[str], offset: int
    ) -> Any:
        return self.inner(shards, weights, names, offset)


def _join_swarm(c: NodeConfig, identity: IdentitySource) -> _Joined:
    """Make everything a joined node holds: keys, chain client, rules, exchange, model server."""
    account = load_or_create_account(c.key_file, c.key_passphrase)
    w3 = connect(c.rpc, expected_chain_id=c.chain_id)
    chain_id = (
        int(c.chain_id)  # connect() has just checked it
        if c.chain_id is not None
        else int(with_retries(lambda: w3.eth.chain_id, "eth_chainId", c.rpc))
    )
    ledger = LedgerClient(w3, c.contract, account, rpc=c.rpc)
    _check_member(ledger, account.address, identity.spiffe_id)
    rules = agree_rules(ledger, c.session, **{name: getattr(c, name) for name in RULES})
    curve = CurveKeyPair.load_or_create(Path(c.curve_dir or Path(c.key_file).parent))
    membership = Membership(ledger, identity, account, curve, chain_id, c.rpc)
    exchange = ShardedExchange(
        curve,
        bind=c.bind,
        advertise_host=c.advertise_host,
        timeout=c.timeout,
        name=identity.spiffe_id,
        credentials=membership.credentials,
        verify_peer=membership.verify_peer,
        is_member=membership.is_member_key,
    )
    try:
        host = exchange.endpoint[len("tcp://") :].rpartition(":")[0]
        # serve this node's recent merged models to members that join late
        server = ModelServer(curve, allow=membership.is_member_key, bind=f"tcp://{host}:0")
    except BaseException:
        exchange.close()
        raise
    # the registered endpoints, where peers dial: control, then model fetch (on the
    # advertised host: the bound one may be a wildcard, or private behind NAT)
    public = c.advertise_host or host
    ports = [ep.rpartition(":")[2] for ep in (exchange.endpoint, server.endpoint)]
    membership.register(" ".join(f"tcp://{public}:{port}" for port in ports))
    votes = Votes(ledger, c.session, membership.register_if_rotated)
    strategy = get_strategy(rules.merge)
    return _Joined(
        identity, account, w3, ledger, rules, strategy, curve, membership, exchange, server,
        votes,
    )  # fmt: skip


def _check_samples(n_samples: int) -> None:
    if n_samples <= 0:
        raise ConfigurationError(f"`n_samples` must be positive; got {n_samples}.")


def _check_member(ledger: LedgerClient, address: str, spiffe_id: str) -> None:
    me = ledger.member(address)
    if not me.active:
        raise NotAMember(
            f"This node's address {address} is not an active member of the swarm at "
            f"{ledger.address}. Ask an admin: swarmlib member add --address {address} "
            f"--spiffe-id {spiffe_id}",
            error="NotAMember",
            args=(address,),
        )
    if me.spiffe_id != spiffe_id:
        raise IdentityError(
            f"This node's SVID is {spiffe_id}, but the chain binds {address} to {me.spiffe_id}."
        )


def _nap(exchange: ShardedExchange) -> Callable[[float], None]:
    """A sleep for waiting on the chain that wakes up when a peer's message arrives.

    The first participant to see a round closed sends its keys and shards at
    once, so the others look at the chain again without waiting for their next
    poll. Messages are left for the exchange to read; once one is waiting, the
    rest of this wait sleeps normally (the socket stays readable).
    """
    woken = False

    def nap(seconds: float) -> None:
        nonlocal woken
        if woken:
            time.sleep(seconds)
        else:
            woken = exchange.wait_for_traffic(seconds)

    return nap
