"""SwarmCallback's own behaviour in one process: a fake node stands in for the swarm.

The fake node does what a two-node swarm with a silent second node would: it
averages this node's weights with zeros (so a merge is visible as a halving)
and can fail a chosen sync the way a real one fails. Whole swarms of Keras
processes are tested in test_callback.py.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from swarmlib import errors
from swarmlib.callback import SwarmCallback
from swarmlib.node import NodeConfig, SyncResult
from swarmlib.transport import RoundStats

BATCHES = 8  # per epoch: 64 samples, batch size 8


class FakeNode:
    """A SwarmNode stand-in: records each call; merges with a peer whose weights are zeros."""

    def __init__(self, fail: dict[int, Exception] | None = None, losses: list[float] = ()):
        self.config = NodeConfig(contract="0x0", session="s", key_file="k", timeout=60.0)
        self.joined = False
        self.joins = 0
        self.expected: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []
        self.fail = fail or {}  # call number (1-based) -> error it raises
        self.losses = list(losses)  # merged val_loss to hand back, one per sync with scalars
        self.finished = 0
        self.round = 0
        self.forfeit: set[int] = set()  # call numbers whose round is forfeited
        self.last: list[np.ndarray] | None = None

    def expect(self, **rules: Any) -> None:
        self.expected = rules

    def join(self) -> None:
        self.joined = True
        self.joins += 1

    def vote_ahead(self, n_samples: int) -> None:
        pass

    def sync(self, weights: list[np.ndarray], n_samples: int, **kw: Any) -> SyncResult:
        self.calls.append({"n": len(weights), "n_samples": n_samples, **kw})
        error = self.fail.get(len(self.calls))
        if error is not None:
            raise error
        scalars = kw.get("scalars") or {}
        merged_scalars = {k: self.losses.pop(0) if self.losses else v for k, v in scalars.items()}
        self.round += 1
        stats = RoundStats(self.round - 1, 0, ("me", "peer"))
        if len(self.calls) in self.forfeit:
            own = [np.asarray(w) for w in weights]
            return SyncResult(own, self.round - 1, stats, {}, {}, merged=False)
        merged = [np.asarray(w) * 0.5 for w in weights]
        self.last = [m.copy() for m in merged]
        return SyncResult(merged, self.round - 1, stats, {"vote_s": 0.0}, merged_scalars)

    def merged_weights(self) -> list[np.ndarray] | None:
        return self.last

    def privacy_spent(self) -> float | None:
        return None

    def finish(self, *, wait: bool = True) -> None:
        self.finished += 1

    def kinds(self) -> list[str]:
        return [c["kind"] for c in self.calls]


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * BATCHES, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def _fit(callback: SwarmCallback, model: keras.Model | None = None, epochs: int = 2) -> Any:
    x, y = _data()
    model = model or _model()
    return model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=[callback])


def test_a_second_fit_starts_afresh_and_joins_only_once() -> None:
    node = FakeNode()
    callback = SwarmCallback(sync_frequency=4, min_peers=2, merge="coordmedian", node=node,
                             verbose=0, batch_size=8)  # fmt: skip
    model = _model()
    _fit(callback, model)
    first = list(callback.history)
    _fit(callback, model)
    assert node.joins == 1
    assert node.expected == {
        "min_peers": 2,
        "merge": "coordmedian",
        "secure_aggregation": None,
        "privacy": None,
        "owner_replicas": None,
    }
    # each fit: an initial sync, then one every 4 batches (16 batches: 4), no final merge
    # since the last batch ended with a sync
    assert node.kinds() == ["initial", "sync", "sync", "sync", "sync"] * 2
    assert [r["kind"] for r in callback.history] == [r["kind"] for r in first]
    assert [r["round"] for r in callback.history] == [5, 6, 7, 8, 9]  # history is per fit
    assert all(c["n_samples"] == BATCHES * 8 for c in node.calls)
    assert node.finished == 2


def test_only_the_filtered_weights_are_synced_and_the_rest_keep_their_values() -> None:
    node = FakeNode()
    kernels = lambda v: "kernel" in v.path  # noqa: E731
    callback = SwarmCallback(sync_frequency=100, min_peers=2, node=node, verbose=0,
                             weight_filter=kernels, checkin_on_train_end="inactive")  # fmt: skip
    model = _model()
    before = model.get_weights()
    model.fit(*_data(), epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    assert node.calls[0]["n"] == 2  # two kernels out of four arrays
    # the initial sync halved the kernels; the one batch trained since moved everything a bit
    after = model.get_weights()
    assert np.abs(after[0] - before[0] * 0.5).max() < np.abs(before[0]).max() * 0.25
    assert np.abs(after[1] - before[1]).max() < 0.1  # a bias, not halved


def test_adaptive_sync_sends_the_val_loss_by_name_and_widens_the_interval() -> None:
    node = FakeNode(losses=[1.0, 0.5, 0.25, 0.12, 0.06, 0.03])  # the swarm's loss keeps falling
    x, y = _data()
    callback = SwarmCallback(sync_frequency=2, min_peers=2, node=node, verbose=0,
                             adaptive_sync=True, val_data=(x[:8], y[:8]))  # fmt: skip
    _fit(callback, epochs=3)
    syncs = [c for c in node.calls if c["kind"] == "sync"]
    assert node.calls[0]["scalars"] is None  # the initial sync carries no loss
    assert all(set(c["scalars"]) == {"val_loss"} for c in syncs)
    assert [r["val_loss"] for r in callback.history[1:3]] == [1.0, 0.5]
    # the interval doubled after each falling loss: 2, 4, 8, 16 batches (capped at 16)
    # instead of a sync every 2 batches (12 of them in 24 batches)
    assert len(syncs) < 6


@pytest.mark.parametrize(
    "error",
    [
        errors.QuorumTimeout("Round 1 did not close within 60s"),
        errors.ChainUnreachable("No answer from http://127.0.0.1:9"),
        errors.PeerTimeout("no merged message", culprits=["b"], round_id=1, attempt=4),
    ],
)
def test_on_failure_stop_ends_fit_cleanly_with_the_last_merge(error: Exception) -> None:
    node = FakeNode(fail={3: error})  # the second sync of the fit fails
    callback = SwarmCallback(sync_frequency=4, min_peers=2, node=node, verbose=0)
    model = _model()
    history = _fit(callback, model, epochs=3)
    assert callback.failures == [error]
    assert model.stop_training
    assert len(history.history["loss"]) == 1  # stopped in the first epoch of three
    assert node.kinds() == ["initial", "sync", "sync"]  # no final merge after the failure
    assert node.finished == 1
    assert node.last is not None  # the model is the last merge, not the training since
    for got, want in zip(model.get_weights(), node.last, strict=True):
        np.testing.assert_array_equal(got, want)


def test_on_failure_continue_trains_on_and_tries_again_at_the_next_sync() -> None:
    error = errors.QuorumTimeout("Round 1 did not close within 60s")
    node = FakeNode(fail={3: error})
    callback = SwarmCallback(sync_frequency=4, min_peers=2, node=node, verbose=0,
                             on_failure="continue")  # fmt: skip
    history = _fit(callback, epochs=2)
    assert callback.failures == [error]
    assert len(history.history["loss"]) == 2
    assert node.kinds() == ["initial", "sync", "sync", "sync", "sync"]
    assert [r["kind"] for r in callback.history] == ["initial", "sync", "sync", "sync"]


def test_on_failure_raise_lets_the_error_out_of_fit() -> None:
    node = FakeNode(fail={2: errors.QuorumTimeout("Round 0 did not close within 60s")})
    callback = SwarmCallback(sync_frequency=4, min_peers=2, node=node, verbose=0,
                             on_failure="raise")  # fmt: skip
    with pytest.raises(errors.QuorumTimeout, match="did not close"):
        _fit(callback)


def test_a_configuration_error_always_raises_and_a_bad_policy_is_refused() -> None:
    node = FakeNode(fail={2: errors.ConfigurationError("n_samples must be positive")})
    with pytest.raises(errors.ConfigurationError, match="n_samples"):
        _fit(SwarmCallback(sync_frequency=4, node=node, verbose=0, on_failure="continue"))
    with pytest.raises(errors.ConfigurationError, match="Received: on_failure='ignore'"):
        SwarmCallback(sync_frequency=4, on_failure="ignore")


def test_when_the_others_have_left_training_goes_on_alone_without_more_rounds() -> None:
    node = FakeNode(fail={2: errors.SwarmEnded("Only 1 member is left; min_peers is 2.")})
    callback = SwarmCallback(sync_frequency=4, node=node, verbose=0)
    history = _fit(callback, epochs=2)
    assert len(history.history["loss"]) == 2
    assert node.kinds() == ["initial", "sync"]
    assert callback.failures == []


def test_a_spent_privacy_budget_stops_fit_with_the_model_of_the_last_merge() -> None:
    spent = errors.PrivacyBudgetSpent("Round 3 would spend more.", epsilon=7.5)
    node = FakeNode(fail={3: spent})
    callback = SwarmCallback(sync_frequency=4, node=node, verbose=0, batch_size=8)
    model = _model()
    _fit(callback, model, epochs=3)
    assert node.kinds() == ["initial", "sync", "sync"]  # nothing after the budget stop
    assert model.stop_training and callback.failures == []
    assert node.last is not None
    for got, want in zip(model.get_weights(), node.last, strict=True):
        np.testing.assert_array_equal(got, want)  # the training since is not kept


def test_a_forfeited_round_keeps_the_nodes_own_weights_and_training_goes_on() -> None:
    node = FakeNode()
    node.forfeit = {2}
    callback = SwarmCallback(sync_frequency=4, node=node, verbose=0, batch_size=8)
    _fit(callback)
    assert [h["merged"] for h in callback.history][:3] == [True, False, True]
    assert len(node.calls) > 3 and callback.failures == []


def test_secure_aggregation_with_a_robust_merge_or_privacy_with_adaptive_sync_is_refused() -> None:
    from swarmlib.privacy import GaussianDP

    with pytest.raises(errors.ConfigurationError, match="mean only"):
        SwarmCallback(sync_frequency=4, merge="coordmedian", secure_aggregation=True)
    with pytest.raises(errors.ConfigurationError, match="adaptive_sync"):
        SwarmCallback(sync_frequency=4, adaptive_sync=True, val_data=([0], [0]),
                      privacy=GaussianDP(1.0, 1.0))  # fmt: skip
    with pytest.raises(errors.ConfigurationError, match="privacy"):
        SwarmCallback(sync_frequency=4, privacy={"clip_norm": 1})  # type: ignore[arg-type]
