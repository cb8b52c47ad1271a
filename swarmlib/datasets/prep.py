"""Preprocessing as in the Swarm Learning paper: genes aligned by name, per-node scaling, splits.

Scaling is fitted on a node's own training data only and applied to whatever
that node evaluates, so no statistic of a test set leaks into training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swarmlib.datasets.simulate import Cohort
from swarmlib.errors import ConfigurationError

__all__ = ["Standardizer", "align_genes", "stratified_split"]


def align_genes(cohorts: Sequence[Cohort]) -> list[Cohort]:
    """The cohorts restricted to the genes they all have, in the first cohort's order.

    Raises:
        ConfigurationError: the cohorts share no gene.
    """
    common = set(cohorts[0].genes).intersection(*(c.genes for c in cohorts[1:]))
    if not common:
        raise ConfigurationError("The cohorts share no gene name; cannot align them.")
    order = [g for g in cohorts[0].genes if g in common]
    out = []
    for c in cohorts:
        at = {g: i for i, g in enumerate(c.genes)}
        cols = np.array([at[g] for g in order])
        out.append(Cohort(c.x[:, cols], c.y, c.study, c.platform, order, c.samples))
    return out


@dataclass
class Standardizer:
    """Per-gene z-scores with the mean and SD of the data it was fitted on."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray | None = None) -> Standardizer:
        """Fit on a node's own training matrix (constant genes get scale 1).

        With the training labels ``y``, the centre is the mean of the class means
        and the scale the pooled within-class SD, so that a node's case mix does
        not move its centre: a node with 1 % cases and one with 70 % would
        otherwise centre on different points and disagree on what is "high".
        """
        if y is None or len(np.unique(y)) < 2:
            sd = x.std(axis=0)
            return cls(x.mean(axis=0), np.where(sd > 0, sd, 1.0))
        groups = [x[y == label] for label in np.unique(y)]
        centre = np.mean([g.mean(axis=0) for g in groups], axis=0)
        within = np.concatenate([g - g.mean(axis=0) for g in groups])
        sd = within.std(axis=0)
        return cls(centre, np.where(sd > 0, sd, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray((x - self.mean) / self.scale, dtype=np.float32)


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/test split that keeps each class's share (the paper's 80/20)."""
    if not 0 < test_fraction < 1:
        raise ConfigurationError(f"`test_fraction` must be in (0, 1); got {test_fraction}.")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        k = round(len(idx) * test_fraction)
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
