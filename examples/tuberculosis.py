"""The tuberculosis experiments of the Swarm Learning paper (Warnat-Herresthal et al., Nature 2021).

Detect active tuberculosis in blood transcriptomes (a harder task than
leukemia) with nodes of equal or unequal size, and score every node's own
model, a central model and the swarm on a held-out test set of chosen prevalence:

    python examples/tuberculosis.py --scenario fig3a --permutations 5 --out results/tb
    python examples/tuberculosis.py --scenario fig3b --quick --out /tmp/tb

The cohort is simulated by default (``swarmlib.datasets.simulate_cohort`` with a
weaker signature than for leukemia; not the paper's data); ``--data``/``--geo``
use yours. Writes ``results.csv``, ``summary.md`` and ``metrics.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from swarmlib.datasets import StudySpec, simulate_cohort
from swarmlib.experiments import (
    add_data_arguments,
    draw_nodes,
    load_cohort,
    run_permutation,
    write_report,
)

#: ((TB cases, controls) per node, (cases, controls) of the held-out test set), from the paper.
DESIGNS = {
    "fig3a": ([(206, 206)] * 3, (157, 157)),
    "fig3b": ([(103, 103)] * 6, (157, 157)),
    "fig3c": ([(200, 200), (75, 75), (200, 200)], (100, 100)),
    "low_prevalence": ([(206, 206)] * 3, (30, 270)),
}
PAPER = {
    "fig3a": {"node-1": "acc .847-.849", "swarm": "acc .891, F1 .894"},
    "fig3b": {"node-1": "acc .805-.827", "swarm": "acc .893"},
    "fig3c": {"node-1": "acc .812-.856", "swarm": "acc .891"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(DESIGNS), default="fig3a")
    parser.add_argument("--permutations", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", choices=["paper", "lasso"], default="paper")
    parser.add_argument("--epochs", type=int, help="default 100, 20 with --quick")
    parser.add_argument("--genes", type=int, help="simulated genes (2000; 500 with --quick)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced run: half the samples, fewer genes, epochs and permutations",
    )
    add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (20 if args.quick else 100)
    genes = args.genes or (500 if args.quick else 2000)
    permutations = min(args.permutations, 2) if args.quick else args.permutations
    scale = 0.5 if args.quick else 1.0
    nodes_design, test_design = DESIGNS[args.scenario]
    design = [(round(a * scale), round(c * scale)) for a, c in [*nodes_design, test_design]]
    t0 = time.monotonic()
    print(f"tuberculosis {args.scenario}: {permutations} permutation(s), {epochs} epochs, "
          f"model {args.model}", flush=True)  # fmt: skip
    rows = []
    for k in range(permutations):
        seed = args.seed + k
        if args.data or args.geo:
            pool = load_cohort(args)
        else:  # eight studies on two platforms, pooled as the paper pooled dataset B
            need_a, need_c = sum(a for a, _ in design), sum(c for _, c in design)
            specs = [StudySpec(-(-need_a // 8) + 1, -(-need_c // 8) + 1, platform=i % 2)
                     for i in range(8)]  # fmt: skip
            pool = simulate_cohort(specs, genes=genes, effect=0.7, seed=seed)
        *nodes, test = draw_nodes(pool, design, seed)
        rows += run_permutation(nodes, seed, workdir=args.out / "work", epochs=epochs,
                                kind=args.model, test=test, largest_batch=16,
                                progress=lambda s: print(s, flush=True))  # fmt: skip
        print(f"permutation {k + 1}/{permutations} done ({time.monotonic() - t0:.0f}s)", flush=True)
    source = "your" if args.data or args.geo else "simulated"
    title = f"Tuberculosis, scenario {args.scenario} ({source} cohort, model {args.model})"
    print(write_report(rows, args.out, title=title, paper=PAPER.get(args.scenario)))
    print(f"wrote {args.out}/results.csv, summary.md, metrics.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
