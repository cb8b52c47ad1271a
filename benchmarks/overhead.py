"""What does Swarm Learning add to `fit`? The paper's leukemia network, 3 nodes, one sync per epoch.

Each node (a process started by `swarmlib run`) trains the same network on its
own synthetic data, with the same epochs and batch size, in three phases: a plain
`fit`, a `fit` with `SwarmCallback` syncing once per epoch (plus the initial
sync; the sync at the last batch is its last round), and the same with every vote
cast at its sync (`vote_ahead=False`), `--repeats` times. A tiny barrier round
starts every phase on all nodes at the same moment, so all phases see the same
contention on this machine. A fit is timed until training ended (the last callback's
`on_train_end`: the swarm's final merge included); Keras's own teardown after that, the
same in both phases, is printed apart (`Fit`). Times are summed over the repeats. It prints the CPU
the launcher's chain used, each node's rounds (vote, agree, exchange), what a
round costs by itself (from the last node's vote to the merged model loaded
everywhere) apart from the wait for the slowest node to end its batches, the CPU
the nodes' processes used in the plain and the swarm fits, the ratio without votes
cast ahead, and as its last line

    overhead nodes=N sync_frequency=F plain_s=<slowest> swarm_s=<slowest> ratio=<swarm/plain>

    python benchmarks/overhead.py [--nodes 3] [--epochs 3] [--repeats 2] [--samples 1024]
                                  [--anvil-block-time S]

With `--anvil-block-time S` the chain is anvil (from `make npm-tools`), started on
127.0.0.1 and mining a block every S seconds, as a chain with a block period does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

GENES = 12_708
LAYERS = (256, 1024, 512, 512, 256, 256, 128, 128, 64)


def network():  # type: ignore[no-untyped-def]
    """Dense 256 (dropout 0.4) -> 1024 -> ... -> 64 (ReLU, dropout 0.3, L2 0.005) -> 1 sigmoid."""
    import keras

    layers: list[object] = [keras.Input((GENES,))]
    for i, width in enumerate(LAYERS):
        l2 = keras.regularizers.L2(0.005)
        layers.append(keras.layers.Dense(width, activation="relu", kernel_regularizer=l2))
        layers.append(keras.layers.Dropout(0.4 if i == 0 else 0.3))
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


@dataclass(frozen=True)
class Fit:
    """Seconds of `fit`s: until training ended, then until `fit` returned; and their CPU seconds.

    Training ends with the last callback's `on_train_end` (the swarm's final merge and
    its leaving the rounds included). What follows is Keras's own: it drops the epoch's
    tf.data iterator, whose destructor waits for the pipeline's autotuning thread to wake
    up, 0 to 1.4 s here, in plain and swarm fits alike.
    """

    s: float
    teardown_s: float
    cpu_s: float

    def __add__(self, other: Fit) -> Fit:
        return Fit(self.s + other.s, self.teardown_s + other.teardown_s, self.cpu_s + other.cpu_s)


def node(args: argparse.Namespace) -> None:
    import keras
    import numpy as np

    from swarmlib.callback import SwarmCallback
    from swarmlib.node import SwarmNode

    index = int(os.environ["SWARMLIB_NODE_INDEX"])
    rng = np.random.default_rng(index)
    x = rng.normal(size=(args.samples, GENES)).astype("float32")
    y = (x[:, :50].sum(axis=1) > 0).astype("float32")
    steps = -(-args.samples // args.batch)
    member = SwarmNode.from_env()
    member.join()

    def barrier() -> None:
        # one tiny round, so that every node starts the next phase at the same moment: both
        # phases then see the same contention, and no node counts waiting for the others
        member.sync([np.zeros(1, np.float32)], 1)

    class TrainingEnded(keras.callbacks.Callback):
        """Last in the list: its `on_train_end` follows every other callback's (the swarm's too)."""

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            self.at = time.perf_counter()

    def timed_fit(model: keras.Model, callbacks: list[keras.callbacks.Callback]) -> Fit:
        ended = TrainingEnded()
        t, cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, epochs=args.epochs, batch_size=args.batch, verbose=0,
                  callbacks=[*callbacks, ended])  # fmt: skip
        returned = time.perf_counter()
        return Fit(ended.at - t, returned - ended.at, time.process_time() - cpu)

    def swarm_fit(vote_ahead: bool) -> tuple[Fit, list[dict[str, float]], int]:
        model = network()
        callback = SwarmCallback(sync_frequency=steps, min_peers=args.nodes, batch_size=args.batch,
                                 verbose=0, node=member, vote_ahead=vote_ahead)  # fmt: skip
        barrier()
        fit = timed_fit(model, [callback])
        return fit, callback.history, model.count_params()

    totals = {phase: Fit(0.0, 0.0, 0.0) for phase in ("plain", "swarm", "at_sync")}
    history: list[dict[str, float]] = []  # the rounds of the swarm fits that vote ahead
    for _ in range(args.repeats):
        plain = network()
        barrier()
        totals["plain"] += timed_fit(plain, [])
        fit, rounds, params = swarm_fit(vote_ahead=True)
        totals["swarm"] += fit
        history += rounds
        totals["at_sync"] += swarm_fit(vote_ahead=False)[0]
    later = [h for h in history if h["kind"] != "initial"]
    out = Path(os.environ["SWARMLIB_WORKDIR"]) / f"overhead-{index}.json"
    timing = {k: float(np.mean([h.get(k, 0.0) for h in later]))
              for k in ("vote_s", "wait_s", "exchange_s", "seconds")}  # fmt: skip
    initial_s = float(np.mean([h["seconds"] for h in history if h["kind"] == "initial"]))
    phases = {f"{phase}_{k}": v for phase, fit in totals.items() for k, v in asdict(fit).items()}
    out.write_text(json.dumps({**phases, "params": params, "rounds": len(rounds), "steps": steps,
                               "initial_s": initial_s, **timing,
                               "voted_ahead": sum(h["voted_ahead"] for h in later),
                               "later": len(later),
                               "history": history}))  # fmt: skip
    print(f"plain {totals['plain'].s:.1f}s, swarm {totals['swarm'].s:.1f}s (votes at the sync: "
          f"{totals['at_sync'].s:.1f}s), "
          f"{params:,} parameters, {len(rounds)} rounds per fit, {args.repeats} fit(s) each",
          flush=True)  # fmt: skip


def _round_costs(histories: list[list[dict[str, float]]]) -> tuple[list[float], list[float]]:
    """Split each round's cost: the round itself, and the wait for the slowest node.

    Every node runs the same rounds, so the i-th record of each history is the same
    round. The round itself lasts from the last node's start of ``sync`` until the
    last node has loaded the merged model; before that, the others wait for it.
    """
    import numpy as np

    rounds_s, waited_s = [], []
    for records in zip(*histories, strict=True):
        starts = np.array([r["started_at"] for r in records])
        ends = starts + np.array([r["seconds"] for r in records])
        rounds_s.append(float(ends.max() - starts.max()))
        waited_s.append(float(starts.max() - starts.mean()))
    return rounds_s, waited_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2,
                        help="how often each node runs the three phases; times are summed "
                        "over them")  # fmt: skip
    parser.add_argument("--anvil-block-time", type=float, metavar="S",
                        help="run the chain on anvil (started here on 127.0.0.1), mining a "
                        "block every S seconds, instead of the embedded chain")  # fmt: skip
    parser.add_argument("--node", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node:
        node(args)
        return 0
    from swarmlib.launcher import run_script

    workdir = Path(tempfile.mkdtemp(prefix="swarmlib-overhead-"))
    import resource

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    with ExitStack() as stack:
        chain: dict[str, str] = {}
        if args.anvil_block_time:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.chains import ANVIL_KEY, anvil  # the test suite's anvil, ended by pid

            url = stack.enter_context(anvil("--block-time", f"{args.anvil_block_time:g}"))
            chain = {"rpc": url, "admin_key": ANVIL_KEY}
        code = run_script(args.nodes, __file__, ["--node", *sys.argv[1:]], workdir=workdir,
                          quorum_wait=30, **chain)  # fmt: skip
    if code:
        return code
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    chain_cpu_s = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    import numpy as np

    results = [json.loads(p.read_text()) for p in sorted(workdir.glob("overhead-*.json"))]
    plain_s = max(r["plain_s"] for r in results)
    swarm_s = max(r["swarm_s"] for r in results)
    print(f"{results[0]['params']:,} parameters; {args.repeats} x (plain fit, swarm fit, swarm "
          f"fit with votes at the sync) per node, each fit {args.epochs} epochs of "
          f"{results[0]['steps']} batches, "
          f"{results[0]['rounds']} rounds per swarm fit")  # fmt: skip
    if args.anvil_block_time:
        print(f"chain: anvil on 127.0.0.1, a block every {args.anvil_block_time:g}s")
    else:
        print(f"launcher (chain served by py-evm): {chain_cpu_s:.1f}s of CPU in the whole run")
    for i, r in enumerate(results):
        print(f"node {i}: plain {r['plain_s']:.2f}s (+{r['plain_teardown_s']:.2f}s until fit "
              f"returned), swarm {r['swarm_s']:.2f}s (+{r['swarm_teardown_s']:.2f}s; initial sync "
              f"{r['initial_s']:.2f}s); per later "
              f"round {r['seconds']:.2f}s = vote {r['vote_s']:.2f} + agree {r['wait_s']:.2f} + "
              f"exchange {r['exchange_s']:.2f}; {r['voted_ahead']} of {r['later']} "
              "votes cast while batches trained")  # fmt: skip
    rounds_s, waited_s = _round_costs(
        [[h for h in r["history"] if h["kind"] != "initial"] for r in results]
    )
    print(f"per round, mean of {len(rounds_s)}: the round itself (last node's vote -> merged "
          f"model loaded everywhere) {np.mean(rounds_s):.3f}s; before it, a node waited "
          f"{np.mean(waited_s):.3f}s on average for the slowest to end its batches")  # fmt: skip
    plain_cpu = sum(r["plain_cpu_s"] for r in results)
    swarm_cpu = sum(r["swarm_cpu_s"] for r in results)
    print(f"CPU of the nodes' processes, all nodes together: plain fits {plain_cpu:.1f}s, swarm "
          f"fits {swarm_cpu:.1f}s (+{swarm_cpu - plain_cpu:.1f}s; what the swarm phase took "
          "longer beyond that, the nodes waited)")  # fmt: skip
    at_sync_s = max(r["at_sync_s"] for r in results)
    print(f"the same swarm fits with each vote cast at its sync (vote_ahead=False): "
          f"swarm_s={at_sync_s:.2f} ratio={at_sync_s / plain_s:.2f}")  # fmt: skip
    plain_fit = max(r["plain_s"] + r["plain_teardown_s"] for r in results)
    swarm_fit = max(r["swarm_s"] + r["swarm_teardown_s"] for r in results)
    print("whole fits, until fit returned (Keras's teardown included, at random in either phase; "
          "the swarm's nodes end together, so any one node's counts): "
          f"plain_s={plain_fit:.2f} swarm_s={swarm_fit:.2f} "
          f"ratio={swarm_fit / plain_fit:.2f}")  # fmt: skip
    print(f"overhead nodes={args.nodes} sync_frequency={results[0]['steps']} "
          f"plain_s={plain_s:.2f} swarm_s={swarm_s:.2f} ratio={swarm_s / plain_s:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
