"""A blood-transcriptome cohort simulator for the Swarm Learning paper's experiments.

The paper's cohorts (>12,000 GEO transcriptomes) cannot be shipped or
downloaded here, so the examples run on simulated cohorts with the properties
that make its results non-trivial. **It is a simulation, not the paper's data**;
see ``docs/experiments.md`` for what it does and does not model.

The model, per sample *i* of study *s* on platform *p*, gene *g* (log2 scale):

* **Baseline and modules.** Genes have a mean ``mu_g ~ N(7, 1.5)`` and sit in
  co-expression modules (default 40): ``x = mu_g + load_g * f_m(i) + e``, with a
  per-sample module activity ``f_m ~ N(0, 1)`` shared by all genes of the module
  (loadings about ±0.8 sd_g) and gene noise ``e ~ N(0, sd_g)``, so genes are
  correlated in blocks as in blood (interferon, neutrophil, ribosomal modules…).
* **Disease signature.** In cases, a minority of genes (``signature``, default
  4 %) shift by ``delta_g`` of about ``effect`` (default 1.0) of their noise SD,
  half up and half down, and two modules shift their activity by ``0.5 * effect``.
  Per gene this overlaps heavily with controls; together the genes separate the
  classes well, as in the leukemia data.
* **Batch effects.** Each study adds a gene-wise location shift (SD
  ``batch`` x sd_g) and scales the deviations from the mean by a
  study factor (log-normal); each platform adds its own gene-wise shift and sets a
  fraction of low values to a floor (dropouts, as in low-depth RNA-seq).
* **Imbalance.** Case and control counts are given per study.

Everything comes from one seed: the same arguments give the same cohort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swarmlib.errors import ConfigurationError

__all__ = ["Cohort", "StudySpec", "simulate_cohort"]


@dataclass(frozen=True)
class StudySpec:
    """One study of a simulated cohort: its case and control counts and its platform."""

    cases: int
    controls: int
    platform: int = 0


@dataclass
class Cohort:
    """A samples x genes matrix with labels and where each sample came from.

    Attributes:
        x: float32 ``(samples, genes)`` log-expression values.
        y: int ``(samples,)`` labels, 1 = case, 0 = control.
        study: int ``(samples,)`` study index of each sample.
        platform: int ``(samples,)`` platform index of each sample.
        genes: Gene names, in column order.
        samples: Sample ids, in row order.
    """

    x: np.ndarray
    y: np.ndarray
    study: np.ndarray
    platform: np.ndarray
    genes: list[str]
    samples: list[str]

    def subset(self, rows: np.ndarray) -> Cohort:
        """The samples at ``rows`` (indices or a boolean mask)."""
        names = [self.samples[i] for i in np.arange(len(self.y))[rows]]
        return Cohort(
            self.x[rows], self.y[rows], self.study[rows], self.platform[rows], self.genes, names
        )


def _check_studies(
    studies: Sequence[StudySpec], genes: int, modules: int, dropout: Sequence[float]
) -> None:
    if not studies:
        raise ConfigurationError("simulate_cohort needs at least one study.")
    if genes < 10 or modules < 1:
        raise ConfigurationError(f"Need at least 10 genes and 1 module (got {genes}, {modules}).")
    for i, s in enumerate(studies):
        if s.cases < 0 or s.controls < 0 or s.cases + s.controls == 0:
            raise ConfigurationError(f"Study {i} has {s.cases} cases and {s.controls} controls.")
        if not 0 <= s.platform < len(dropout):
            raise ConfigurationError(
                f"Study {i} is on platform {s.platform}, but `dropout` gives rates for "
                f"{len(dropout)} platform(s)."
            )


@dataclass(frozen=True)
class _GeneModel:
    """What all studies share: gene means and SDs, modules, the disease signature."""

    mu: np.ndarray
    sd: np.ndarray
    module: np.ndarray
    load: np.ndarray
    delta: np.ndarray
    disease_modules: np.ndarray
    platform_shift: np.ndarray
    n_modules: int


def _simulate_study(
    m: _GeneModel,
    spec: StudySpec,
    srng: np.random.Generator,
    effect: float,
    batch: float,
    rate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One study's samples (float32) and labels, from its own random stream."""
    genes = m.mu.size
    shift = srng.normal(0.0, batch, genes) * m.sd
    scale = srng.lognormal(0.0, 0.15)
    n = spec.cases + spec.controls
    y = np.r_[np.ones(spec.cases, np.int64), np.zeros(spec.controls, np.int64)]
    srng.shuffle(y)
    f = srng.normal(0.0, 1.0, (n, m.n_modules))
    f[:, m.disease_modules] += 0.5 * effect * y[:, None]
    x = m.load * f[:, m.module] + srng.normal(0.0, 1.0, (n, genes)) * m.sd + y[:, None] * m.delta
    x = m.mu + shift + m.platform_shift[spec.platform] + scale * x
    if rate > 0:
        floor = np.quantile(x, rate, axis=0)
        x = np.where(x < floor, floor.min(), x)
    return x.astype(np.float32), y


