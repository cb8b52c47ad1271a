"""Run the sharded exchange among N real local processes (for tests, benchmarks and the demo).

Each node is a separate process (``multiprocessing`` with the *spawn* start
method) with its own ZeroMQ context and CURVE keys, listening on 127.0.0.1. Node
*i* makes its own vector from a seed (:func:`node_vector`), so no model data
passes through the parent; the parent only hands out the participant list
(endpoints and public keys) and collects each node's report, over
``multiprocessing`` pipes between this program's own processes (peers never
exchange anything but the exchange's own frames). Every process is ended by its
pid when the run finishes, also on failure.

This is a developer tool: it exercises the transport alone. The launcher that
runs whole training scripts is ``swarmlib run``.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from swarmlib.errors import ConfigurationError, RoundFailed, TransportError

__all__ = ["NodeReport", "RoundOutcome", "node_vector", "run_local_exchange"]

logger = logging.getLogger(__name__)


def node_vector(seed: int, node: int, round_id: int, params: int, dtype: str) -> np.ndarray:
    """The deterministic vector node ``node`` contributes to round ``round_id``."""
    rng = np.random.default_rng([seed, node])
    base = rng.standard_normal(params, dtype=np.float32).astype(dtype, copy=False)
    out: np.ndarray = base + np.asarray(round_id, dtype=dtype)
    return out


@dataclass
class RoundOutcome:
    """What one node saw of one round."""

    round_id: int
    sha256: str | None = None
    seconds: float = 0.0
    bytes_sent: int = 0
    dropped: int = 0
    error: str | None = None
    error_type: str | None = None
    culprits: tuple[str, ...] = ()
    attempts: int = 1
    phases: dict[str, float] = field(default_factory=dict)
    participants: tuple[str, ...] = ()
    vector: np.ndarray | None = None


@dataclass
class NodeReport:
    """Everything one node process reports back."""

    name: str
    rounds: list[RoundOutcome] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    exit_code: int | None = None


def _worker(
    index: int,
    conn: Connection,
    barrier: Any,
    params: int,
    rounds: int,
    options: dict[str, Any],
) -> None:
    from swarmlib.merge import get_strategy
    from swarmlib.transport import Peer, ShardedExchange

    logging.basicConfig(level=options["log_level"], format=f"[node-{index}] %(message)s")
    name = f"node-{index}"
    report = NodeReport(name)
    with ShardedExchange(
        plaintext=options["plaintext"], timeout=options["timeout"], linger_ms=500, name=name
    ) as ex:
        conn.send((name, ex.endpoint, ex.public_key))
        peers = [Peer(n, e, k) for n, e, k in conn.recv()]
        weight = float(options["weights"][index])
        merge = get_strategy(options["strategy"]).sharded()
        merged = None  # reused round after round, as a training loop would
        live = list(peers)  # a peer dropped after a timeout stays dropped
        for r in range(rounds):
            vec = node_vector(options["seed"], index, r, params, options["dtype"])
            try:  # start each round together, so its time is the exchange's alone
                if options["kill"] is None:
                    barrier.wait(timeout=options["timeout"] + 30)
            except threading.BrokenBarrierError:
                report.rounds.append(
                    RoundOutcome(r, error="other nodes stopped", error_type="Stop")
                )
                break
            if options["kill"] == (index, r):
                os.kill(os.getpid(), signal.SIGKILL)
            outcome, res, live = _one_round(ex, live, vec, r, weight, merge, merged, options)
            report.rounds.append(outcome)
            if res is None:
                break
            merged = res.vector
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(report)


def _introduce(conns: list[Connection]) -> None:
    """Collect every node's (name, endpoint, key) and hand each the whole participant list."""
    peers = []
    for i, c in enumerate(conns):
        if not c.poll(120):
            raise TransportError(f"node-{i} did not start within 120s")
        peers.append(c.recv())
    for c in conns:
        c.send(peers)


def _report(
    i: int, p: Any, c: Connection, deadline: float, say: Callable[[str], None]
) -> NodeReport:
    """Node ``i``'s report, or an empty one with its exit code if it died."""
    report = None
    while report is None and time.monotonic() < deadline:
        if c.poll(0.2):
            try:
                report = c.recv()
            except EOFError:
                break
        elif not p.is_alive():
            break
    if report is None:
        p.join(5)
        report = NodeReport(f"node-{i}", exit_code=p.exitcode)
    say(f"node-{i} reported {len(report.rounds)} round(s)")
    return report


