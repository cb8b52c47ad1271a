"""Shared test configuration.

Hypothesis explores new examples on every local run; under CI (``CI`` set) it
runs a fixed, derandomized set so that a submission's result does not depend on
luck. Run ``HYPOTHESIS_PROFILE=thorough pytest tests/test_merge.py`` to search harder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from swarmlib.ledger.server import ChainServer
from swarmlib.transport import ShardedExchange
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


@pytest.fixture
def nodes() -> Iterator[list[ShardedExchange]]:
    """Three exchanges in this process on 127.0.0.1 (5 s timeout), closed afterwards."""
    made = [ShardedExchange(timeout=5, linger_ms=0, name=f"n{i}") for i in range(3)]
    try:
        yield made
    finally:
        for ex in made:
            ex.close()


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
