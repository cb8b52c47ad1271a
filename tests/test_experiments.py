"""The paper's experiments: metrics, and the leukemia --quick run against the paper's claims."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarmlib.experiments import batch_sizes, metrics, plot_groups, prepare, write_report

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_match_their_definitions() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.4, 0.7, 0.3, 0.2, 0.1, 0.1])
    m = metrics(y, p)
    # AUC: of the 15 (case, control) pairs the case scores higher in all but (0.6, 0.7), (0.4, 0.7)
    assert m["auc"] == pytest.approx(13 / 15)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert metrics(y, np.full(8, 0.5))["auc"] == pytest.approx(0.5)  # ties count half


def test_every_node_takes_the_same_steps_per_epoch() -> None:
    steps, batches = batch_sizes([86, 262, 526], 64)
    assert steps == 9 and batches == [10, 30, 59]
    assert all(-(-n // b) == steps for n, b in zip([86, 262, 526], batches, strict=True))


def _example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LEUKEMIA, TUBERCULOSIS = _example("leukemia"), _example("tuberculosis")


@pytest.mark.parametrize("scenario", sorted(LEUKEMIA.DESIGNS))
def test_every_leukemia_scenario_draws_its_node_design(scenario: str) -> None:
    scale = 0.1
    nodes = LEUKEMIA.simulated_nodes(scenario, scale, 40, seed=3)
    wanted = [(max(2, round(a * scale)), max(2, round(c * scale)))
              for a, c in LEUKEMIA.DESIGNS[scenario]]  # fmt: skip
    assert [(int(c.y.sum()), int((c.y == 0).sum())) for c in nodes] == wanted
    assert sum(len(c.samples) for c in nodes) == len({s for c in nodes for s in c.samples})
    perm = prepare(nodes, seed=3)
    assert len(perm.node_train) == len(wanted)
    trained = sum(len(y) for _, y in perm.node_train)
    assert len(perm.y_test) == sum(len(c.y) for c in nodes) - trained
    assert all(np.isfinite(x).all() for x, _ in perm.node_train)


@pytest.mark.parametrize("scenario", sorted(TUBERCULOSIS.DESIGNS))
def test_every_tuberculosis_scenario_draws_its_nodes_and_held_out_test_set(scenario: str) -> None:
    scale = 0.2
    nodes, test = TUBERCULOSIS.scenario_nodes(scenario, scale, 40, seed=3)
    design, test_design = TUBERCULOSIS.DESIGNS[scenario]
    assert [(int(c.y.sum()), int((c.y == 0).sum())) for c in nodes] == [
        (round(a * scale), round(c * scale)) for a, c in design
    ]
    assert (int(test.y.sum()), int((test.y == 0).sum())) == tuple(
        round(v * scale) for v in test_design
    )
    samples = [set(c.samples) for c in [*nodes, test]]
    assert sum(map(len, samples)) == len(set().union(*samples)), "a sample in two places"


def test_many_nodes_share_one_box_in_the_plot(tmp_path: Path) -> None:
    three = ["node-1", "node-2", "node-3", "central", "swarm"]
    assert plot_groups(three) == {m: [m] for m in three}
    many = [f"node-{i}" for i in range(1, 33)] + ["central", "swarm"]
    assert plot_groups(many) == {"32 nodes": many[:32], "central": ["central"], "swarm": ["swarm"]}
    rng = np.random.default_rng(0)
    rows = [{"permutation": 0, "model": m, "n": 10.0,
             **{k: float(rng.uniform()) for k in ("auc", "accuracy", "sensitivity",
                                                  "specificity", "f1")}}
            for m in many]  # fmt: skip
    summary = write_report(rows, tmp_path, title="32 nodes")
    assert summary.count("| node-") == 32  # the table keeps every node
    assert (tmp_path / "metrics.png").stat().st_size > 10_000


@pytest.mark.slow
def test_leukemia_quick_run_shows_the_papers_claims(tmp_path: Path) -> None:
    out = tmp_path / "leukemia"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "leukemia.py"), "--scenario", "fig2b",
         "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "summary.md").read_text().startswith("# Leukemia, scenario fig2b")
    assert (out / "metrics.png").stat().st_size > 10_000
    by_model: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with (out / "results.csv").open() as f:
        for row in csv.DictReader(f):
            for metric in ("auc", "accuracy", "sensitivity"):
                by_model[row["model"]][metric].append(float(row[metric]))
    mean = {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in by_model.items()}
    locals_ = [m for m in mean if m.startswith("node-")]
    assert len(locals_) == 3 and len(by_model["swarm"]["auc"]) == 2  # two permutations
    swarm, central = mean["swarm"], mean["central"]
    assert swarm["auc"] >= max(mean[m]["auc"] for m in locals_), mean
    assert swarm["accuracy"] >= max(mean[m]["accuracy"] for m in locals_), mean
    assert abs(swarm["accuracy"] - central["accuracy"]) <= 0.02, mean
    assert mean["node-2"]["sensitivity"] <= swarm["sensitivity"] - 0.5, mean


@pytest.mark.slow
def test_tuberculosis_with_the_lasso_model_runs_and_the_swarm_beats_every_node(
    tmp_path: Path,
) -> None:
    # the paper's algorithm-independence check (an L1 logistic regression instead of the
    # network), on the TB design with its held-out test set, one permutation; and a private
    # swarm (secure aggregation + DP at epsilon 8) that must stay within its budget
    out = tmp_path / "tb"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tuberculosis.py"), "--scenario", "fig3a",
         "--quick", "--model", "lasso", "--permutations", "1", "--privacy", "8",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "model lasso" in (out / "summary.md").read_text()
    with (out / "results.csv").open() as f:
        rows = {row["model"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == ["central", "node-1", "node-2", "node-3", "swarm", "swarm eps=8"]
    # the private swarm ran all its rounds and spent close to, never more than, its budget
    assert 7.0 < float(rows["swarm eps=8"]["epsilon"]) <= 8.0
    assert rows["swarm"]["epsilon"] == "" and (out / "privacy.png").is_file()
    # every model is scored on the same held-out set: 157/157 in the paper, half with --quick
    assert {float(r["n"]) for r in rows.values()} == {78 * 2}
    for metric in ("auc", "accuracy"):
        best_local = max(float(rows[f"node-{i}"][metric]) for i in (1, 2, 3))
        assert float(rows["swarm"][metric]) >= best_local, (metric, rows)


def test_a_private_arm_spends_at_most_its_budget_over_the_runs_rounds() -> None:
    from swarmlib.experiments import _private_settings

    dp = _private_settings(4.0, clip_norm=0.5, epochs=24)
    assert dp.clip_norm == 0.5 and dp.epsilon(25) <= 4.0 < dp.epsilon(40)
    assert dp.allows(25)  # the budget stop guards, it does not cut the run short


def test_a_diverged_model_scores_nan_not_a_number_that_looks_real() -> None:
    from swarmlib.experiments import metrics

    scores = metrics(np.array([0, 1, 1, 0]), np.array([np.nan, 0.2, np.nan, 0.9]))
    assert all(np.isnan(scores[m]) for m in ("auc", "accuracy", "f1")) and scores["n"] == 4
