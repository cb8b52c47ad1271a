"""Local vs central vs swarm, as in the Swarm Learning paper's experiments.

One *permutation* splits every node's cohort 80/20, trains each node's model
alone on its own 80 %, a central model on the union of those, and the swarm
(real :class:`~swarmlib.SwarmCallback` nodes, one process each, through
:func:`~swarmlib.launcher.run_nodes`), then scores all of them on the same test
set: the union of the nodes' 20 % (each sample scaled by its own node's scaler,
as that node would see it), or a separate test cohort. The examples
``examples/leukemia.py`` and ``examples/tuberculosis.py`` run the paper's node
designs on top of this module; it works the same on a user's own cohorts.

Training rules: the paper's network (or an L1 logistic regression), Adam,
binary cross-entropy, the same epochs everywhere; batch sizes grow with node
size (the largest node uses 32) so that every node takes about the same number
of steps per epoch (the paper chose batch sizes by dataset size); every node
syncs at the end of each of its epochs, which keeps the swarm's rounds in step.
"""

from __future__ import annotations

import argparse
import csv
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarmlib.datasets import (
    Cohort,
    Standardizer,
    load_geo_series_matrix,
    load_matrix,
    stratified_split,
)
from swarmlib.errors import ConfigurationError

__all__ = [
    "METRICS",
    "PAPER_NETWORK",
    "Permutation",
    "QuickSettings",
    "add_data_arguments",
    "build_model",
    "draw_nodes",
    "experiment_parser",
    "load_cohort",
    "metrics",
    "plot_groups",
    "prepare",
    "run_experiment",
    "run_permutation",
    "write_report",
]

logger = logging.getLogger(__name__)

#: Hidden layer widths of the paper's network (ReLU; dropout 0.4 after the first, then 0.3).
PAPER_NETWORK = (256, 1024, 512, 512, 256, 256, 128, 128, 64)
METRICS = ("auc", "accuracy", "sensitivity", "specificity", "f1")
#: L2 weight of the hidden layers. The paper states 0.005; with it this network collapses to
#: a constant output on cohorts of a few hundred samples per node (all ReLUs die before the
#: signal is learnt), so the examples use 1e-4. See docs/experiments.md.
L2 = 1e-4
#: Up to this many nodes get a box each in metrics.png; more share one box of local models.
_NODES_PLOTTED_APART = 8


def build_model(genes: int, kind: str = "paper", seed: int = 0) -> Any:
    """The paper's network (``"paper"``) or an L1 logistic regression (``"lasso"``), compiled."""
    import keras

    keras.utils.set_random_seed(seed)
    l2 = keras.regularizers.L2(L2)
    layers: list[Any] = [keras.Input((genes,))]
    if kind == "paper":
        for i, width in enumerate(PAPER_NETWORK):
            layers.append(keras.layers.Dense(width, activation="relu", kernel_regularizer=l2))
            layers.append(keras.layers.Dropout(0.4 if i == 0 else 0.3))
        layers.append(keras.layers.Dense(1, activation="sigmoid"))
    elif kind == "lasso":
        l1 = keras.regularizers.L1(1e-3)
        layers.append(keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=l1))
    else:
        raise ValueError(f"Unknown model {kind!r}: 'paper' or 'lasso'.")
    model = keras.Sequential(layers)
    # a linear model takes larger steps: at 1e-3 it had not converged within the examples' epochs
    rate = 1e-3 if kind == "paper" else 1e-2
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="binary_crossentropy")
    return model


def metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC (Mann-Whitney, ties counted half), accuracy, sensitivity, specificity, F1, n.

    A model that predicts NaN (it diverged) scores NaN on every metric.
    """
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64).ravel()
    if not np.isfinite(p).all():
        return {**dict.fromkeys(METRICS, math.nan), "n": float(len(y))}
    pred = p >= threshold
    tp, tn = int((pred & y).sum()), int((~pred & ~y).sum())
    fp, fn = int((pred & ~y).sum()), int((~pred & y).sum())
    pos, neg = p[y], p[~y]
    if len(pos) and len(neg):
        order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
        ranks = np.empty(len(order))
        ranks[order] = np.arange(1, len(order) + 1)
        values = np.concatenate([pos, neg])
        for v in np.unique(values):  # average ranks of ties
            tied = values == v
            if tied.sum() > 1:
                ranks[tied] = ranks[tied].mean()
        auc = (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    else:
        auc = math.nan
    sens = tp / (tp + fn) if tp + fn else math.nan
    spec = tn / (tn + fp) if tn + fp else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return {"auc": float(auc), "accuracy": (tp + tn) / len(y), "sensitivity": sens,
            "specificity": spec, "f1": f1, "n": float(len(y))}  # fmt: skip


@dataclass
class Permutation:
    """One permutation's data, scaled as each party would scale it."""

    node_train: list[tuple[np.ndarray, np.ndarray]]
    test_by_node: list[np.ndarray]  # the common test set, scaled by each node's scaler
    central_train: tuple[np.ndarray, np.ndarray]
    central_test: np.ndarray
    y_test: np.ndarray


