"""examples/quickstart.ipynb runs top to bottom in a fresh kernel (nbclient), as a user would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_quickstart_notebook_runs_and_the_swarm_wins(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = shutil.copy(ROOT / "examples" / "quickstart.ipynb", tmp_path / "quickstart.ipynb")
    nb = nbformat.read(notebook, as_version=4)
    # the last cell asserts that the swarm beats every node alone; an error fails the run
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "swarm beats every node alone" in outputs
    assert (tmp_path / "quickstart-notebook.png").stat().st_size > 5_000
