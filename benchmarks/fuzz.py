"""Fuzz a live swarm: 3 node processes sync while a fourth floods one node with malformed frames.

The nodes are real `SwarmNode` processes (numpy weights, the embedded chain served
on 127.0.0.1 by this process, dev SVIDs), syncing round after round. The attacker
process holds no key: it sends malformed frames to node 0's data port (plain
ZeroMQ, reachable by anyone on the network) and tries CURVE handshakes on its
control and model-fetch ports with keys of its own. Kinds of case: random bytes,
bit flips of well-formed headers, huge and negative integers, empty and non-hex
nonces, wrong dtypes and lengths, truncated and padded payloads, forged shards for
the current rounds, wrong frame counts, oversized headers.

It reports, and prints as its last line::

    fuzz cases=N crashed=C hung=H mismatched=M

crashed: node processes that died; hung: a node with no new round for 30 s while
the others went on; mismatched: rounds whose merged hash differs among nodes.

    python benchmarks/fuzz.py [--cases 10000] [--seconds 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HUNG_S = 30.0
PARAMS = 20_000  # values per node model: rounds stay short, so many of them see the attack


def _node(workdir: Path) -> int:
    """One swarm node: sync until the round named in ``stop`` is done; log each round's hash."""
    import numpy as np

    from swarmlib import SwarmEnded, SwarmNode

    index = int(os.environ["SWARMLIB_NODE_INDEX"])
    folder = workdir / f"node-{index}"
    rng = np.random.default_rng(index)
    with SwarmNode.from_env() as node, open(folder / "rounds.jsonl", "a") as log:
        (folder / "endpoints.json").write_text(json.dumps(node.endpoints))
        while True:
            stop = workdir / "stop"
            if stop.exists() and node.round > int(stop.read_text()):
                return 0
            weights = [rng.standard_normal(PARAMS).astype(np.float32)]
            try:
                result = node.sync(weights, 100)
            except SwarmEnded:  # the others stopped first
                return 0
            log.write(json.dumps({"round": result.round, "sha256": node.last_hash.hex(),
                                  "drops": result.stats.drops}) + "\n")  # fmt: skip
            log.flush()


def _cases(count: int, seed: int, current: Callable[[], int]) -> Iterator[list[bytes]]:
    """Malformed data-port messages, ``count`` of them, reproducible from ``seed``.

    Most name the round the target is in (``current()``) or the next, so that they
    pass the round check and reach the sender, size and authentication checks.
    """
    rnd = random.Random(seed)
    good = {"v": 1, "k": "contrib", "r": 0, "a": 0, "s": 1, "t": 0, "i": 0, "dt": "<f4",
            "n": PARAMS // 3 + 1, "w": 100.0, "nonce": "00" * 12}  # fmt: skip
    odd = [10**400 // 10**100, -1, 2**64, "", "zz" * 12, "0" * 23, None, [], {}, True, 1e308,
           "<f8", "|O", "<i4", "\u2603"]  # fmt: skip
    for _ in range(count):
        kind = rnd.randrange(8)
        r = current() + rnd.choice([0, 0, 0, 1, -1, 1000])
        header = dict(good, r=r, k=rnd.choice(["contrib", "merged"]))
        payload = bytes(4 * header["n"] + 16)
        if kind == 0:
            frames = [rnd.randbytes(rnd.randrange(1, 300)), rnd.randbytes(rnd.randrange(64))]
        elif kind == 1:  # one bit of a well-formed header flipped
            raw = bytearray(json.dumps(header).encode())
            raw[rnd.randrange(len(raw))] ^= 1 << rnd.randrange(8)
            frames = [bytes(raw), payload]
        elif kind == 2:  # a field set to an odd value
            header[rnd.choice(sorted(header))] = rnd.choice(odd)
            frames = [json.dumps(header).encode(), payload]
        elif kind == 3:  # truncated or padded
            frames = [json.dumps(header).encode(), payload[: rnd.randrange(len(payload) + 64)]]
        elif kind == 4:  # a forged shard of the right size: authentication fails
            frames = [json.dumps(header).encode(), rnd.randbytes(len(payload))]
        elif kind == 5:  # wrong frame counts
            frames = [json.dumps(header).encode()] * rnd.choice([1, 3, 5])
        elif kind == 6:  # an oversized header
            frames = [b'{"v":1,"k":"contrib","pad":"' + b"x" * 3000 + b'"}', payload]
        else:  # a field dropped, or one added
            if rnd.random() < 0.5:
                header.pop(rnd.choice(sorted(header)))
            else:
                header["extra"] = rnd.choice(odd)
            frames = [json.dumps(header).encode(), payload]
        yield frames


def _attack(workdir: Path, cases: int, seed: int, seconds: float) -> int:
    """Send the cases to node 0 over ``seconds``; write how many went out to ``attack.json``."""
    import zmq

    latest = {"round": 0, "read": 0.0}

    def current() -> int:  # the round node 0 is in, read from its log every 0.2 s
        if time.monotonic() - latest["read"] > 0.2:
            latest["read"] = time.monotonic()
            latest["round"] = len(_rounds(workdir, 0))
        return int(latest["round"])

    endpoints = json.loads((workdir / "node-0" / "endpoints.json").read_text())
    ctx = zmq.Context()
    data = ctx.socket(zmq.PUSH)
    data.sndhwm = 100
    data.connect(endpoints["data"])
    sent, started = 0, time.monotonic()
    for frames in _cases(cases, seed, current):
        while True:
            try:
                data.send_multipart(frames, flags=zmq.NOBLOCK)
                break
            except zmq.Again:  # the node's queue is full: it is busy dropping; wait a little
                time.sleep(0.01)
        sent += 1
        ahead = started + seconds * sent / cases - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)  # spread the cases over many rounds
    handshakes = 0
    for name in ("control", "fetch"):  # strangers' CURVE handshakes: refused by ZAP
        for _ in range(50):
            public, secret = zmq.curve_keypair()
            sock = ctx.socket(zmq.DEALER if name == "fetch" else zmq.PUSH)
            sock.linger = 0
            sock.curve_publickey, sock.curve_secretkey = public, secret
            sock.curve_serverkey = public  # not the node's key either
            sock.connect(endpoints[name])
            with contextlib.suppress(zmq.Again):
                sock.send(b'{"v":1,"k":"fetch","r":0,"a":0,"s":0,"t":0,"h":"00"}', zmq.NOBLOCK)
            sock.close()
            handshakes += 1
    data.close(linger=5000)
    ctx.term()
    (workdir / "attack.json").write_text(json.dumps({"data": sent, "handshakes": handshakes}))
    return 0


