"""Poisoning: how far one malicious hospital moves the swarm's model, per attack and merge.

Five ``SwarmNode`` processes (the embedded chain served on 127.0.0.1 by this
process, dev SVIDs) train a logistic-regression model in numpy on a simulated
blood-transcriptome cohort (one study per node, its own scaler, 30 % of each
study held out). Node 4 is the attacker (``--attackers 2``: nodes 3 and 4).
For every merge, owner-replica setting and attack, the five train one session
of ``--rounds`` rounds from the same start; the honest nodes then score the
model they loaded on their own held-out samples. The gap is the clean run's
accuracy (the same merge and replicas, every node honest) minus the attacked
run's, in points; positive means the attack hurt.

Attacks (``u`` is the attacker's honest update, its trained weights minus the
merged model it started the round from):

* ``scaled``: sends the merged model plus ``100 u``;
* ``sign_flip``: the merged model minus ``4 u``;
* ``noise``: the merged model plus Gaussian noise (SD 1 per weight);
* ``alie``: "a little is enough" (Baruch et al. 2019): mean minus ``z`` SDs of
  benign updates, ``z`` from the paper's formula for n=5, estimated from four
  updates the attacker trains on quarters of its own data;
* ``label_flip``: trains honestly on its data with every label flipped;
* ``wrong_owner``: contributes honestly, but every shard it merges as an owner
  is replaced by ``-10`` times the honest merge before it is sent.

The table goes to ``--out`` as ``poisoning.md``, ``poisoning.csv`` and
``poisoning.png``; the last line printed is::

    poisoning nodes=5 attackers=1 worst_gap_robust=G worst_gap_mean=M

with G the largest gap of a robust merge at ``owner_replicas=3`` over every
attack, M the mean's. Goal: G within 1 point, M large (the attacks are real).

    python benchmarks/poisoning.py [--rounds 20] [--attackers 1] [--replicas 1 3]
                                   [--merges mean median ...] [--attacks scaled ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

NODES = 5
GENES, EFFECT, TEST_FRACTION, SEED = 200, 0.8, 0.3, 7
STUDIES = [(300, 300), (240, 240), (200, 200), (160, 160), (240, 240)]  # cases, controls
LEARNING_RATE, BATCH = 0.05, 32
# every node takes part in every round (a round closes once all active members voted);
# the quorum wait only bounds a wait for a node that died
QUORUM_WAIT_S, ROUND_TIMEOUT_S, EXCHANGE_TIMEOUT_S = 60, 120, 15

#: merge label -> (strategy spec, weight each node reports, min_peers of the session)
MERGES: dict[str, tuple[str, str, int]] = {
    "mean": ("mean", "equal", 3),
    "weighted_mean": ("mean", "samples", 3),
    "median": ("coordinate_median", "samples", 3),
    "trimmed_mean": ("trimmed_mean(k=1)", "samples", 3),
    "krum": ("krum(f=1)", "samples", 5),
    "multi_krum": ("multi_krum(f=1)", "samples", 5),
    "geometric_median": ("geometric_median", "samples", 3),
}
#: with two attackers, only merges that tolerate two of five
MERGES_2 = {
    "mean": MERGES["mean"],
    "median": MERGES["median"],
    "trimmed_mean": ("trimmed_mean(k=2)", "samples", 5),
    "geometric_median": MERGES["geometric_median"],
}
ATTACKS = ["scaled", "sign_flip", "noise", "alie", "label_flip", "wrong_owner"]
ROBUST = {"median", "trimmed_mean", "krum", "multi_krum", "geometric_median"}


# ---------------------------------------------------------------- the model and the attacks


def node_data(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This node's study, scaled by its own scaler: train x, y, test x, y."""
    from swarmlib.datasets import Standardizer, StudySpec, simulate_cohort
    from swarmlib.datasets.prep import stratified_split

    cohort = simulate_cohort([StudySpec(a, b) for a, b in STUDIES], genes=GENES, effect=EFFECT,
                             seed=SEED)  # fmt: skip
    rows = np.flatnonzero(cohort.study == index)
    x, y = cohort.x[rows], cohort.y[rows]
    train, test = stratified_split(y, TEST_FRACTION, seed=index)
    scaler = Standardizer.fit(x[train], y[train])
    return (scaler.transform(x[train]), y[train].astype(np.float32),
            scaler.transform(x[test]), y[test])  # fmt: skip


