"""Quickstart: three hospitals with skewed data train one Keras model together.

Run it as a swarm (each node is a process; `swarmlib run` sets up chain, identities and ports):

    swarmlib run -n 3 --workdir demo-output examples/quickstart.py
    python examples/quickstart.py --summarize demo-output

Each node sees mostly two of four classes (non-IID, as hospitals see different
case mixes). It trains a model on its own data alone, then the same model with
``SwarmCallback``, and evaluates both on a shared balanced test set. The
summary table (``demo-output/quickstart.md``) shows every local model next to
the swarm model, and whether all nodes ended with the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

CLASSES, FEATURES, PER_NODE, EPOCHS, BATCH = 4, 16, 640, 6, 32


def dataset(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian classes in 16-D with overlapping means (a shared generator, fixed seed)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.2, (CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, 20000)
    x = centers[y] + rng.normal(0, 1.6, (len(y), FEATURES))
    return x.astype(np.float32), y.astype(np.int64)


def partition(index: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Node ``index``'s skewed training set (mostly classes index and index+1), and the test set."""
    x, y = dataset()
    x_test, y_test = x[:2000], y[:2000]
    x, y = x[2000:], y[2000:]
    rng = np.random.default_rng(100 + index)
    major = {index % CLASSES, (index + 1) % CLASSES}
    p = np.where(np.isin(y, list(major)), 0.95, 0.05)
    chosen = rng.choice(len(y), PER_NODE, replace=False, p=p / p.sum())
    return x[chosen], y[chosen], x_test, y_test


def model(seed: int):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(seed)
    m = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def train_node() -> None:
    from swarmlib import SwarmCallback

    index = int(os.environ["SWARMLIB_NODE_INDEX"])
    count = int(os.environ["SWARMLIB_NODE_COUNT"])
    x, y, x_test, y_test = partition(index, count)

    local = model(seed=index)
    local.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    local_acc = float(local.evaluate(x_test, y_test, verbose=0)[1])

    swarm = model(seed=index)  # a different initialisation per node: the first sync aligns them
    callback = SwarmCallback(sync_frequency=10, min_peers=count, batch_size=BATCH)
    swarm.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=[callback])
    swarm_acc = float(swarm.evaluate(x_test, y_test, verbose=0)[1])

    digest = hashlib.sha256(b"".join(w.tobytes() for w in swarm.get_weights())).hexdigest()
    result = {
        "node": index,
        "classes_seen": np.bincount(y, minlength=CLASSES).tolist(),
        "local_accuracy": local_acc,
        "swarm_accuracy": swarm_acc,
        "weights_sha256": digest,
        "rounds": len(callback.history),
    }
    out = Path(os.environ.get("SWARMLIB_WORKDIR", ".")) / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"node-{index}.json").write_text(json.dumps(result, indent=1))
    print(f"node {index}: local accuracy {local_acc:.3f}, swarm accuracy {swarm_acc:.3f}, "
          f"{result['rounds']} swarm rounds", flush=True)  # fmt: skip


def summarize(folder: Path) -> int:
    results = [json.loads(p.read_text()) for p in sorted((folder / "results").glob("node-*.json"))]
    if not results:
        print(f"no results in {folder}/results", file=sys.stderr)
        return 1
    same = len({r["weights_sha256"] for r in results}) == 1
    best_local = max(r["local_accuracy"] for r in results)
    swarm = min(r["swarm_accuracy"] for r in results)
    lines = [
        "# swarmlib quickstart: 3 nodes with skewed data, shared balanced test set",
        "",
        "| node | training samples per class | local model accuracy | swarm model accuracy |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['node']} | {r['classes_seen']} | {r['local_accuracy']:.3f} | "
                     f"{r['swarm_accuracy']:.3f} |")  # fmt: skip
    lines += [
        "",
        f"- every node ended with the same weights: **{same}**",
        f"- swarm accuracy {swarm:.3f} vs best local {best_local:.3f}: "
        f"**{'swarm wins' if swarm > best_local else 'swarm does not win'}**",
    ]
    text = "\n".join(lines) + "\n"
    (folder / "quickstart.md").write_text(text)
    print(text)
    return 0 if same else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summarize", type=Path, help="print the table of a finished run")
    args = parser.parse_args()
    sys.exit(summarize(args.summarize) if args.summarize else train_node() or 0)