def prepare(
    nodes: Sequence[Cohort], seed: int, test: Cohort | None = None, test_fraction: float = 0.2
) -> Permutation:
    """Split every node 80/20 (stratified), fit scalers on training data only, build the test set.

    Args:
        nodes: Each node's cohort (genes aligned).
        seed: The permutation's seed.
        test: A separate test cohort; defaults to the union of the nodes' 20 % parts.
    """
    trains, tests_x, tests_y = [], [], []
    for i, c in enumerate(nodes):
        if test is None:
            tr, te = stratified_split(c.y, test_fraction, seed=seed * 1000 + i)
            tests_x.append(c.x[te])
            tests_y.append(c.y[te])
        else:
            tr = np.arange(len(c.y))
        trains.append((c.x[tr], c.y[tr]))
    x_test = test.x if test is not None else np.concatenate(tests_x)
    y_test = test.y if test is not None else np.concatenate(tests_y)
    scalers = [Standardizer.fit(x, y) for x, y in trains]
    central_x = np.concatenate([x for x, _ in trains])
    central_y = np.concatenate([y for _, y in trains])
    central = Standardizer.fit(central_x, central_y)
    if test is None:  # each test sample as its own node scales it
        origin = np.concatenate([np.full(len(y), i) for i, y in enumerate(tests_y)])
        own = np.empty_like(x_test)
        for i, s in enumerate(scalers):
            own[origin == i] = s.transform(x_test[origin == i])
        test_by_node = [own] * len(nodes)
    else:
        test_by_node = [s.transform(x_test) for s in scalers]
    return Permutation(
        node_train=[(s.transform(x), y) for s, (x, y) in zip(scalers, trains, strict=True)],
        test_by_node=test_by_node,
        central_train=(central.transform(central_x), central_y),
        central_test=central.transform(x_test),
        y_test=y_test,
    )


def draw_nodes(pool: Cohort, design: list[tuple[int, int]], seed: int) -> list[Cohort]:
    """Draw disjoint sets of (cases, controls) per node from a pooled cohort."""
    rng = np.random.default_rng(seed)
    cases = list(rng.permutation(np.flatnonzero(pool.y == 1)))
    controls = list(rng.permutation(np.flatnonzero(pool.y == 0)))
    need_a, need_c = sum(a for a, _ in design), sum(c for _, c in design)
    if need_a > len(cases) or need_c > len(controls):
        scale = min(len(cases) / need_a, len(controls) / need_c)
        logger.warning("The cohort has %d cases and %d controls; scaling the design by %.2f",
                       len(cases), len(controls), scale)  # fmt: skip
        design = [(max(1, int(a * scale)), max(1, int(c * scale))) for a, c in design]
    nodes = []
    for a, c in design:
        chosen = [cases.pop() for _ in range(a)] + [controls.pop() for _ in range(c)]
        nodes.append(pool.subset(np.array(sorted(chosen))))
    return nodes


@dataclass(frozen=True)
class QuickSettings:
    """What ``--quick`` changes: sample fraction, genes, epochs, largest batch."""

    scale: float
    genes: int = 500
    epochs: int = 12
    largest_batch: int = 32


