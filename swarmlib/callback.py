"""SwarmCallback: Swarm Learning as one Keras callback.

    model.fit(x, y, epochs=100, callbacks=[SwarmCallback(sync_frequency=128, min_peers=3)])

The callback touches only ``model.get_weights()`` / ``set_weights()``, so it works
on every Keras 3 backend. It also accepts HPE Swarm Learning's argument names
(``syncFrequency``, ``minPeers``, ``mergeMethod``, …), so an HPE script runs
after changing only its import line.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

import keras
import numpy as np

from swarmlib.errors import (
    ChainUnreachable,
    ConfigurationError,
    PrivacyBudgetSpent,
    QuorumTimeout,
    SwarmEnded,
    TransactionFailed,
    TransportError,
)
from swarmlib.merge import STRATEGIES, get_strategy
from swarmlib.node import SwarmNode, SyncKind, SyncResult
from swarmlib.privacy import GaussianDP
from swarmlib.transport.replicas import check_replicas

__all__ = ["FAILURES", "HPE_ARGUMENTS", "ON_FAILURE", "SwarmCallback", "vote_lead"]

#: HPE Swarm Learning's argument names and their swarmlib equivalents.
HPE_ARGUMENTS = {
    "syncFrequency": "sync_frequency",
    "minPeers": "min_peers",
    "useAdaptiveSync": "adaptive_sync",
    "adsValData": "val_data",
    "adsValBatchSize": "val_batch_size",
    "mergeMethod": "merge",
    "nodeWeightage": "node_weight",
    "checkinModelOnTrainEnd": "checkin_on_train_end",
    "totalEpochs": "total_epochs",
    "trainingContract": "training_contract",
}
_CHECKIN = ("inactive", "snapshot", "active")
#: The callback's rounds: the initial one of a fit, one every ``sync_frequency`` batches, the
#: final one in ``on_train_end`` (the last two merge alike; history tells them apart).
RoundKind = Literal["initial", "sync", "final"]
#: What the callback may do when a sync fails (see ``on_failure``).
ON_FAILURE = ("stop", "continue", "raise")
#: The failures ``on_failure`` decides about: the swarm could not merge this time. A
#: wrong setting (:class:`~swarmlib.errors.ConfigurationError`) always raises.
FAILURES = (QuorumTimeout, ChainUnreachable, TransactionFailed, TransportError)
_UNSET: Any = object()
#: Votes are cast ahead of a sync only over batches that take less than this share of
#: the exchange's timeout together: the other participants may wait that long for
#: this node's weights (see :func:`vote_lead`).
VOTE_AHEAD_MAX_SHARE = 0.1


def vote_lead(batch_s: float | None, vote_s: float, timeout_s: float) -> int:
    """How many batches before a sync the callback casts its vote (0: at the sync).

    As many batches as a vote takes to cast (``vote_s``: the callback passes the
    longest of its last three; 0 before the first), at least one, so that the round
    is agreed by the time the weights are ready (on a chain with a block period a
    vote waits for the next block, anywhere from nothing to a whole period);
    but only as many as take less than ``VOTE_AHEAD_MAX_SHARE`` of the exchange's
    ``timeout_s`` (the other participants wait for this node's weights that long).
    ``batch_s`` is how long a batch takes; ``None`` until one is timed (the
    callback skips the first of a fit, which also traces the model): no lead.
    """
    if batch_s is None:
        return 0
    batch_s = max(batch_s, 1e-6)
    lead = max(1, math.ceil(vote_s / batch_s))
    return min(lead, int(VOTE_AHEAD_MAX_SHARE * timeout_s / batch_s))


_DEFAULTS = {
    "min_peers": None,
    "merge": None,
    "node_weight": "samples",
    "adaptive_sync": False,
    "val_data": None,
    "val_batch_size": None,
    "checkin_on_train_end": "snapshot",
    "total_epochs": None,
    "training_contract": None,
}


def _with_hpe_spellings(given: dict[str, Any], hpe: dict[str, Any]) -> dict[str, Any]:
    """The arguments with HPE's spellings folded in and defaults filled (``_UNSET`` if none).

    Raises:
        ConfigurationError: an unknown argument, or one given in both spellings.
    """
    unknown = sorted(k for k in hpe if k not in HPE_ARGUMENTS)
    if unknown:
        raise ConfigurationError(
            f"Unknown argument(s) {', '.join(unknown)} to SwarmCallback. Known: "
            f"{', '.join(given)} (or HPE's {', '.join(HPE_ARGUMENTS)})."
        )
    given = dict(given)
    for camel, value in hpe.items():
        snake = HPE_ARGUMENTS[camel]
        if given[snake] is not _UNSET:
            raise ConfigurationError(
                f"SwarmCallback got both `{snake}` and HPE's `{camel}`; use one spelling."
            )
        given[snake] = value
    return {k: (_DEFAULTS.get(k, _UNSET) if val is _UNSET else val) for k, val in given.items()}


def _positive_int(name: str, value: object, alternatives: str = "") -> int:
    if value is _UNSET:
        raise ConfigurationError(f"SwarmCallback needs `{name}` (a positive int).")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(name, value, f"{alternatives}a positive int")
    return value


def _check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices if c is not None)
        raise _invalid(name, value, f"one of {shown}")


def _invalid(name: str, value: object, expected: str) -> ConfigurationError:
    return ConfigurationError(
        f"Invalid value for argument `{name}`. Received: {name}={value!r}. Expected {expected}."
    )


def _votes_now(batch: int, steps: int | None, to_sync: int, lead: int) -> bool:
    """Whether to vote at the start of ``batch`` (of ``steps`` in the epoch, None if unknown).

    ``to_sync`` batches remain until the sync, this one included. A vote goes out
    ``lead`` batches ahead, but never across the end of an epoch (validation and
    other callbacks run there, for as long as they take), unless the sync ends this
    very batch.
    """
    in_epoch = to_sync == 1 or (steps is not None and batch + to_sync <= steps)
    return 0 < to_sync <= lead and in_epoch


class SwarmCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Merge the model with the swarm every ``sync_frequency`` batches.

    Lifecycle: ``on_train_begin`` joins the swarm (once; the session's rules on
    chain are checked against ``min_peers`` and ``merge`` there) and makes every node start
    from the same weights (those of the first node to vote); every
    ``sync_frequency`` batches the weights are merged; ``on_train_end`` does a
    final merge unless ``checkin_on_train_end="inactive"`` — or unless the last
    batch ended with a merge already (one sync per epoch, say): a second round
    with nothing trained between them would only merge the merge. All weights are
    synced — trainable and non-trainable (BatchNorm statistics) — unless
    ``weight_filter`` says otherwise. State is reset in ``on_train_begin``, so
    one instance serves several ``fit`` calls. The model only ever receives
    a complete merge: after a failure it keeps its last good weights.

    A sync that fails (the quorum is not reached in time, the chain is
    unreachable, peers time out on every attempt) is handled by ``on_failure``:
    ``"stop"`` ends ``fit`` cleanly (``model.stop_training``) with the model of
    the last merge, ``"continue"`` trains on with this node's data and tries
    again at the next sync, ``"raise"`` lets the error out of ``fit``. Either way
    the error is logged and kept in ``callback.failures``.

    Adaptive sync (``adaptive_sync=True``): after each merge the nodes' losses on
    their ``val_data`` are merged too (the same value on every node, so every
    node decides alike). If that loss fell by more than 1 % since the last
    merge, the interval doubles (at most 8 x ``sync_frequency``); if it rose by
    more than 1 %, it halves (at least ``sync_frequency // 4``, and 1).

    Args:
        sync_frequency: Batches between merges. Required (HPE: ``syncFrequency``).
        min_peers: Fewest nodes a merge may have: a rule of the session, checked
            against the chain at join (the first node to join fixes it).
            Defaults to the session's, or ``SWARMLIB_MIN_PEERS`` (HPE: ``minPeers``).
        merge: Merge strategy name, e.g. ``"mean"``, ``"coordmedian"``,
            ``"geomedian"``; a rule of the session like ``min_peers``.
            Defaults to the session's, or ``SWARMLIB_MERGE``, or ``"mean"``
            (HPE: ``mergeMethod``).
        node_weight: ``"samples"`` weights each node by its number of training
            batches per epoch times ``batch_size`` (its training-set size); an
            int sets the weight by hand. Defaults to ``"samples"`` (HPE:
            ``nodeWeightage``).
        adaptive_sync: Adapt the interval to the validation loss. Defaults to
            ``False`` (HPE: ``useAdaptiveSync``).
        val_data: ``(x, y)`` for adaptive sync (HPE: ``adsValData``).
        val_batch_size: Batch size for ``val_data``. Defaults to 32
            (HPE: ``adsValBatchSize``).
        checkin_on_train_end: ``"inactive"`` (no final merge), ``"snapshot"``
            (contribute the final model and load the merge) or ``"active"``
            (same as snapshot today). Defaults to ``"snapshot"``
            (HPE: ``checkinModelOnTrainEnd``).
        total_epochs: Accepted for HPE compatibility; unused (HPE: ``totalEpochs``).
        node: The :class:`SwarmNode` to use. Defaults to one configured from the
            ``SWARMLIB_*`` environment (set by ``swarmlib run``).
        logger: A ``logging.Logger`` for progress. Defaults to this module's.
        training_contract: Session name; overrides ``SWARMLIB_SESSION``
            (HPE: ``trainingContract``).
        weight_filter: ``f(variable) -> bool`` choosing which of
            ``model.weights`` to sync. Defaults to all.
        batch_size: The ``fit`` batch size, for ``node_weight="samples"``.
            Defaults to 32, Keras' default.
        verbose: 1 prints a line per merge. Defaults to 1.
        vote_ahead: Cast each sync's vote a few batches early, so that the round
            is agreed while they train (see :func:`vote_lead`). Defaults to ``True``.
        on_failure: ``"stop"``, ``"continue"`` or ``"raise"`` (see above).
            Defaults to ``"stop"``.
        secure_aggregation: Merge so that no peer sees this node's values, only
            sums (a rule of the session; needs the mean and ``min_peers >= 3``).
            Defaults to the session's, or ``SWARMLIB_SECURE_AGGREGATION``.
        privacy: A :class:`~swarmlib.privacy.GaussianDP`: clip each update, add
            noise, count epsilon (``callback.epsilon``; logged every round). With
            ``target_epsilon`` the swarm stops, every node at the same round,
            before the budget is exceeded. A rule of the session. Defaults to
            the session's (see docs/privacy.md).
        owner_replicas: How many nodes merge each shard of the model: 3 outvotes
            one node that sends a wrong merge, and the swarm goes on without it
            (a rule of the session; needs ``min_peers >= owner_replicas``, and
            costs ``owner_replicas`` times the traffic). Defaults to the
            session's, or ``SWARMLIB_OWNER_REPLICAS`` (see docs/security.md).
        keep_contributions: A folder where this node keeps every contribution it
            sends, to disclose to an auditor, who checks it against the round
            receipts on chain and re-computes the merge (``swarmlib audit
            --verify DIR``). Defaults to ``SWARMLIB_KEEP_CONTRIBUTIONS``, or none.

    Raises:
        ConfigurationError: in ``__init__``, for a bad, unknown or doubly spelled
            argument (the message names it).
    """

    def __init__(
        self,
        sync_frequency: int = _UNSET,
        min_peers: int = _UNSET,
        *,
        merge: str = _UNSET,
        node_weight: str | int = _UNSET,
        adaptive_sync: bool = _UNSET,
        val_data: Any = _UNSET,
        val_batch_size: int | None = _UNSET,
        checkin_on_train_end: str = _UNSET,
        total_epochs: int | None = _UNSET,
        node: SwarmNode | None = None,
        logger: logging.Logger | None = None,
        training_contract: str | None = _UNSET,
        weight_filter: Callable[[Any], bool] | None = None,
        batch_size: int = 32,
        verbose: int = 1,
        vote_ahead: bool = True,
        on_failure: str = "stop",
        secure_aggregation: bool | None = None,
        privacy: GaussianDP | None = None,
        owner_replicas: int | None = None,
        keep_contributions: str | os.PathLike[str] | None = None,
        **hpe: Any,
    ):
        super().__init__()
        given: dict[str, Any] = {
            "sync_frequency": sync_frequency,
            "min_peers": min_peers,
            "merge": merge,
            "node_weight": node_weight,
            "adaptive_sync": adaptive_sync,
            "val_data": val_data,
            "val_batch_size": val_batch_size,
            "checkin_on_train_end": checkin_on_train_end,
            "total_epochs": total_epochs,
            "training_contract": training_contract,
        }
        v = _with_hpe_spellings(given, hpe)
        self.sync_frequency: int = _positive_int("sync_frequency", v["sync_frequency"])
        self.min_peers: int | None = (
            None if v["min_peers"] is None else _positive_int("min_peers", v["min_peers"])
        )
        self.merge: str | None = None if v["merge"] is None else str(v["merge"]).lower()
        _check_choice("merge", self.merge, [None, *sorted(STRATEGIES)])
        _check_choice("on_failure", on_failure, ON_FAILURE)
        self.on_failure = on_failure
        self.node_weight: str | int = v["node_weight"]
        if self.node_weight != "samples":
            self.node_weight = _positive_int("node_weight", self.node_weight, "'samples' or ")
        self.adaptive_sync = bool(v["adaptive_sync"])
        self.val_data = v["val_data"]
        if self.adaptive_sync and self.val_data is None:
            raise _invalid("val_data", None, "(x, y) validation data when adaptive_sync=True")
        self.val_batch_size = v["val_batch_size"] or 32
        self.checkin = v["checkin_on_train_end"]
        _check_choice("checkin_on_train_end", self.checkin, _CHECKIN)
        self.total_epochs = v["total_epochs"]
        self.training_contract = v["training_contract"]
        self.node = node
        self.log = logger or logging.getLogger(__name__)
        self.weight_filter = weight_filter
        self.vote_ahead = bool(vote_ahead)
        self.batch_size = batch_size
        self.verbose = verbose
        self.secure_aggregation = secure_aggregation
        self.privacy = privacy
        self.owner_replicas = owner_replicas
        self.keep_contributions = keep_contributions
        self._check_private()

    def _check_private(self) -> None:
        if self.privacy is not None and not isinstance(self.privacy, GaussianDP):
            raise _invalid("privacy", self.privacy, "a swarmlib.privacy.GaussianDP or None")
        if self.secure_aggregation and self.merge and not get_strategy(self.merge).linear:
            raise ConfigurationError(
                f"secure_aggregation=True merges by the mean only: owners see sums, never one "
                f"node's values, and merge={self.merge!r} needs each node's values. Use "
                "merge='mean', or turn secure aggregation off."
            )
        if self.owner_replicas is not None:
            check_replicas(self.owner_replicas, self.min_peers or self.owner_replicas,
                           bool(self.secure_aggregation))  # fmt: skip
        if self.privacy is not None and self.adaptive_sync:
            raise ConfigurationError(
                "adaptive_sync=True merges the nodes' validation losses without noise, which "
                "differential privacy does not cover; turn adaptive sync off with privacy=."
            )

    @property
    def epsilon(self) -> float | None:
        """The privacy budget spent so far (``None`` without differential privacy)."""
        return None if self.node is None else self.node.privacy_spent()

    # -------------------------------------------------------------- lifecycle

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._since_sync = 0
        self._interval = self.sync_frequency
        self._last_loss: float | None = None
        self.history: list[dict[str, Any]] = []
        self.failures: list[Exception] = []
        self._alone = False  # set when the other nodes have left (SwarmEnded)
        self._stopped = False  # set when a failure stopped this fit (on_failure="stop")
        self._batch_s: float | None = None  # how long a batch takes (moving average)
        self._traced = False  # whether the first batch has run
        self._batch_started = 0.0
        self._votes_s: deque[float] = deque(maxlen=3)  # how long the last votes cast ahead took
        self._epoch: int | None = None
        if self.node is None:
            overrides = {"session": self.training_contract} if self.training_contract else {}
            self.node = SwarmNode.from_env(**overrides)
        if self.keep_contributions is not None:
            self.node.config.keep_contributions = os.fspath(self.keep_contributions)
        self.node.expect(
            min_peers=self.min_peers,
            merge=self.merge,
            secure_aggregation=self.secure_aggregation,
            privacy=self.privacy,
            owner_replicas=self.owner_replicas,
        )
        if not self.node.joined:
            self.node.join()
        self._sync("initial")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batch_started = time.perf_counter()
        assert self.node is not None
        if not self.vote_ahead or self._alone or self._stopped:
            return
        lead = vote_lead(self._batch_s, max(self._votes_s, default=0.0), self.node.config.timeout)
        # batches until the next round, this one included: a sync, or the final merge
        to_sync = self._interval - self._since_sync
        left = self._batches_to_final(batch)
        if left is not None:
            to_sync = min(to_sync, left)
        if _votes_now(batch, (self.params or {}).get("steps"), to_sync, lead):
            # the round can be agreed while these batches train (the vote needs no weights)
            self.node.vote_ahead(self._n_samples())

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        took = time.perf_counter() - self._batch_started
        if self._traced:  # the first batch of a fit also traces the model: not a measure
            self._batch_s = took if self._batch_s is None else 0.7 * self._batch_s + 0.3 * took
        self._traced = True
        self._since_sync += 1
        if self._since_sync >= self._interval:
            self._sync("sync")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # no final merge right after a sync: the model holds the swarm's merge already
        if self.checkin != "inactive" and self._since_sync > 0:
            self._sync("final")
        assert self.node is not None
        # rounds of nodes still training stop waiting for this one; fit() returns without
        # waiting for the chain (the next sync, leave() and the interpreter's exit wait for it)
        self.node.finish(wait=False)

    # ------------------------------------------------------------------- sync

    def _batches_to_final(self, batch: int) -> int | None:
        """Batches until the end of the ``fit`` and its final merge, ``batch`` included.

        None without a final merge (``checkin_on_train_end="inactive"``) or when
        Keras does not know how many batches the ``fit`` has.
        """
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        if self.checkin == "inactive" or steps is None or epochs is None or self._epoch is None:
            return None
        return int((epochs - 1 - self._epoch) * steps + steps - batch)

    def _indices(self) -> list[int]:
        variables = self.model.weights
        if self.weight_filter is None:
            return list(range(len(variables)))
        return [i for i, var in enumerate(variables) if self.weight_filter(var)]

    def _n_samples(self) -> int:
        if self.node_weight != "samples":
            return int(self.node_weight)
        steps = (self.params or {}).get("steps") or 1
        return int(steps) * self.batch_size

    def _sync(self, kind: RoundKind) -> None:
        """One round (``kind`` is "initial", "sync" or "final"), failures handled by policy."""
        if self._alone or self._stopped:
            return
        try:
            self._merge(kind)
        except SwarmEnded as e:
            self._alone = True
            self._since_sync = 0
            self._say(f"{e} Training goes on with this node's data only until fit() returns.")
        except PrivacyBudgetSpent as e:
            self._stopped = True
            self.model.stop_training = True
            self._load_last_merge()
            self._say(str(e))
        except FAILURES as e:
            self._failed(e)

    def _failed(self, e: Exception) -> None:
        self.failures.append(e)
        if self.on_failure == "raise":
            raise e
        self._since_sync = 0
        if self.on_failure == "stop":
            self._stopped = True
            self.model.stop_training = True
            self._load_last_merge()  # not this node's training since (it may have diverged)
            self._say(
                f"{type(e).__name__}: {e} Training stops here (on_failure='stop'); the model "
                "keeps the swarm's last merge."
            )
        else:
            self._say(
                f"{type(e).__name__}: {e} Training goes on with this node's data; the next "
                "sync tries again (on_failure='continue')."
            )

    def _load_last_merge(self) -> None:
        """Put the swarm's last merged model back (the training since is not released)."""
        assert self.node is not None
        merged = self.node.merged_weights()
        if merged is None:
            return
        weights = self.model.get_weights()
        for i, value in zip(self._indices(), merged, strict=True):
            weights[i] = value
        self.model.set_weights(weights)

    def _say(self, message: str) -> None:
        self.log.warning(message)
        if self.verbose:
            print(f"swarm: {message}", flush=True)

    def _merge(self, kind: RoundKind) -> None:
        assert self.node is not None
        started, started_at = time.perf_counter(), time.time()
        weights = self.model.get_weights()
        chosen = self._indices()
        scalars = None
        if self.adaptive_sync and kind != "initial":
            x, y = self.val_data
            result = self.model.evaluate(x, y, batch_size=self.val_batch_size, verbose=0)
            scalars = {"val_loss": float(np.asarray(result).ravel()[0])}
        sync_kind: SyncKind = "initial" if kind == "initial" else "sync"
        merged = self.node.sync(
            [weights[i] for i in chosen],
            self._n_samples(),
            kind=sync_kind,
            scalars=scalars,
            copy=False,  # read-only views: set_weights copies them into the model
        )
        if "val_loss" in merged.scalars:
            self._adapt(merged.scalars["val_loss"])
        if merged.merged:
            for i, value in zip(chosen, merged.weights, strict=True):
                weights[i] = value
            self.model.set_weights(weights)
        else:
            self._say(f"Round {merged.round} was forfeited (see the log); the model keeps "
                      "this node's weights and the next sync merges again.")  # fmt: skip
        self._since_sync = 0
        if "vote_ahead_s" in merged.timing:
            self._votes_s.append(merged.timing["vote_ahead_s"])
        self._record(merged, kind, time.perf_counter() - started, started_at)

    def _record(
        self, merged: SyncResult, kind: RoundKind, seconds: float, started_at: float
    ) -> None:
        stats = merged.stats
        record = {
            "round": merged.round,
            "participants": len(stats.participants),
            "seconds": seconds,
            "merge_s": stats.merge_s,
            "mb_sent": stats.bytes_sent / 1e6,
            "val_loss": self._last_loss,
            "kind": kind,
            "started_at": started_at,
            "voted_ahead": "vote_ahead_s" in merged.timing,
            "merged": merged.merged,
            "epsilon": merged.epsilon,
            **merged.timing,
        }
        self.history.append(record)
        if self.verbose:
            loss_text = (
                f", merged val_loss {self._last_loss:.4f}" if self._last_loss is not None else ""
            )
            if merged.epsilon is not None:
                loss_text += f", epsilon {merged.epsilon:.3g}"
            print(
                f"swarm round {record['round']} ({kind}): {record['participants']} "
                f"participants, {seconds:.2f}s (vote {record.get('vote_s', 0):.2f}, "
                f"agree {record.get('wait_s', 0):.2f}, "
                f"exchange {record.get('exchange_s', 0):.2f}), {record['mb_sent']:.1f} MB sent"
                f"{loss_text}",
                flush=True,
            )

    def _adapt(self, loss: float) -> None:
        previous, self._last_loss = self._last_loss, loss
        if previous is None:
            return
        if loss < previous * 0.99:
            self._interval = min(self._interval * 2, 8 * self.sync_frequency)
        elif loss > previous * 1.01:
            self._interval = max(self._interval // 2, self.sync_frequency // 4, 1)
