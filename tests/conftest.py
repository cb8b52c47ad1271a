"""Shared test configuration.

Hypothesis explores new examples on every local run; under CI (``CI`` set) it
runs a fixed, derandomized set so that a submission's result does not depend on
luck. Run ``HYPOTHESIS_PROFILE=thorough pytest tests/test_merge.py`` to search harder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from swarmlib import errors
from swarmlib.ledger.server import ChainServer
from swarmlib.merge import Mean
from swarmlib.transport import Peer, ShardedExchange
from tests.ledger_swarm import Swarm

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=50, derandomize=True, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture
def swarm() -> Iterator[Swarm]:
    """A fresh SwarmLedger on the embedded chain with an admin and three members."""
    yield Swarm()


@contextmanager
def exchanges(n: int) -> Iterator[list[ShardedExchange]]:
    """``n`` exchanges in this process on 127.0.0.1 (5 s timeout), closed afterwards."""
    made = [ShardedExchange(timeout=5, linger_ms=0, name=f"n{i}") for i in range(n)]
    try:
        yield made
    finally:
        for ex in made:
            ex.close()


@pytest.fixture
def nodes() -> Iterator[list[ShardedExchange]]:
    """Three exchanges in this process on 127.0.0.1 (5 s timeout), closed afterwards."""
    with exchanges(3) as made:
        yield made


@pytest.fixture
def chain() -> Iterator[ChainServer]:
    """The dev chain served on 127.0.0.1 (a free port), stopped after the test."""
    server = ChainServer(port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run_threads(work: Callable[[int], None], n: int, timeout: float = 60) -> None:
    """Run ``work(0)`` ... ``work(n - 1)`` in threads at once and wait for all of them."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


def retrying_round(
    exchanges: list[ShardedExchange], vectors: list[np.ndarray], **kw: Any
) -> list[Any]:
    """One round among threads, each retrying without culprits as the middleware does.

    Each entry is that node's :class:`RoundResult`, or the error it stopped with
    (named itself, forfeited, or three attempts spent). ``kw`` goes to ``run_round``
    (``merge`` defaults to the mean).
    """
    peers = [Peer(e.name, e.endpoint, e.public_key) for e in exchanges]
    kw.setdefault("merge", Mean().sharded())
    results: list[Any] = [None] * len(exchanges)

    def run(i: int) -> None:
        live, attempt = list(peers), 0
        while True:
            try:
                results[i] = exchanges[i].run_round(live, vectors[i], round_id=0,
                                                    attempt=attempt, **kw)  # fmt: skip
                return
            except errors.RoundForfeited as e:
                results[i] = e
                return
            except errors.RoundFailed as e:
                if exchanges[i].name in e.culprits or attempt >= 2:
                    results[i] = e
                    return
                live = [p for p in live if p.name not in e.culprits]
                attempt += 1
            except Exception as e:  # reported to the test
                results[i] = e
                return

    run_threads(run, len(exchanges))
    return results
