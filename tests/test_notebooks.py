"""The notebooks in notebooks/ run top to bottom, each against a server it starts itself."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.slow


def test_there_are_the_four_notebooks_and_no_outputs_are_committed():
    import nbformat

    assert [p.stem for p in NOTEBOOKS] == ["01_quickstart", "02_dicomweb", "03_cohort", "04_teaching_dicom"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert "LocalServer.start()" in code[0].source and "server.stop()" in code[-1].source


RUN = """
import sys, nbformat
from nbclient import NotebookClient
book = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(book, sys.argv[3])
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_top_to_bottom(path, tmp_path):
    """Executed in a process of its own: nbclient leaves an asyncio loop behind
    in the process that runs it, which later Playwright tests refuse."""
    import subprocess
    import sys

    import nbformat

    done = tmp_path / path.name
    result = subprocess.run([sys.executable, "-c", RUN, str(path), str(tmp_path), str(done)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    book = nbformat.read(done, as_version=4)
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type in ("stream", "execute_result", "display_data") for o in outputs)