def simulate_cohort(
    studies: Sequence[StudySpec],
    *,
    genes: int = 2000,
    modules: int = 40,
    signature: float = 0.04,
    effect: float = 1.0,
    batch: float = 0.3,
    dropout: Sequence[float] = (0.0, 0.1),
    seed: int = 0,
) -> Cohort:
    """Simulate a cohort of ``studies`` (see the module docstring for the model).

    Args:
        studies: Case/control counts and platform of each study.
        genes: Number of genes. Defaults to 2000.
        modules: Number of co-expression modules. Defaults to 40.
        signature: Fraction of genes that differ between cases and controls.
        effect: Typical shift of a signature gene, in units of its noise SD.
        batch: SD of the per-study and per-platform gene shifts, in noise SDs.
        dropout: Fraction of values set to the floor, per platform index.
        seed: Seed of everything. Defaults to 0.

    Returns:
        The cohort, studies in order (their samples shuffled within each study).

    Raises:
        ConfigurationError: no studies, a negative count, a platform without a
            dropout rate, or fewer than 10 genes.
    """
    _check_studies(studies, genes, modules, dropout)
    rng = np.random.default_rng(seed)
    mu = rng.normal(7.0, 1.5, genes)
    sd = rng.lognormal(-0.5, 0.3, genes)
    module = rng.integers(0, modules, genes)
    load = rng.choice([-1.0, 1.0], genes) * rng.normal(0.8, 0.2, genes) * sd
    n_sig = max(2, round(signature * genes))
    sig_genes = rng.choice(genes, n_sig, replace=False)
    delta = np.zeros(genes)
    delta[sig_genes] = rng.normal(effect, effect / 3, n_sig) * sd[sig_genes]
    delta[sig_genes[: n_sig // 2]] *= -1
    disease_modules = rng.choice(modules, min(2, modules), replace=False)
    platform_shift = rng.normal(0.0, batch, (len(dropout), genes)) * sd
    model = _GeneModel(mu, sd, module, load, delta, disease_modules, platform_shift, modules)
    xs, ys, study_ids, platforms = [], [], [], []
    for s_index, spec in enumerate(studies):
        x, y = _simulate_study(model, spec, np.random.default_rng([seed, s_index + 1]), effect,
                               batch, dropout[spec.platform])  # fmt: skip
        xs.append(x)
        ys.append(y)
        study_ids.append(np.full(len(y), s_index))
        platforms.append(np.full(len(y), spec.platform))
    y_all = np.concatenate(ys)
    return Cohort(
        x=np.concatenate(xs),
        y=y_all,
        study=np.concatenate(study_ids),
        platform=np.concatenate(platforms),
        genes=[f"G{g:05d}" for g in range(genes)],
        samples=[f"S{i:06d}" for i in range(len(y_all))],
    )