def experiment_parser(
    doc: str,
    scenarios: Sequence[str],
    quick: QuickSettings,
    quick_by_scenario: dict[str, QuickSettings] | None = None,
) -> Any:
    """The command line shared by the paper's example scripts.

    ``quick_by_scenario`` names the scenarios whose ``--quick`` differs (for the help text).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    others = "".join(f", {name}: {q.epochs}" for name, q in (quick_by_scenario or {}).items()
                     if q.epochs != quick.epochs)  # fmt: skip
    parser.add_argument("--scenario", choices=sorted(scenarios), default=scenarios[0])
    parser.add_argument("--permutations", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", choices=["paper", "lasso"], default="paper")
    parser.add_argument("--epochs", type=int,
                        help=f"default 100; with --quick {quick.epochs}{others}")  # fmt: skip
    parser.add_argument("--genes", type=int, help=f"simulated genes (2000; {quick.genes} quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"reduced run: {quick.scale:g} of the samples, fewer genes, epochs "
                             "and permutations")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--privacy", type=float, nargs="+", metavar="EPS",
        help="also train private swarms (secure aggregation + node-level DP) at these "
             "epsilon budgets (delta 1e-5), e.g. --privacy 1 4 8",
    )  # fmt: skip
    parser.add_argument(
        "--clip-norm", type=float, default=1.0,
        help="the private swarms' clip norm of a node's update (default 1)",
    )  # fmt: skip
    add_data_arguments(parser)
    return parser


def run_experiment(
    args: argparse.Namespace,
    quick: QuickSettings,
    make_nodes: Callable[[int, float, int], tuple[list[Cohort], Cohort | None]],
    *,
    name: str,
    paper: dict[str, str] | None,
) -> str:
    """Run ``args.permutations`` permutations and write the report; returns the summary.

    Args:
        make_nodes: ``(seed, sample fraction, genes) -> (node cohorts, test cohort
            or None for the union of the nodes' 20 %)``.
    """
    epochs = args.epochs or (quick.epochs if args.quick else 100)
    genes = args.genes or (quick.genes if args.quick else 2000)
    permutations = min(args.permutations, 2) if args.quick else args.permutations
    scale = quick.scale if args.quick else 1.0
    started = time.monotonic()
    print(f"{name} {args.scenario}: {permutations} permutation(s), {epochs} epochs, model "
          f"{args.model}", flush=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    for k in range(permutations):
        seed = args.seed + k
        nodes, test = make_nodes(seed, scale, genes)
        rows += run_permutation(nodes, seed, workdir=args.out / "work", epochs=epochs,
                                kind=args.model, test=test,
                                largest_batch=quick.largest_batch if args.quick else 32,
                                progress=lambda s: print(s, flush=True),
                                privacy=[e for e in args.privacy or [] if math.isfinite(e)],
                                clip_norm=args.clip_norm)  # fmt: skip
        print(f"permutation {k + 1}/{permutations} done ({time.monotonic() - started:.0f}s)",
              flush=True)  # fmt: skip
    source = "your" if args.data or args.geo else "simulated"
    title = f"{name.capitalize()}, scenario {args.scenario} ({source} cohort, model {args.model})"
    summary = write_report(rows, args.out, title=title, paper=paper)
    print(summary)
    print(f"wrote {args.out}/results.csv, summary.md, metrics.png", flush=True)
    return summary


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line flags that replace the simulated cohort with the user's own."""
    parser.add_argument("--data", type=Path, help="your samples x genes matrix (CSV/TSV[.gz])")
    parser.add_argument("--labels", type=Path, help="a separate label file for --data")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--geo", type=Path, help="a GEO series-matrix file")
    parser.add_argument("--phenotype", help="the GEO characteristic holding the label")
    parser.add_argument("--positive", help="the label of cases (e.g. AML)")


def load_cohort(args: argparse.Namespace) -> Cohort:
    """The user's cohort named by :func:`add_data_arguments`' flags."""
    if args.data:
        return load_matrix(args.data, labels=args.labels, label_column=args.label_column,
                           positive=args.positive)  # fmt: skip
    if not args.phenotype or not args.positive:
        raise ConfigurationError("--geo needs --phenotype and --positive.")
    return load_geo_series_matrix(args.geo, phenotype=args.phenotype, positive=args.positive)


def batch_sizes(sizes: Sequence[int], largest_batch: int = 32) -> tuple[int, list[int]]:
    """Steps per epoch of the largest node, and each node's batch size.

    The largest node uses batches of about ``largest_batch``; smaller nodes use
    smaller batches, so that every node takes about as many steps per epoch
    (one fewer when its size does not divide: 32 samples in batches of 3 take
    11 steps, in batches of 2 sixteen, never 12). Each node therefore syncs at
    the end of each of its own epochs, which keeps the swarm's rounds in step.
    """
    steps = max(1, math.ceil(max(sizes) / largest_batch))
    return steps, [max(1, math.ceil(n / steps)) for n in sizes]


def _node_job(
    folder: str, epochs: int, kind: str, seed: int, privacy: Any = None
) -> dict[str, list[float]]:
    """Run in each node's process: train alone, then in the swarm; predict the test set.

    With ``privacy`` (a :class:`~swarmlib.privacy.GaussianDP`) only a private swarm
    (secure aggregation on) is trained.
    """
    from swarmlib.callback import SwarmCallback

    index = int(os.environ["SWARMLIB_NODE_INDEX"])
    count = int(os.environ["SWARMLIB_NODE_COUNT"])
    data = np.load(Path(folder) / f"node-{index}.npz")
    x, y, x_test = data["x"], data["y"], data["x_test"]
    batch = int(data["batch"])
    steps = -(-len(y) // batch)  # this node's steps per epoch: it syncs once per epoch
    out = {}
    if privacy is None:
        local = build_model(x.shape[1], kind, seed=seed + index)
        local.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
        out["local"] = local.predict(x_test, verbose=0).ravel().tolist()
    swarm = build_model(x.shape[1], kind, seed=seed + index)
    private = {"privacy": privacy, "secure_aggregation": count >= 3} if privacy else {}
    callback = SwarmCallback(sync_frequency=steps, min_peers=count, batch_size=batch, verbose=0,
                             **private)  # fmt: skip
    swarm.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, callbacks=[callback])
    out["swarm"] = swarm.predict(x_test, verbose=0).ravel().tolist()
    if privacy is not None:
        out["epsilon"] = [float(callback.epsilon or 0.0)]
    return out


def run_permutation(
    nodes: Sequence[Cohort],
    seed: int,
    *,
    workdir: Path,
    epochs: int,
    kind: str = "paper",
    test: Cohort | None = None,
    largest_batch: int = 32,
    progress: Callable[[str], None] = print,
    privacy: Sequence[float] = (),
    clip_norm: float = 1.0,
) -> list[dict[str, Any]]:
    """Train and score every local model, the central model and the swarm for one permutation.

    Args:
        privacy: Epsilon budgets of extra private swarms (secure aggregation and
            :class:`~swarmlib.privacy.GaussianDP` with ``clip_norm``, delta 1e-5,
            the noise calibrated to the run's rounds). Defaults to none.

    Returns:
        One row per model (``node-1`` … ``node-N``, ``central``, ``swarm``, then
        ``swarm eps=E`` per budget) with the :data:`METRICS` and ``n``.
    """
    from swarmlib.launcher import run_nodes

    perm = prepare(nodes, seed, test)
    sizes = [len(y) for _, y in perm.node_train]
    _, batches = batch_sizes(sizes, largest_batch)
    folder = workdir / f"perm-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, ((x, y), batch) in enumerate(zip(perm.node_train, batches, strict=True)):
        np.savez(folder / f"node-{i}.npz", x=x, y=y, x_test=perm.test_by_node[i], batch=batch)
    started = time.monotonic()
    progress(f"  permutation {seed}: {len(nodes)} nodes ({sizes} training samples, batch "
             f"sizes {batches}), local and swarm models in {len(nodes)} processes…")  # fmt: skip
    job = functools.partial(_node_job, str(folder), epochs, kind, seed)
    # many processes on few cores start their rounds far apart: give them time
    timeout = {"SWARMLIB_TIMEOUT": str(max(60, 10 * len(nodes)))}
    results = run_nodes(job, len(nodes), workdir=folder / "swarm", quorum_wait=60,
                        extra_env=timeout)  # fmt: skip
    progress(f"  permutation {seed}: nodes done in {time.monotonic() - started:.0f}s; "
             "central model…")  # fmt: skip
    central = build_model(perm.central_train[0].shape[1], kind, seed=seed + 99)
    _, central_batch = batch_sizes([len(perm.central_train[1])], largest_batch)
    central.fit(*perm.central_train, epochs=epochs, batch_size=central_batch[0], verbose=0)
    progress(f"  permutation {seed}: central model done ({time.monotonic() - started:.0f}s)")
    rows = []
    for i, r in enumerate(results):
        rows.append({"permutation": seed, "model": f"node-{i + 1}",
                     **metrics(perm.y_test, np.asarray(r["local"]))})  # fmt: skip
    p_central = central.predict(perm.central_test, verbose=0)
    rows.append({"permutation": seed, "model": "central", **metrics(perm.y_test, p_central)})
    # every node holds the same swarm model; node 1's predictions (its scaling) stand for it
    swarm = np.asarray(results[0]["swarm"])
    rows.append({"permutation": seed, "model": "swarm", **metrics(perm.y_test, swarm)})
    for eps in privacy:
        dp = _private_settings(eps, clip_norm, epochs)
        progress(f"  permutation {seed}: private swarm at epsilon {eps:g} ({dp})…")
        job = functools.partial(_node_job, str(folder), epochs, kind, seed, dp)
        private = run_nodes(job, len(nodes), workdir=folder / f"swarm-eps{eps:g}",
                            quorum_wait=60, extra_env=timeout)  # fmt: skip
        spent = max(r["epsilon"][0] for r in private)
        progress(f"  permutation {seed}: private swarm at epsilon {eps:g} spent {spent:.3g}")
        rows.append({"permutation": seed, "model": f"swarm eps={eps:g}", "epsilon": spent,
                     **metrics(perm.y_test, np.asarray(private[0]["swarm"]))})  # fmt: skip
    return rows


def _private_settings(eps: float, clip_norm: float, epochs: int) -> Any:
    """DP for a run of ``epochs`` syncs (one per epoch) plus the initial round, within ``eps``."""
    from swarmlib.privacy import GaussianDP, noise_for

    rounds = epochs + 1
    return GaussianDP(clip_norm, noise_for(eps, rounds), target_epsilon=eps * 1.0001)


def write_report(
    rows: Sequence[dict[str, Any]],
    out: Path,
    *,
    title: str,
    paper: dict[str, str] | None = None,
) -> str:
    """Write ``results.csv``, ``summary.md`` (means ± SD, the paper's figures beside) and PNGs.

    Returns:
        The markdown summary.
    """
    out.mkdir(parents=True, exist_ok=True)
    fields = ["permutation", "model", *METRICS, "n", "epsilon"]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})
    models = list(dict.fromkeys(r["model"] for r in rows))
    perms = len({r["permutation"] for r in rows})
    head = "| model | " + " | ".join(METRICS) + " | paper |"
    lines = [f"# {title}", "", f"{perms} permutation(s); mean ± SD over permutations.", "",
             head, "|" + "---|" * (len(METRICS) + 2)]  # fmt: skip
    for model in models:
        cells = []
        for m in METRICS:
            v = np.array([r[m] for r in rows if r["model"] == model], np.float64)
            cells.append(f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}")
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {(paper or {}).get(model, '')} |")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    _plot(rows, models, out)
    if any(m.startswith("swarm eps=") for m in models):
        _plot_privacy(rows, models, out)
    return text


