"""Nodes killed with SIGKILL and restarted: the swarm never stalls (short benchmarks/churn.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "churn.py"


def test_a_swarm_of_five_with_kills_and_restarts_loses_no_round_and_agrees() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "20", "--pace", "0.4", "--kill-gap", "5",
         "--seed", "3"],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    last = done.stdout.strip().splitlines()[-1]
    assert last.endswith("hung=0 lost_rounds=0 mismatched=0"), done.stdout[-3000:]
    figures = dict(part.split("=") for part in last.split()[1:])
    assert int(figures["kills"]) >= 2 and int(figures["restarts"]) >= 1, last
    assert done.returncode == 0
