"""A node's side of differential privacy: the checks before a private round, and its noise.

The mechanism and the accountant are :class:`swarmlib.privacy.GaussianDP`; this
module applies them to one node's round (see docs/privacy.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from swarmlib.errors import ConfigurationError, PrivacyBudgetSpent
from swarmlib.privacy import GaussianDP

__all__ = ["check_private", "private_vector"]

logger = logging.getLogger(__name__)


def check_private(
    privacy: GaussianDP,
    round_id: int,
    base: np.ndarray | None,
    scalars: Mapping[str, float] | None,
) -> None:
    """Raise before voting if private round ``round_id`` cannot run.

    ``base`` is the last merged model, which updates are clipped against.

    Raises:
        PrivacyBudgetSpent: the round would exceed the session's ``target_epsilon``.
        ConfigurationError: scalars would be merged without noise, or there is no base.
    """
    if scalars:
        raise ConfigurationError(
            "Scalars (adaptive sync's val_loss) would be merged without noise in a session "
            "with differential privacy; turn adaptive sync off, or privacy."
        )
    if not privacy.allows(round_id + 1):
        spent = privacy.epsilon(round_id)
        raise PrivacyBudgetSpent(
            f"Round {round_id} would spend epsilon {privacy.epsilon(round_id + 1):.3g} "
            f"(delta {privacy.delta:g}), more than the session's target_epsilon "
            f"{privacy.target_epsilon:g}; {spent:.3g} is spent. The swarm stops here with "
            "the model of the last merge.",
            epsilon=spent,
        )
    if base is None:
        raise ConfigurationError(
            "Differential privacy clips each update against the last merged model, and "
            "this node has none yet: begin with sync(..., kind='initial') (SwarmCallback "
            "does)."
        )


def private_vector(
    privacy: GaussianDP,
    vector: np.ndarray,
    base: np.ndarray,
    participants: int,
    secure: bool,
    rng: np.random.Generator,
    round_id: int,
) -> np.ndarray:
    """``vector`` with its update against ``base`` clipped and this node's share of the noise.

    Under secure aggregation (``secure``) the noise is split over the round's
    ``participants``; without it each node adds all of it.
    """
    std = privacy.noise_std(participants, distributed=secure)
    noisy = np.empty_like(vector)
    norm = privacy.privatize(vector, base, std, rng, out=noisy)
    logger.info("Round %d: update norm %.4g (clipped to %g), noise std %.3g per parameter",
                round_id, norm, privacy.clip_norm, std)  # fmt: skip
    return noisy