def _rounds(workdir: Path, i: int) -> list[dict[str, object]]:
    path = workdir / f"node-{i}" / "rounds.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0, help="spread the cases over")
    parser.add_argument("--node", help=argparse.SUPPRESS)  # a node process: its workdir
    parser.add_argument("--attack", help=argparse.SUPPRESS)  # the attacker: the workdir
    args = parser.parse_args(argv)
    if args.node:
        return _node(Path(args.node))
    if args.attack:
        return _attack(Path(args.attack), args.cases, args.seed, args.seconds)
    return _run(args.cases, args.seed, args.seconds)


def _run(cases: int, seed: int, seconds: float) -> int:
    from swarmlib.launcher import LocalSwarm

    with LocalSwarm(3, min_peers=3, quorum_wait=5) as swarm:
        workdir = swarm.workdir
        assert workdir is not None
        me = [sys.executable, __file__]
        logs = [open(workdir / f"node-{i}" / "node.log", "wb") for i in range(3)]  # noqa: SIM115
        nodes = [subprocess.Popen([*me, "--node", str(workdir)], env={**os.environ, **env},
                                  stdout=log, stderr=subprocess.STDOUT)
                 for env, log in zip(swarm.envs, logs, strict=True)]  # fmt: skip
        attacker: subprocess.Popen[bytes] | None = None
        hung: set[int] = set()
        try:
            while not (workdir / "node-0" / "endpoints.json").exists():
                time.sleep(0.1)
                if any(p.poll() is not None for p in nodes):
                    break
            print(f"fuzz: 3 nodes up in {workdir}; sending {cases} malformed frames", flush=True)
            flags = ["--attack", str(workdir), "--cases", str(cases), "--seed", str(seed),
                     "--seconds", str(seconds)]  # fmt: skip
            attacker = subprocess.Popen([*me, *flags])
            last = [(0, time.monotonic())] * 3
            while attacker.poll() is None and all(p.poll() is None for p in nodes):
                time.sleep(0.5)
                for i in range(3):
                    done = len(_rounds(workdir, i))
                    if done != last[i][0]:
                        last[i] = (done, time.monotonic())
                    elif time.monotonic() - last[i][1] > HUNG_S:
                        hung.add(i)
                print(f"fuzz: rounds done {[n for n, _ in last]}", flush=True)
            stop_after = max(len(_rounds(workdir, i)) for i in range(3)) + 2
            (workdir / "stop").write_text(str(stop_after))
            for p in nodes:
                try:
                    p.wait(HUNG_S + 60)
                except subprocess.TimeoutExpired:
                    hung.add(nodes.index(p))
        finally:
            for p in [*nodes, *([attacker] if attacker else [])]:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
            for log in logs:
                log.close()
        return _report(workdir, nodes, hung, cases)


def _report(workdir: Path, nodes: list[subprocess.Popen[bytes]], hung: set[int], cases: int) -> int:
    crashed = [i for i, p in enumerate(nodes) if p.returncode not in (0, None, -9)]
    for i in crashed:
        err = (workdir / f"node-{i}" / "node.log").read_text(errors="replace")
        print(f"fuzz: node-{i} exited with {nodes[i].returncode}:\n{err[-2000:]}", flush=True)
    by_round: dict[int, set[str]] = {}
    drops: dict[str, int] = {}
    for i in range(3):
        for row in _rounds(workdir, i):
            by_round.setdefault(int(row["round"]), set()).add(str(row["sha256"]))  # type: ignore[call-overload]
            if i == 0:
                for k, v in dict(row["drops"]).items():  # type: ignore[call-overload]
                    drops[k] = drops.get(k, 0) + int(v)
    mismatched = sum(1 for hashes in by_round.values() if len(hashes) > 1)
    report = workdir / "attack.json"
    attack = json.loads(report.read_text()) if report.exists() else {}
    sent = int(attack.get("data", 0)) + int(attack.get("handshakes", 0))
    print(f"fuzz: {len(by_round)} rounds merged; node-0 dropped {sum(drops.values())} messages "
          f"{dict(sorted(drops.items()))}; {attack.get('handshakes', 0)} stranger handshakes "
          "refused", flush=True)  # fmt: skip
    print(f"fuzz cases={sent} crashed={len(crashed)} hung={len(hung)} mismatched={mismatched}")
    return 0 if not crashed and not hung and not mismatched and sent >= cases else 1


if __name__ == "__main__":
    sys.exit(main())
