"""Churn: a swarm of 5 where a minority of nodes is killed (SIGKILL) and restarted, for R rounds.

Five `SwarmNode` processes (numpy weights, the embedded chain served on
127.0.0.1 by this process, dev SVIDs, ``min_peers=3``) sync round after round.
On a schedule drawn from ``--seed``, one or two of them are killed with
``kill -9`` (no ``leave()``: as a crash, a reboot or a cut cable) and restarted
after a few seconds with the same keys; they come back as late joiners. At the
end the audit on chain says, per round, whether every participant loaded the
same merged model. The last line is::

    churn nodes=5 rounds=R kills=K restarts=S hung=H lost_rounds=L mismatched=M

hung: a node alive with no new round for longer than its documented bound (the
round timeout plus two exchange timeouts) and no error; lost_rounds: rounds of
the R that no node completed; mismatched: rounds whose participants recorded
different merged hashes. Goal: H = L = M = 0.

    python benchmarks/churn.py [--rounds 100] [--seed 0] [--pace 0.05] [--kill-gap 12]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

NODES, MIN_PEERS = 5, 3
QUORUM_WAIT_S, ROUND_TIMEOUT_S, EXCHANGE_TIMEOUT_S = 3, 30, 5
HUNG_S = ROUND_TIMEOUT_S + 2 * EXCHANGE_TIMEOUT_S
PARAMS = 10_000


def _node(workdir: Path, rounds: int, pace: float) -> int:
    """One node: sync until round ``rounds``; log every round it completes."""
    import numpy as np

    from swarmlib import SwarmEnded, SwarmNode

    index = int(os.environ["SWARMLIB_NODE_INDEX"])
    rng = np.random.default_rng([index, os.getpid()])
    log_path = workdir / f"node-{index}" / "rounds.jsonl"
    with SwarmNode.from_env(timeout=EXCHANGE_TIMEOUT_S) as node, open(log_path, "a") as log:
        while node.round < rounds:
            try:
                result = node.sync([rng.standard_normal(PARAMS).astype(np.float32)], 100)
            except SwarmEnded:  # the others are done
                return 0
            log.write(json.dumps({"round": result.round, "sha256": node.last_hash.hex(),
                                  "pid": os.getpid()}) + "\n")  # fmt: skip
            log.flush()
            time.sleep(pace)  # "training"
    return 0


def _done(workdir: Path, i: int) -> list[dict[str, object]]:
    path = workdir / f"node-{i}" / "rounds.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Swarm:
    """The node processes: start, kill, restart, and watch them for progress."""

    def __init__(self, workdir: Path, envs: list[dict[str, str]], rounds: int, pace: float):
        self.workdir, self.envs, self.rounds, self.pace = workdir, envs, rounds, pace
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(envs)
        self.progress = [(0, time.monotonic())] * len(envs)
        self.hung: set[int] = set()
        self.failed: list[str] = []
        self.logs = [open(workdir / f"node-{i}" / "node.log", "ab") for i in range(len(envs))]  # noqa: SIM115

    def start(self, i: int) -> None:
        cmd = [sys.executable, __file__, "--node", str(self.workdir), "--rounds", str(self.rounds),
               "--pace", str(self.pace)]  # fmt: skip
        self.procs[i] = subprocess.Popen(cmd, env={**os.environ, **self.envs[i]},
                                         stdout=self.logs[i], stderr=subprocess.STDOUT)  # fmt: skip
        self.progress[i] = (len(_done(self.workdir, i)), time.monotonic())

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        self.procs[i] = None

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def watch(self) -> None:
        """Note hung nodes, and nodes that exited with an error."""
        for i, proc in enumerate(self.procs):
            if proc is None:
                continue
            if proc.poll() not in (None, 0):
                self.failed.append(f"node-{i} exited with {proc.returncode}")
                self.procs[i] = None
                continue
            done = len(_done(self.workdir, i))
            if done != self.progress[i][0]:
                self.progress[i] = (done, time.monotonic())
            elif proc.poll() is None and time.monotonic() - self.progress[i][1] > HUNG_S:
                self.hung.add(i)

    def finished(self) -> bool:
        return all(p is None or p.poll() is not None for p in self.procs)

    def close(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)
        for log in self.logs:
            log.close()


def _run(rounds: int, seed: int, pace: float, gap: float) -> int:
    from swarmlib.launcher import LocalSwarm
    from swarmlib.ledger import LedgerClient, connect
    from swarmlib.ledger.audit import audit

    rnd = random.Random(seed)
    with LocalSwarm(NODES, min_peers=MIN_PEERS, quorum_wait=QUORUM_WAIT_S,
                    round_timeout=ROUND_TIMEOUT_S) as local:  # fmt: skip
        assert local.workdir is not None
        swarm = _Swarm(local.workdir, local.envs, rounds, pace)
        kills = restarts = 0
        pending: list[tuple[float, int]] = []  # (when, node) restarts
        next_kill = time.monotonic() + rnd.uniform(2, gap)
        try:
            for i in range(NODES):
                swarm.start(i)
            deadline = time.monotonic() + rounds * 3 + 300
            while not swarm.finished() and time.monotonic() < deadline:
                time.sleep(0.2)
                swarm.watch()
                now = time.monotonic()
                for when, i in [p for p in pending if p[0] <= now]:
                    pending.remove((when, i))
                    swarm.start(i)
                    restarts += 1
                alive = swarm.alive()
                best = max(len(_done(local.workdir, i)) for i in range(NODES))
                if now >= next_kill and best < rounds - 5 and len(alive) == NODES:
                    victims = rnd.sample(alive, rnd.choice([1, 2]))  # a minority: 3 stay
                    for i in victims:
                        swarm.kill(i)
                        pending.append((now + rnd.uniform(2, 8), i))
                    kills += len(victims)
                    print(f"churn: round {best}: killed {victims}", flush=True)
                    next_kill = now + rnd.uniform(gap / 2, gap * 1.5)
        finally:
            swarm.close()
        # the audit reads every vote's event since block 0: slow on the embedded chain
        reader = LedgerClient(connect(local.url, timeout=600), local.admin.address, rpc=local.url)
        rows = audit(reader, local.session)
        completed = {int(r["round"]) for i in range(NODES) for r in _done(local.workdir, i)}  # type: ignore[call-overload]
        lost = len(set(range(rounds)) - completed)
        hashes: dict[int, set[str]] = {}
        for i in range(NODES):
            for r in _done(local.workdir, i):
                hashes.setdefault(int(r["round"]), set()).add(str(r["sha256"]))  # type: ignore[call-overload]
        # on chain (each participant's recorded hash) and in the nodes' own logs
        mismatched = max(sum(1 for row in rows if row.status == "MISMATCH"),
                         sum(1 for h in hashes.values() if len(h) > 1))  # fmt: skip
        for line in swarm.failed:
            print(f"churn: {line}", flush=True)
        print(f"churn: {len(completed)} rounds completed, {len(rows)} agreed attempts on chain "
              f"({sum(1 for r in rows if r.status == 'retried')} retried)", flush=True)  # fmt: skip
        print(f"churn nodes={NODES} rounds={rounds} kills={kills} restarts={restarts} "
              f"hung={len(swarm.hung)} lost_rounds={lost} mismatched={mismatched}")  # fmt: skip
        return 0 if not (swarm.hung or lost or mismatched) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pace", type=float, default=0.05, help="seconds of 'training' a round")
    parser.add_argument("--kill-gap", type=float, default=12.0, help="mean seconds between kills")
    parser.add_argument("--node", help=argparse.SUPPRESS)  # a node process: its workdir
    args = parser.parse_args(argv)
    if args.node:
        return _node(Path(args.node), args.rounds, args.pace)
    return _run(args.rounds, args.seed, args.pace, args.kill_gap)


if __name__ == "__main__":
    sys.exit(main())