def _plot_privacy(rows: Sequence[dict[str, Any]], models: list[str], out: Path) -> None:
    """``privacy.png``: the swarm's AUC and accuracy against its epsilon budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean(model: str, metric: str) -> float:
        return float(np.nanmean([r[metric] for r in rows if r["model"] == model]))

    arms = sorted((float(m.split("=")[1]), m) for m in models if m.startswith("swarm eps="))
    labels = [f"{eps:g}" for eps, _ in arms] + ["inf"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, metric in zip(axes, ("auc", "accuracy"), strict=True):
        ax.plot(labels, [mean(m, metric) for _, m in arms] + [mean("swarm", metric)], "o-",
                color="#1f77b4", label="swarm")  # fmt: skip
        ax.axhline(mean("central", metric), color="#ff7f0e", ls="--", label="central")
        best = max(mean(m, metric) for m in models if m.startswith("node"))
        ax.axhline(best, color="#9aa5b1", ls=":", label="best local")
        ax.set_xlabel("epsilon (delta 1e-5)")
        ax.set_title(metric)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "privacy.png", dpi=120)
    plt.close(fig)


def plot_groups(models: Sequence[str]) -> dict[str, list[str]]:
    """The boxes of ``metrics.png``: label -> the models whose rows it pools.

    One box per model while the labels fit; beyond eight nodes (``scale32``) all
    local models share one box, their points still drawn one by one.
    """
    nodes = [m for m in models if m.startswith("node")]
    if len(nodes) <= _NODES_PLOTTED_APART:
        return {m: [m] for m in models}
    return {f"{len(nodes)} nodes": nodes, **{m: [m] for m in models if m not in nodes}}


def _plot(rows: Sequence[dict[str, Any]], models: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = plot_groups(models)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.6), sharey=True)
    colors = ["#9aa5b1" if g[0].startswith("node") else "#1f77b4" if g[0].startswith("swarm")
              else "#ff7f0e" for g in groups.values()]  # fmt: skip
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, METRICS, strict=True):
        data = [[r[metric] for r in rows if r["model"] in g] for g in groups.values()]
        ax.boxplot(data, tick_labels=list(groups), widths=0.6, showfliers=False)
        for k, (values, color) in enumerate(zip(data, colors, strict=True)):
            jitter = rng.uniform(-0.12, 0.12, len(values))
            ax.scatter(np.full(len(values), k + 1) + jitter, values, s=14, color=color, zorder=3)
        ax.set_title(metric)
        ax.tick_params(axis="x", rotation=45)
        ax.set_ylim(-0.02, 1.02)
    fig.suptitle("local (grey) vs central (orange) vs swarm (blue)")
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=120)
    plt.close(fig)
