"""The contract artifact shipped in the package is built from the Solidity source in the repo."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from swarmlib.ledger import load_artifact

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "contracts" / "SwarmLedger.sol"


def test_artifact_was_built_from_the_current_source() -> None:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    assert load_artifact().source_sha256 == digest, (
        "swarmlib/ledger/SwarmLedger.json is stale: run `make contract` after editing "
        "contracts/SwarmLedger.sol"
    )


def test_recompiling_gives_the_shipped_abi_and_bytecode(tmp_path: Path) -> None:
    solc = ROOT / ".npm" / "node_modules" / "solc"
    if shutil.which("node") is None or not solc.exists():
        if os.environ.get("CI"):  # make test installs them: under CI their absence is a failure
            pytest.fail("node or the npm tools are missing; `make test` installs them")
        pytest.skip("needs node and the npm tools (`make npm-tools`; `make test` installs them)")
    out = tmp_path / "SwarmLedger.json"
    subprocess.run(
        ["node", str(ROOT / "contracts" / "compile.mjs"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    fresh = json.loads(out.read_text())
    shipped = load_artifact()
    assert fresh["compiler"] == shipped.compiler
    assert fresh["abi"] == shipped.abi
    assert fresh["bytecode"] == shipped.bytecode, "stale artifact: run `make contract`"


def test_the_evm_version_is_pinned() -> None:
    compiler = load_artifact().compiler
    assert compiler["evmVersion"] == "cancun"
    assert compiler["version"].startswith("0.8.30")
