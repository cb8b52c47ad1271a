"""The compiled SwarmLedger contract (ABI + bytecode), shipped as package data.

Built from ``contracts/SwarmLedger.sol`` by ``contracts/compile.mjs`` (solc-js,
pinned version and EVM version); ``make contract`` rebuilds it and a test fails
when it is stale against the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["Artifact", "load_artifact"]


@dataclass(frozen=True)
class Artifact:
    """ABI, creation bytecode and provenance of the contract."""

    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: dict[str, Any]
    source_sha256: str


@cache
def load_artifact() -> Artifact:
    """Load ``SwarmLedger.json`` from the installed package."""
    raw = json.loads(
        resources.files("swarmlib.ledger").joinpath("SwarmLedger.json").read_text("utf-8")
    )
    return Artifact(
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        compiler=raw["compiler"],
        source_sha256=raw["sourceSha256"],
    )
