"""Every notebook runs green with small parameters, is stored without outputs and matches its script."""

import json
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(
    p for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb") if ".executed" not in p.name
)


def test_there_are_eight_notebooks():
    assert len(NOTEBOOKS) == 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_paired(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
    script = jupytext.read(path.with_suffix(".py"))
    assert [c.source for c in script.cells] == [c.source for c in notebook.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("FLUIDOPT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no TCP-without-encryption notice per run
        resources={"metadata": {"path": str(path.parent)}},
    )
    notebook.cells.append(nbformat.v4.new_code_cell(FIGURE_CHECK))
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, stderr  # no warnings (tqdm's IProgress, matplotlib, ...)
    report = json.loads(outputs[-1].text.removeprefix("FIGURES "))
    assert report, f"{path.name} draws nothing"
    for axes in report:
        assert axes["xlabel"] and axes["ylabel"], (path.name, axes)
        assert axes["legend"] or axes["lines"] <= 1, (path.name, axes)  # every series in a legend


# Appended to each notebook: with the Agg backend, plt.show() leaves figures open, so this
# describes every drawn Axes of the notebook's own figures.
FIGURE_CHECK = """
import json as _json
import matplotlib.pyplot as _plt
_axes = [ax for n in _plt.get_fignums() for ax in _plt.figure(n).axes if ax.has_data()]
print("FIGURES " + _json.dumps([
    {"xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "legend": ax.get_legend() is not None,
     "lines": len(ax.get_lines()) + len(ax.collections)} for ax in _axes
]))
"""
