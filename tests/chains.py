"""Chains for the tests: anvil and `swarmlib chain serve`, started on 127.0.0.1, ended by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
ANVIL = ROOT / ".npm" / "node_modules" / ".bin" / "anvil"
#: anvil's first test account (public, funded with 10,000 ether on every anvil)
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_rpc(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            r = requests.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=1
            )
            if r.ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url} within {timeout}s")


@contextmanager
def _process(cmd: list[str], url: str) -> Iterator[str]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_for_rpc(url, proc)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@contextmanager
def anvil(*options: str) -> Iterator[str]:
    """An anvil node (npm @foundry-rs/anvil, installed by `make test`) on a free port.

    ``options`` go to anvil, e.g. ``"--block-time", "1"`` to mine a block a second
    instead of one per transaction.
    """
    if not ANVIL.exists():
        raise RuntimeError(f"{ANVIL} is missing: run `make npm-tools` (make test does).")
    port = free_port()
    with _process(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent", *options],
        f"http://127.0.0.1:{port}",
    ) as url:
        yield url


@contextmanager
def served_chain() -> Iterator[str]:
    """`swarmlib chain serve` in its own process on a free port."""
    port = free_port()
    with _process(
        [sys.executable, "-m", "swarmlib", "chain", "serve", "--port", str(port)],
        f"http://127.0.0.1:{port}",
    ) as url:
        yield url