def train(w: np.ndarray, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """One epoch of minibatch SGD on the logistic loss (small L2), from ``w``."""
    w = w.astype(np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    for i in range(0, len(y), BATCH):
        b = order[i : i + BATCH]
        z = np.clip(x[b] @ w[:-1] + w[-1], -30, 30)
        g = 1 / (1 + np.exp(-z)) - y[b]
        w[:-1] -= LEARNING_RATE * (x[b].T @ g / len(b) + 1e-3 * w[:-1])
        w[-1] -= LEARNING_RATE * g.mean()
    return w.astype(np.float32)


def correct(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> int:
    return int(((x @ w[:-1] + w[-1] > 0) == y).sum())


def poison(attack: str, start: np.ndarray, x: np.ndarray, y: np.ndarray, seed: int,
           attackers: int) -> np.ndarray:  # fmt: skip
    """What an attacker sends instead of its honest contribution (see the module docstring)."""
    honest = train(start, x, y, seed)
    u = honest - start
    if attack == "scaled":
        return start + 100 * u
    if attack == "sign_flip":
        return start - 4 * u
    if attack == "noise":
        return start + np.random.default_rng(seed).normal(0, 1, start.shape).astype(np.float32)
    if attack == "label_flip":
        return train(start, x, 1 - y, seed)
    if attack == "alie":
        parts = np.array_split(np.random.default_rng(seed).permutation(len(y)), 4)
        benign = np.stack([train(start, x[p], y[p], seed + i) for i, p in enumerate(parts)])
        s = NODES // 2 + 1 - attackers  # Baruch et al. 2019, section 4
        z = NormalDist().inv_cdf((NODES - s) / NODES)
        return (benign.mean(0) - z * benign.std(0)).astype(np.float32)
    return honest  # clean, wrong_owner: the contribution is honest


_WRONG_OWNER = False  # set for a wrong_owner run on an attacker


def _patch_owner_merge() -> None:
    """An attacker's exchange: while ``_WRONG_OWNER``, every shard it merges is replaced."""
    from swarmlib.transport.exchange import ShardedExchange

    honest = ShardedExchange._merge_owned

    def merge_owned(self, st, own, weight, merge):  # type: ignore[no-untyped-def]
        honest(self, st, own, weight, merge)
        if _WRONG_OWNER:
            for k in st.owned:
                a, b = st.bounds[k]
                st.out[a:b] *= -10

    ShardedExchange._merge_owned = merge_owned  # type: ignore[method-assign]


# ---------------------------------------------------------------- one node process


def _node(workdir: Path, rounds: int, attackers: int) -> int:
    """Train every planned session in turn; log each one's result as a JSON line."""
    index = int(os.environ["SWARMLIB_NODE_INDEX"])
    if index >= NODES - attackers:
        _patch_owner_merge()
    data = node_data(index)
    plan = json.loads((workdir / "plan.json").read_text())
    with open(workdir / f"node-{index}" / "results.jsonl", "a") as out:
        for run in plan:
            _barrier(workdir, run["session"], index)  # start each session together
            result = _train_session(run, rounds, attackers, index, data)
            out.write(json.dumps(result) + "\n")
            out.flush()
    return 0


def _train_session(run: dict[str, Any], rounds: int, attackers: int, index: int,
                   data: tuple[np.ndarray, ...]) -> dict[str, Any]:  # fmt: skip
    """One planned session on this node: how its last model scores on its held-out samples."""
    global _WRONG_OWNER
    from swarmlib import SwarmNode
    from swarmlib.errors import RoundFailed, SwarmError

    x, y, x_test, y_test = data
    attacker = index >= NODES - attackers
    attack = run["attack"] if attacker else "clean"
    _WRONG_OWNER = attack == "wrong_owner"
    weight = len(y) if run["weight"] == "samples" else 1
    w, done, error, last_hash = np.zeros(GENES + 1, np.float32), 0, None, ""
    t0 = time.monotonic()
    try:
        with SwarmNode.from_env(session=run["session"], min_peers=run["min_peers"],
                                timeout=EXCHANGE_TIMEOUT_S) as node:  # fmt: skip
            for r in range(rounds):
                sent = poison(attack, w, x, y, 1000 * r + index, attackers)
                try:
                    w = node.sync([sent], weight).weights[0]
                except RoundFailed as e:
                    if attacker and node.spiffe_id in e.culprits:
                        break  # found out: the honest nodes go on without it
                    raise
                done += 1
            last_hash = node.last_hash.hex()
    except SwarmError as e:
        error = f"{type(e).__name__}: {e}"
    return {"session": run["session"], "node": index, "attacker": attacker, "rounds": done,
            "correct": correct(w, x_test, y_test), "test": len(y_test), "sha256": last_hash,
            "error": error, "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip


def _barrier(workdir: Path, session: str, index: int, timeout: float = 120) -> None:
    """Wait until every node process reached ``session`` (or ``timeout`` passed).

    The benchmark's own line-up, outside the protocol: a node that joins a session
    late would otherwise start from a later round than the others.
    """
    folder = workdir / "barrier" / session
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(index)).touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < NODES and time.monotonic() < deadline:
        time.sleep(0.05)


# ---------------------------------------------------------------- the driver


def _plan(merges: dict[str, tuple[str, str, int]], replicas: list[int],
          attacks: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    plan = []
    for r in replicas:
        for label, (spec, weight, min_peers) in merges.items():
            for attack in ["clean", *attacks]:
                plan.append({"session": f"p{len(plan)}", "merge": label, "spec": spec,
                             "weight": weight, "min_peers": min_peers, "replicas": r,
                             "attack": attack})  # fmt: skip
    return plan


def _score(plan: list[dict[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    """Each run's accuracy over the honest nodes' held-out samples, and whether they agreed."""
    results: dict[str, list[dict[str, Any]]] = {}
    for i in range(NODES):
        path = workdir / f"node-{i}" / "results.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            rec = json.loads(line)
            results.setdefault(rec["session"], []).append(rec)
    rows = []
    for run in plan:
        honest = [r for r in results.get(run["session"], []) if not r["attacker"]]
        errors = sorted({r["error"].split(":")[0] for r in honest if r["error"]})
        total = sum(r["test"] for r in honest)
        accuracy = 100 * sum(r["correct"] for r in honest) / total if total else float("nan")
        rows.append({**run, "accuracy": accuracy,
                     "agree": len({r["sha256"] for r in honest}) == 1 and not errors,
                     "rounds": min((r["rounds"] for r in honest), default=0),
                     "error": ",".join(errors)})  # fmt: skip
    clean = {(r["merge"], r["replicas"]): r["accuracy"] for r in rows if r["attack"] == "clean"}
    for row in rows:
        row["gap"] = clean[row["merge"], row["replicas"]] - row["accuracy"]
    return rows


def _write(rows: list[dict[str, Any]], out: Path, attackers: int, rounds: int) -> str:
    """The table as markdown (returned), csv and a plot of the gaps."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "poisoning.csv", "w", newline="") as f:
        keys = ["merge", "spec", "replicas", "attack", "accuracy", "gap", "rounds", "agree",
                "error"]  # fmt: skip
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    attacks = [a for a in dict.fromkeys(r["attack"] for r in rows) if a != "clean"]
    lines = [f"Accuracy gap to the clean run, points (nodes={NODES}, attackers={attackers}, "
             f"rounds={rounds}); `!` = the honest nodes did not finish with one model", "",
             "| merge | owner_replicas | clean % | " + " | ".join(attacks) + " |",
             "|---|---|---|" + "---|" * len(attacks)]  # fmt: skip
    for (merge, r), group in _groups(rows).items():
        by = {g["attack"]: g for g in group}
        cells = [f"{by[a]['gap']:+.1f}" + ("" if by[a]["agree"] else " !") for a in attacks]
        lines.append(f"| {merge} | {r} | {by['clean']['accuracy']:.1f} | " + " | ".join(cells)
                     + " |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    (out / "poisoning.md").write_text(table)
    _plot(rows, attacks, out / "poisoning.png")
    return table


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["merge"], row["replicas"]), []).append(row)
    return groups


def _plot(rows: list[dict[str, Any]], attacks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    replicas = sorted({r["replicas"] for r in rows})
    fig, axes = plt.subplots(1, len(replicas), figsize=(6 * len(replicas), 4.5), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, r in zip(axes[0], replicas, strict=True):
        groups = {m: g for (m, rr), g in _groups(rows).items() if rr == r}
        width = 0.8 / len(groups)
        for i, (merge, group) in enumerate(groups.items()):
            by = {g["attack"]: g["gap"] for g in group}
            xs = np.arange(len(attacks)) + i * width
            ax.bar(xs, [max(by[a], -5) for a in attacks], width, label=merge)
        ax.set_xticks(np.arange(len(attacks)) + 0.4 - width / 2, attacks, rotation=30)
        ax.axhline(1, color="grey", lw=0.8, ls="--")
        ax.set_title(f"owner_replicas={r}")
        ax.set_ylabel("accuracy lost to the attack (points)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _run(args: argparse.Namespace) -> int:
    from swarmlib.launcher import LocalSwarm
    from swarmlib.ledger import SessionRules

    merges = MERGES_2 if args.attackers == 2 else MERGES
    merges = {m: merges[m] for m in args.merges or merges}
    plan = _plan(merges, args.replicas, args.attacks)
    t0 = time.monotonic()
    with LocalSwarm(NODES, min_peers=3, quorum_wait=QUORUM_WAIT_S,
                    round_timeout=ROUND_TIMEOUT_S) as local:  # fmt: skip
        assert local.workdir is not None
        for run in plan:
            rules = SessionRules(run["min_peers"], run["spec"], owner_replicas=run["replicas"])
            local.admin.create_session(run["session"], rules=rules, quorum_wait=QUORUM_WAIT_S,
                                       round_timeout=ROUND_TIMEOUT_S)  # fmt: skip
        (local.workdir / "plan.json").write_text(json.dumps(plan))
        print(f"poisoning: {len(plan)} sessions of {args.rounds} rounds on {NODES} nodes "
              f"({args.attackers} attacker(s)); workdir {local.workdir}", flush=True)  # fmt: skip
        _train_all(local.workdir, local.envs, plan, args, t0)
        rows = _score(plan, local.workdir)
    print(_write(rows, Path(args.out), args.attackers, args.rounds))
    for row in rows:
        if row["error"]:
            print(f"poisoning: {row['merge']} r={row['replicas']} {row['attack']}: honest nodes "
                  f"stopped after {row['rounds']} rounds with {row['error']}")  # fmt: skip
    top = max(args.replicas)
    robust = [r["gap"] for r in rows if r["merge"] in ROBUST and r["replicas"] == top]
    mean = [r["gap"] for r in rows if r["merge"] == "mean" and r["replicas"] == top]
    print(f"poisoning: {time.monotonic() - t0:.0f} s; tables and plot in {args.out}")
    print(f"poisoning nodes={NODES} attackers={args.attackers} "
          f"worst_gap_robust={max(robust, default=float('nan')):.1f} "
          f"worst_gap_mean={max(mean, default=float('nan')):.1f}")  # fmt: skip
    return 0


def _train_all(workdir: Path, envs: list[dict[str, str]], plan: list[dict[str, Any]],
               args: argparse.Namespace, t0: float) -> None:  # fmt: skip
    """Start the five node processes, print their progress, and end them (by pid)."""
    procs, logs = [], []
    for i, env in enumerate(envs):
        cmd = [sys.executable, __file__, "--node", str(workdir), "--rounds", str(args.rounds),
               "--attackers", str(args.attackers)]  # fmt: skip
        logs.append(open(workdir / f"node-{i}" / "node.log", "ab"))  # noqa: SIM115
        procs.append(subprocess.Popen(cmd, env={**os.environ, **env}, stdout=logs[-1],
                                      stderr=subprocess.STDOUT))  # fmt: skip
    try:
        seen, path = 0, workdir / "node-0" / "results.jsonl"
        while any(p.poll() is None for p in procs):
            time.sleep(2)
            done = len(path.read_text().splitlines()) if path.exists() else 0
            if done > seen:
                run, seen = plan[done - 1], done
                print(f"poisoning: {done}/{len(plan)} {run['merge']} r={run['replicas']} "
                      f"{run['attack']} ({time.monotonic() - t0:.0f} s)", flush=True)  # fmt: skip
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for log in logs:
            log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--attackers", type=int, choices=(1, 2), default=1)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--merges", nargs="+", choices=list(MERGES))
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=ATTACKS)
    parser.add_argument("--out", default="bench-output/poisoning")
    parser.add_argument("--node", help=argparse.SUPPRESS)  # a node process: its workdir
    args = parser.parse_args(argv)
    if args.node:
        return _node(Path(args.node), args.rounds, args.attackers)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
