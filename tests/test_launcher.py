"""run_nodes, the notebook entry point: functions defined in a notebook cell, run as swarm nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarmlib import errors
from swarmlib.launcher import LocalSwarm, run_nodes
from swarmlib.ledger import connect
from tests.chains import ANVIL_KEY, anvil

CELL = """
import os

import numpy as np

SCALE = 1.0  # a notebook global the function uses

def train():
    from swarmlib import SwarmNode

    index = int(os.environ["SWARMLIB_NODE_INDEX"])
    if index == int(os.environ.get("TEST_FAIL_NODE", "-1")):
        raise ValueError(f"no data for node {index}")
    with SwarmNode.from_env() as node:
        merged = node.sync([np.full(4, SCALE * index, np.float32)], 10 * (index + 1)).weights
    return index, merged[0]
"""


def _notebook_function() -> Any:
    """``train`` as a notebook defines it: in ``__main__``, so it travels by value."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(CELL, namespace)
    return namespace["train"]


@pytest.mark.slow
def test_a_function_from_a_notebook_runs_as_swarm_nodes_and_returns_results(
    tmp_path: Path,
) -> None:
    results = run_nodes(_notebook_function(), 2, workdir=tmp_path, timeout=240)
    assert [index for index, _ in results] == [0, 1]
    for _, merged in results:  # the samples-weighted mean of 0 (10 samples) and 1 (20)
        np.testing.assert_allclose(merged, np.full(4, 2 / 3, np.float32), rtol=1e-6)


@pytest.mark.slow
def test_a_failing_node_function_raises_with_its_error(tmp_path: Path) -> None:
    with pytest.raises(errors.NodeProcessFailed, match="ValueError: no data for node 1"):
        run_nodes(_notebook_function(), 2, workdir=tmp_path, timeout=240,
                  extra_env={"TEST_FAIL_NODE": "1"})  # fmt: skip


@pytest.mark.slow
def test_more_nodes_than_the_dev_chain_has_accounts_are_funded_and_merge(tmp_path: Path) -> None:
    # the dev chain funds ten accounts (an admin and nine nodes); the tenth node onwards gets a
    # fresh key paid for by the admin, so the paper's 32-node scenario can run on one machine
    n = 12
    results = run_nodes(_notebook_function(), n, workdir=tmp_path, timeout=400)
    weights = np.arange(1, n + 1) * 10.0
    expected = float(np.arange(n) @ weights / weights.sum())
    assert [index for index, _ in results] == list(range(n))
    for _, merged in results:
        np.testing.assert_allclose(merged, np.full(4, expected, np.float32), rtol=1e-6)
    keys = sorted(tmp_path.glob("node-*/eth.key"))
    assert len({k.read_text() for k in keys}) == n
    assert all(k.stat().st_mode & 0o077 == 0 for k in keys)


@pytest.mark.slow
def test_a_local_swarm_runs_on_anvil_instead_of_the_embedded_chain(tmp_path: Path) -> None:
    with anvil() as url:
        with pytest.raises(errors.ConfigurationError, match="pass admin_key"):
            LocalSwarm(2, tmp_path / "no-key", rpc=url).start()
        results = run_nodes(_notebook_function(), 2, workdir=tmp_path, timeout=240, rpc=url,
                            admin_key=ANVIL_KEY)  # fmt: skip
        for _, merged in results:
            np.testing.assert_allclose(merged, np.full(4, 2 / 3, np.float32), rtol=1e-6)
        # deploy, session, funding, members, registrations and the votes went to anvil
        assert connect(url).eth.block_number >= 10
