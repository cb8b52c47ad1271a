"""The package as users meet it: exported names, no framework import, the CLI, error tree."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import swarmlib
from swarmlib import errors
from swarmlib.cli import main


def test_exported_names_are_the_documented_ones() -> None:
    documented = set(errors.__all__) | {
        "Mean", "NodeConfig", "SwarmCallback", "SwarmNode", "run_nodes", "CoordinateMedian",
        "TrimmedMean",
        "GeometricMedian", "Krum", "MultiKrum", "Strategy", "get_strategy", "flatten",
        "unflatten", "Layout", "CurveKeyPair", "Peer", "RoundResult", "ShardedExchange",
        "SyncResult",
        "__version__",
    }  # fmt: skip
    assert set(swarmlib.__all__) == documented
    for name in swarmlib.__all__:
        assert getattr(swarmlib, name) is not None


def test_every_error_derives_from_the_root_and_its_builtin() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if name != "SwarmWarning":
            assert issubclass(cls, errors.SwarmError), name
    assert issubclass(errors.PeerTimeout, TimeoutError)
    assert issubclass(errors.TransportError, ConnectionError)
    assert issubclass(errors.MergeError, ValueError)
    assert issubclass(errors.ConfigurationError, ValueError)
    for name in errors.__all__:  # the drawn tree in the docstring lists every error
        if name not in ("SwarmError", "SwarmWarning"):
            assert name in (errors.__doc__ or ""), name


def test_importing_swarmlib_does_not_import_a_deep_learning_framework() -> None:
    code = (
        "import sys, swarmlib, swarmlib.testing.local; "
        "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'torch', 'jax')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_lists_strategies_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in ("mean", "coordinate_median", "coordmedian", "geomedian", "krum", "multi_krum"):
        assert name in out
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert swarmlib.__version__ in capsys.readouterr().out


def test_cli_without_a_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: swarmlib" in capsys.readouterr().out


def test_the_embedded_chain_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from swarmlib.ledger import connect

    monkeypatch.setitem(sys.modules, "eth_tester", None)  # as if not installed
    with pytest.raises(errors.ConfigurationError, match=r"pip install 'swarmlib\[embedded\]'"):
        connect("embedded")


#: What each layer must not import (DESIGN's layer table): a prefix of a module name.
FORBIDDEN = {
    "swarmlib/merge.py": ("swarmlib.transport", "swarmlib.ledger", "swarmlib.identity",
                          "swarmlib.node", "zmq", "web3", "keras", "spiffe"),
    "swarmlib/params.py": ("swarmlib.", "zmq", "web3", "keras", "spiffe"),
    "swarmlib/transport": ("swarmlib.merge", "swarmlib.ledger", "swarmlib.identity",
                           "swarmlib.node", "web3", "keras", "spiffe"),
    "swarmlib/identity": ("swarmlib.transport", "swarmlib.ledger", "swarmlib.node", "zmq",
                          "web3", "keras"),
    "swarmlib/ledger": ("swarmlib.transport", "swarmlib.identity", "swarmlib.node", "zmq",
                        "keras"),
    "swarmlib/node": ("keras", "tensorflow", "swarmlib.callback", "swarmlib.testing"),
}  # fmt: skip
ALLOWED_EVERYWHERE = ("swarmlib.errors", "swarmlib._files", "swarmlib._version")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "swarmlib":  # `from swarmlib import x`: the package root
                names += [f"swarmlib.{a.name}" for a in node.names] + ["swarmlib"]
            else:
                names.append(node.module)
    return names


def test_dependencies_point_one_way() -> None:
    root = Path(swarmlib.__file__).parent.parent
    for where, forbidden in FORBIDDEN.items():
        target = root / where
        files = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
        own = where.removesuffix(".py").replace("/", ".")
        for path in files:
            for name in _imports(path):
                if name.startswith(own) or name.startswith(ALLOWED_EVERYWHERE):
                    continue
                assert name != "swarmlib", f"{path.name} imports the package root"
                assert not name.startswith(forbidden), f"{path.relative_to(root)} imports {name}"


def test_cli_refuses_a_session_whose_merge_cannot_run_on_min_peers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "admin.key"
    key.write_text("0x" + "11" * 32)
    argv = ["session", "create", "--rpc", "http://127.0.0.1:9", "--contract", "0x" + "12" * 20,
            "--key", str(key), "--name", "s", "--min-peers", "3", "--merge", "krum"]  # fmt: skip
    assert main(argv) == 1  # refused before any chain is asked
    assert "needs at least 5 participants" in capsys.readouterr().err
