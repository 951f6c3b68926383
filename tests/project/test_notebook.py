"""The notebook runs end to end at a tiny size, and is committed without outputs."""

import csv

import nbformat
import pytest
from conftest import REPO, SHARED_DATA

NOTEBOOK = REPO / "notebooks" / "lottery_ticket_fashion_mnist.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.skipif(not (SHARED_DATA / "FashionMNIST").is_dir(), reason="../shared/data not present")
@pytest.mark.slow
def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("LTH_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("LTH_ROUNDS", "3")
    monkeypatch.setenv("LTH_EPOCHS", "1")
    monkeypatch.setenv("LTH_LIMIT_BATCHES", "10")
    monkeypatch.setenv("LTH_OUT_DIR", str(tmp_path / "runs"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "train: (55000, 1, 28, 28), 10 classes" in text
    assert "random reinit" in text and "sparse CSR" in text and "batch 256:" in text and "border" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the accuracy plot and the pixel heat map
    assert (tmp_path / "runs" / "ticket" / "seed_0" / "ticket.pt").is_file()
    with open(tmp_path / "runs" / "ticket" / "seed_0" / "results.csv") as fh:  # LTH_ROUNDS=3 was honoured
        assert [row["round"] for row in csv.DictReader(fh)] == ["0", "1", "2"]
