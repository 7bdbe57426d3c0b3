"""The notebook runs top to bottom, headless, in smoke mode: a broken cell fails the suite."""

import json

import nbformat

import run_notebook
import train as train_script
from model import count_parameters, get_model
from report import epoch_metrics


def test_notebook_runs_headless_in_smoke_mode(synthetic_root, tmp_path):
    overrides = ["MODEL = 's7_8k'", "EPOCHS = 2", "SUBSET = 256", f"DATA_DIR = {str(synthetic_root)!r}",
                 f"IMAGES = {str(tmp_path / 'images')!r}", f"OUT = {str(tmp_path / 'results')!r}"]  # fmt: skip
    run_notebook.execute(overrides, tmp_path / "smoke.ipynb", timeout=600)

    nb = nbformat.read(tmp_path / "smoke.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"Total params: {count_parameters(get_model('s7_8k')):,}" in text and "within budget" in text
    assert "global avg-pool" in text and "Test set: Average loss" in text
    assert "\r" not in text  # progress bars kept as their final frame only
    pictures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pictures == 4
    for name in ("samples", "s7_8k-curves", "s7_8k-misclassified", "s7_8k-confusion"):
        assert (tmp_path / "images" / f"{name}.png").stat().st_size > 10_000
    record = json.loads((tmp_path / "results" / "notebook-s7_8k-seed0.json").read_text())
    assert [e["epoch"] for e in record["epochs"]] == [1, 2] and record["command"] == "S6_part2.ipynb"

    # the same run from the command line: one training path, so the same numbers epoch for epoch
    cli = ["--model", "s7_8k", "--epochs", "2", "--subset", "256", "--data-dir", str(synthetic_root)]
    assert train_script.main([*cli, "--out", str(tmp_path / "cli")]) == 0
    by_cli = json.loads((tmp_path / "cli" / "s7_8k-seed0-subset256.json").read_text())
    assert epoch_metrics(record) == epoch_metrics(by_cli) and record["config"] == by_cli["config"]
