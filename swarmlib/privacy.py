"""Differential privacy for a swarm: clip each node's update, add Gaussian noise, count epsilon.

:class:`GaussianDP` is DP-FedAvg's Gaussian mechanism (McMahan et al., "Learning
Differentially Private Recurrent Language Models", ICLR 2018) at the level of a
node (an institution): in every round each node clips its *update* (its weights
minus the model merged last round, L2 norm over the whole vector) to
``clip_norm`` and adds Gaussian noise, so that what the swarm merges changes by
a bounded, noise-covered amount whether or not one node's data took part.

- With secure aggregation on, nobody sees one node's noisy update, only the sum:
  each of the round's ``n`` nodes adds ``1/n`` of the noise variance
  (*distributed* DP), and the sum carries noise of standard deviation
  ``noise_multiplier * clip_norm``.
- Without it, every owner sees each node's update: each node adds the full noise
  (*local* DP), so its own release already has that guarantee.

Every node's update counts equally in a private merge (the sensitivity of the
mean is ``clip_norm / n`` only so); sample-count weights are not used.

Epsilon is counted by ``dp-accounting``'s RDP accountant: one Gaussian
mechanism of ``noise_multiplier`` per round, composed over the rounds. This
module is pure numpy and knows nothing of the network or the chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from swarmlib.errors import ConfigurationError

__all__ = ["GaussianDP", "epsilon_after", "noise_for"]


@lru_cache(maxsize=4096)
def epsilon_after(rounds: int, noise_multiplier: float, delta: float) -> float:
    """Epsilon spent by ``rounds`` Gaussian mechanisms of ``noise_multiplier`` at ``delta``.

    dp-accounting's RDP accountant; ``0.0`` for no rounds, ``inf`` without noise.
    """
    if rounds <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    import dp_accounting
    from dp_accounting import rdp

    accountant = rdp.RdpAccountant()
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    event = dp_accounting.SelfComposedDpEvent(gaussian, rounds)
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def noise_for(target_epsilon: float, rounds: int, delta: float = 1e-5) -> float:
    """The smallest noise multiplier that keeps ``rounds`` rounds within ``target_epsilon``.

    dp-accounting's ``calibrate_dp_mechanism`` over the same RDP accounting as
    :func:`epsilon_after`.

    Raises:
        ConfigurationError: a non-positive target or round count.
    """
    _positive("target_epsilon", target_epsilon)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigurationError(f"`rounds` must be a positive int; got {rounds!r}.")
    import dp_accounting
    from dp_accounting import rdp

    def event(sigma: float) -> Any:
        return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(sigma), rounds)

    return float(
        dp_accounting.calibrate_dp_mechanism(rdp.RdpAccountant, event, target_epsilon, delta)
    )


def _positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigurationError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            "Expected a positive finite number."
        )
    return float(value)


@dataclass(frozen=True)
class GaussianDP:
    """Node-level differential privacy: clipped updates plus Gaussian noise, on every round.

    Args:
        clip_norm: Largest L2 norm of a node's update in a round (weights minus
            the last merged model); larger updates are scaled down to it.
        noise_multiplier: Standard deviation of the noise in the merged sum, in
            units of ``clip_norm``. 1.0 is a common start; larger is more private.
        delta: The delta of the (epsilon, delta) guarantee; below 1 / (number of
            nodes). Defaults to 1e-5.
        target_epsilon: Stop the swarm before a round would spend more: every
            node stops at the same round (:class:`~swarmlib.errors.PrivacyBudgetSpent`).
            Defaults to no limit.
        adaptive_clipping: Not offered: it must be ``False``. Adaptive clipping
            spends budget on a private quantile estimate; choose ``clip_norm``
            from a non-private pilot run instead (see docs/privacy.md).

    Example:
        >>> dp = GaussianDP(clip_norm=1.0, noise_multiplier=1.1, target_epsilon=8)
        >>> round(dp.epsilon(10), 2) > 0
        True
    """

    clip_norm: float
    noise_multiplier: float
    delta: float = 1e-5
    target_epsilon: float | None = None
    adaptive_clipping: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_norm", _positive("clip_norm", self.clip_norm))
        object.__setattr__(
            self, "noise_multiplier", _positive("noise_multiplier", self.noise_multiplier)
        )
        delta = _positive("delta", self.delta)
        if not delta < 1:
            raise ConfigurationError(f"`delta` must be below 1; got {delta!r}.")
        object.__setattr__(self, "delta", delta)
        if self.target_epsilon is not None:
            object.__setattr__(
                self, "target_epsilon", _positive("target_epsilon", self.target_epsilon)
            )
        if self.adaptive_clipping:
            raise ConfigurationError(
                "adaptive_clipping=True is not offered: it needs a private quantile estimate "
                "that spends budget of its own. Pick clip_norm from the update norms of a "
                "non-private pilot run (docs/privacy.md, 'Choosing clip_norm')."
            )

    # ------------------------------------------------------------- accounting

    def epsilon(self, rounds: int) -> float:
        """Epsilon (at ``delta``) after ``rounds`` private rounds."""
        return epsilon_after(int(rounds), self.noise_multiplier, self.delta)

    def allows(self, rounds: int) -> bool:
        """Whether ``rounds`` private rounds stay within ``target_epsilon`` (always without one)."""
        return self.target_epsilon is None or self.epsilon(rounds) <= self.target_epsilon

    # ------------------------------------------------------------------ noise

    def noise_std(self, participants: int, distributed: bool) -> float:
        """Standard deviation of the noise one node adds to each parameter.

        ``noise_multiplier * clip_norm`` (local), or that over ``sqrt(participants)``
        when the nodes' noise is summed under secure aggregation (distributed).
        """
        std = self.noise_multiplier * self.clip_norm
        return std / math.sqrt(participants) if distributed else std

    def privatize(
        self,
        vector: np.ndarray,
        base: np.ndarray,
        std: float,
        rng: np.random.Generator,
        out: np.ndarray | None = None,
    ) -> float:
        """``base + clip(vector - base) + N(0, std**2)``, written to ``out`` (default: ``vector``).

        Returns:
            The L2 norm of the update before clipping.
        """
        update = np.subtract(vector, base, dtype=np.float64)
        norm = float(np.linalg.norm(update))
        if norm > self.clip_norm:
            update *= self.clip_norm / norm
        update += rng.normal(0.0, std, size=update.size)
        update += base
        target = vector if out is None else out
        target[:] = update
        return norm

    # ------------------------------------------------------------------ rules

    def to_rule(self) -> dict[str, float | None]:
        """The session rule recorded on chain (every node of a session uses the same)."""
        return {
            "clip_norm": self.clip_norm,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "target_epsilon": self.target_epsilon,
        }

    @classmethod
    def from_rule(cls, rule: dict[str, Any]) -> GaussianDP:
        """Read a rule written by :meth:`to_rule`.

        Raises:
            ConfigurationError: missing or bad fields.
        """
        if not isinstance(rule, dict) or set(rule) != {
            "clip_norm",
            "delta",
            "noise_multiplier",
            "target_epsilon",
        }:
            raise ConfigurationError(
                "A privacy rule must have clip_norm, delta, noise_multiplier and "
                f"target_epsilon; got {rule!r}."
            )
        return cls(**rule)

    def __str__(self) -> str:
        target = "" if self.target_epsilon is None else f", target_epsilon={self.target_epsilon:g}"
        return (
            f"GaussianDP(clip_norm={self.clip_norm:g}, noise_multiplier="
            f"{self.noise_multiplier:g}, delta={self.delta:g}{target})"
        )
