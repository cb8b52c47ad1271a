"""A swarm node process for the tests: join, sync a few rounds of numpy weights, report."""

from __future__ import annotations

import logging
import os
import time
from multiprocessing.connection import Connection

import numpy as np


def node_weights(index: int, round_id: int) -> list[np.ndarray]:
    rng = np.random.default_rng([index, round_id])
    return [
        rng.standard_normal((4, 3)).astype(np.float32),
        rng.standard_normal(3).astype(np.float32),
    ]


def _reader(env: dict[str, str]):  # type: ignore[no-untyped-def]
    from swarmlib.ledger import LedgerClient, connect

    return LedgerClient(connect(env["SWARMLIB_RPC"]), env["SWARMLIB_CONTRACT"], None)


def _wait_for_round(env: dict[str, str], round_id: int) -> None:
    reader = _reader(env)
    deadline = time.monotonic() + 120
    while not reader.round(env["SWARMLIB_SESSION"], round_id).closed:
        if time.monotonic() > deadline:
            raise TimeoutError(f"round {round_id} did not close within 120 s")
        time.sleep(0.1)


def _send_wrong_merges() -> None:
    from swarmlib.transport.exchange import ShardedExchange

    honest = ShardedExchange._merge_owned

    def wrong(self, st, own, weight, merge):  # type: ignore[no-untyped-def]
        honest(self, st, own, weight, merge)
        for k in st.owned:
            a, b = st.bounds[k]
            st.out[a:b] += 1

    ShardedExchange._merge_owned = wrong  # type: ignore[method-assign]


def run_node(env: dict[str, str], rounds: int, n_samples: int, conn: Connection) -> None:
    from swarmlib.node import SwarmNode

    logging.basicConfig(
        level=logging.WARNING, format=f"[node-{env['SWARMLIB_NODE_INDEX']}] %(message)s"
    )
    os.environ.update(env)
    index = int(env["SWARMLIB_NODE_INDEX"])
    if "TEST_WRONG_OWNER" in env:  # a malicious node: every shard it merges is off by one
        _send_wrong_merges()
    if "TEST_START_AFTER_ROUND" in env:  # a node that starts late: once the swarm is past it
        _wait_for_round(env, int(env["TEST_START_AFTER_ROUND"]))
    from swarmlib.errors import PrivacyBudgetSpent, SwarmEnded

    results = []
    ahead = "TEST_VOTE_AHEAD" in env  # vote, "train" for that many seconds, then sync
    agreed_early = []  # per round voted ahead: was it agreed on chain before sync()?
    try:
        with SwarmNode.from_env() as node:
            for r in range(int(env.get("TEST_ROUNDS", rounds))):
                if ahead and r > 0:  # round 0 lines the nodes up
                    node.vote_ahead(n_samples)
                    time.sleep(float(env["TEST_VOTE_AHEAD"]))
                    state = _reader(env).round(env["SWARMLIB_SESSION"], node.round)
                    agreed_early.append(state.closed)
                kind = "initial" if r == 0 and "TEST_INITIAL" in env else "sync"
                try:
                    merged = node.sync(node_weights(index, r), n_samples, kind=kind).weights
                except SwarmEnded:  # the others finished and left the session
                    conn.send(("ended", results))
                    return
                except PrivacyBudgetSpent as e:  # the session's target_epsilon is reached
                    conn.send(("budget", results, e.epsilon, node.privacy_spent()))
                    return
                results.append((node.round - 1, node.last_hash.hex(), [m.tolist() for m in merged]))
                time.sleep(float(env.get("TEST_PACE", "0")))  # "training" between syncs
        conn.send(("ok", results) if not ahead else ("ok", results, agreed_early))
    except Exception as e:  # reported to the test
        conn.send(("error", f"{type(e).__name__}: {e}"))