def _one_round(
    ex: Any,
    live: list[Any],
    vec: np.ndarray,
    r: int,
    weight: float,
    merge: Any,
    merged: np.ndarray | None,
    options: dict[str, Any],
) -> tuple[RoundOutcome, Any, list[Any]]:
    """Round ``r`` (retried without culprits when asked); its outcome, result, live peers."""
    started = time.perf_counter()
    outcome = RoundOutcome(r)
    attempt, res = 0, None
    while True:
        try:
            res = ex.run_round(live, vec, round_id=r, attempt=attempt, weight=weight, merge=merge,
                               out=None if options["return_vectors"] else merged,
                               secure=options["secure"],
                               replicas=options["replicas"])  # fmt: skip
            break
        except TransportError as e:
            outcome.error, outcome.error_type = str(e), type(e).__name__
            culprits = e.culprits if isinstance(e, RoundFailed) else ()
            outcome.culprits += tuple(culprits)
            remaining = [p for p in live if p.name not in culprits]
            if ex.name in culprits:  # the others go on without this node
                outcome.error = f"excluded by the other participants: {e}"
                break
            if not options["retry"] or not culprits or len(remaining) == len(live):
                break
            live, attempt = remaining, attempt + 1
    outcome.seconds = time.perf_counter() - started
    outcome.attempts = attempt + 1
    if res is None:
        return outcome, None, live
    outcome.participants = tuple(p.name for p in live)
    outcome.sha256 = res.sha256
    outcome.bytes_sent = res.stats.bytes_sent
    outcome.dropped = res.stats.dropped
    s = res.stats
    outcome.phases = {"keys": s.keys_s, "scatter": s.scatter_s, "merge": s.merge_s,
                      "gather": s.gather_s, "total": s.total_s}  # fmt: skip
    if options["return_vectors"]:
        outcome.vector = res.vector
    return outcome, res, live


def run_local_exchange(
    nodes: int,
    params: int,
    *,
    rounds: int = 3,
    strategy: str = "mean",
    plaintext: bool = False,
    timeout: float = 30.0,
    dtype: str = "float32",
    seed: int = 0,
    weights: list[float] | None = None,
    kill: tuple[int, int] | None = None,
    retry: bool = False,
    return_vectors: bool = False,
    progress: Callable[[str], None] | None = None,
    log_level: int = logging.WARNING,
    secure: bool = False,
    replicas: int = 1,
) -> list[NodeReport]:
    """Start ``nodes`` processes and let them exchange ``rounds`` rounds.

    Args:
        nodes: Number of participants (>= 1).
        params: Number of parameters of the (random) model.
        rounds: Rounds to run. Defaults to 3.
        strategy: Merge strategy name. Defaults to ``"mean"``.
        plaintext: Unencrypted shards (benchmarks only). Defaults to ``False``.
        timeout: The exchange timeout per node, seconds. Defaults to 30.
        dtype: Parameter dtype. Defaults to ``"float32"``.
        seed: Seed of :func:`node_vector`. Defaults to 0.
        weights: Merge weight per node. Defaults to all 1.
        kill: ``(node, round)``: that node SIGKILLs itself at the start of that
            round. Defaults to ``None``.
        retry: After a failed attempt, retry the round without the culprits (as
            the middleware does). Defaults to ``False``: stop at the first failure.
        return_vectors: Send each merged vector back (small models only).
        progress: Called with a line of text as nodes report. Defaults to none.
        log_level: Logging level inside the nodes. Defaults to WARNING.
        secure: Secure aggregation (``strategy`` must be ``"mean"``). Defaults to ``False``.
        replicas: Owners per shard (:mod:`swarmlib.transport.replicas`). Defaults to 1.

    Returns:
        One report per node, in node order; a killed node's report is empty
        with its exit code set.
    """
    import multiprocessing as mp

    if nodes < 1 or params < 1 or rounds < 1:
        raise ConfigurationError("`nodes`, `params` and `rounds` must be positive.")
    weights = weights or [1.0] * nodes
    options = {"plaintext": plaintext, "timeout": timeout, "strategy": strategy, "dtype": dtype,
               "seed": seed, "weights": weights, "kill": kill, "retry": retry,
               "return_vectors": return_vectors, "log_level": log_level,
               "secure": secure, "replicas": replicas}  # fmt: skip
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(nodes)
    procs: list[Any] = []
    conns: list[Connection] = []
    say = progress or (lambda line: None)
    try:
        for i in range(nodes):
            parent, child = ctx.Pipe()
            args = (i, child, barrier, params, rounds, options)
            procs.append(ctx.Process(target=_worker, args=args, name=f"swarmlib-node-{i}",
                                     daemon=True))  # fmt: skip
            procs[-1].start()
            conns.append(parent)
        say(f"started {nodes} node processes (pids {', '.join(str(p.pid) for p in procs)})")
        _introduce(conns)
        deadline = time.monotonic() + rounds * (timeout + 60) + 120
        return [
            _report(i, p, c, deadline, say)
            for i, (p, c) in enumerate(zip(procs, conns, strict=True))
        ]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(10)
