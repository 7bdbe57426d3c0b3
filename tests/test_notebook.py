"""The notebook runs top to bottom, headless, in smoke mode: a broken cell fails the suite."""

import json
import math
import os
import subprocess
import sys
import time

import nbformat
import pytest
import torch
from conftest import ROOT, assert_one_line_error, build, epoch_metrics

import train as train_script
from lab import report, run_notebook
from model import count_parameters

NET = report.COURSE[20_000][0]  # the notebook's net: the < 20k net of the course


def test_notebook_runs_headless_in_smoke_mode_and_matches_train_py(synthetic_root, tmp_path):
    overrides = ["EPOCHS = 2", "SUBSET = 256", f"DATA_DIR = {str(synthetic_root)!r}",
                 f"IMAGES = {str(tmp_path / 'images')!r}", f"OUT = {str(tmp_path / 'out')!r}"]  # fmt: skip
    run_notebook.execute(overrides, tmp_path / "smoke.ipynb", timeout=600)

    nb = nbformat.read(tmp_path / "smoke.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"Total params: {count_parameters(build(NET)):,}" in text and "within budget" in text
    assert "global avg-pool" in text and "Test set: Average loss" in text
    assert "\r" not in text  # progress bars kept as their final frame only
    pictures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pictures == 4
    for name in ("samples", f"{NET}-curves", f"{NET}-misclassified", f"{NET}-confusion"):
        assert (tmp_path / "images" / f"{name}.png").stat().st_size > 10_000
    record = json.loads((tmp_path / "out" / f"notebook-{NET}-seed0.json").read_text())
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]

    # the same run from the command line: the same steps, so the same numbers epoch for epoch
    # (on a GPU, where the notebook trains, up to the rounding of cuDNN's non-deterministic kernels)
    cli = ["--epochs", "2", "--subset", "256", "--data-dir", str(synthetic_root)]
    assert train_script.main([*cli, "--out", str(tmp_path / "cli")]) == 0
    by_cli = json.loads((tmp_path / "cli" / f"{NET}-seed0-subset256.json").read_text())
    if torch.cuda.is_available():
        for ours, theirs in zip(epoch_metrics(record), epoch_metrics(by_cli), strict=True):
            assert ours.keys() == theirs.keys() and all(math.isclose(ours[k], theirs[k], rel_tol=1e-2) for k in ours)
    else:
        assert epoch_metrics(record) == epoch_metrics(by_cli)


def test_the_notebook_writes_out_train_pys_recipe_for_its_net():
    """The notebook spells the < 20k net's hyperparameters out for students; they must be train.py's."""
    r = train_script.RECIPES[NET]
    source = "\n".join(c.source for c in nbformat.read(run_notebook.NOTEBOOK, as_version=4).cells)
    assert f"model = {type(build(NET)).__name__}().to(device)" in source
    sgd = f"SGD(model.parameters(), lr={r.lr}, momentum={r.momentum}" + (", nesterov=True)" if r.nesterov else ")")
    assert sgd in source and r.schedule == "step" and not r.weight_decay
    assert f"StepLR(optimizer, step_size={r.step_size}, gamma={r.gamma})" in source
    a = r.augment
    assert f"Augment(degrees={a.degrees}, translate={a.translate}, scale={a.scale}, p={a.p})" in source
    assert f"batch_size={r.batch_size}" in source and r.precision == "fp32" and not r.label_smoothing


def test_a_failed_run_leaves_the_notebook_byte_identical(synthetic_root, tmp_path, monkeypatch, capsys):
    """EPOCHS=0 trains nothing and the curves cell fails: the notebook asked for stays as it was."""
    notebook = tmp_path / "S6_part2.ipynb"
    notebook.write_bytes(run_notebook.NOTEBOOK.read_bytes())
    monkeypatch.setattr(run_notebook, "NOTEBOOK", notebook)
    overrides = ["EPOCHS=0", "SUBSET=64", f"DATA_DIR={str(synthetic_root)!r}", f"IMAGES={str(tmp_path)!r}",
                 f"OUT={str(tmp_path)!r}"]  # fmt: skip
    before = notebook.read_bytes()
    assert run_notebook.main(["--set", *overrides, "--output", str(notebook)]) == 1
    assert notebook.read_bytes() == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "left as it was" in err[0] and (tmp_path / "S6_part2.failed.ipynb").exists()


def test_a_run_goes_to_runs_and_only_publish_replaces_the_notebook(tmp_path, monkeypatch):
    notebook = tmp_path / "S6_part2.ipynb"
    notebook.write_bytes(run_notebook.NOTEBOOK.read_bytes())
    monkeypatch.setattr(run_notebook, "NOTEBOOK", notebook)
    monkeypatch.setattr(run_notebook, "OUTPUT", tmp_path / "runs" / "S6_part2.ipynb")
    monkeypatch.setattr(run_notebook, "execute", lambda assignments, output, timeout: output.write_text("ran"))
    assert run_notebook.main(["--set", "EPOCHS=1"]) == 0
    assert (tmp_path / "runs" / "S6_part2.ipynb").read_text() == "ran" and notebook.read_bytes() != b"ran"
    with pytest.raises(SystemExit):
        run_notebook.main(["--publish", "--set", "EPOCHS=1"])


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("EPOCHS", "--set takes NAME=VALUE, got 'EPOCHS'"),
        ("WIDTH=3", "--set WIDTH: not a parameter of the notebook; known: EPOCHS, SEED"),
        ("OUT=runs", "--set OUT: 'runs' is not a Python literal"),
    ],
)
def test_bad_set_values_get_one_line_errors(assignment, message):
    proc = subprocess.run(
        [sys.executable, "-m", "lab.run_notebook", "--set", assignment], cwd=ROOT, capture_output=True, text=True
    )
    assert_one_line_error(proc, message)
    assert proc.returncode == 2


def test_pretrained_path_shows_the_published_run_without_training(real_root, tmp_path):
    overrides = ["PRETRAINED = True", f"DATA_DIR = {str(real_root)!r}", f"IMAGES = {str(tmp_path)!r}",
                 f"OUT = {str(tmp_path)!r}"]  # fmt: skip
    run_notebook.execute(overrides, tmp_path / "pretrained.ipynb", timeout=600)
    nb = nbformat.read(tmp_path / "pretrained.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    record = json.loads((ROOT / "results" / f"{NET}-seed0.json").read_text())
    assert f"loaded the weights of: {record['command']}" in text
    assert f"final test accuracy: {record['epochs'][-1]['test_acc']:.2f} %" in text
    assert "Train:" not in text  # no epoch was trained
    assert (tmp_path / f"{NET}-confusion.png").stat().st_size > 10_000


def test_publishing_copies_only_what_this_run_wrote(tmp_path, monkeypatch):
    out, here = tmp_path / "runs" / "notebook", tmp_path / "repo"
    for folder in (out, here / "images", here / "results"):
        folder.mkdir(parents=True)
    monkeypatch.setattr(run_notebook, "NOTEBOOK_OUT", out)
    monkeypatch.setattr(run_notebook, "HERE", here)
    (out / "old-curves.png").write_bytes(b"an earlier run's, of another net")
    (out / "notebook-old-seed0.json").write_text("{}")
    old = time.time() - 3600
    for stale in out.iterdir():
        os.utime(stale, (old, old))
    started = time.time() - 1
    (out / "new-curves.png").write_bytes(b"this run's")
    (out / "notebook-new-seed0.json").write_text('{"model": "new"}')
    written = run_notebook.publish("abc", started)
    assert sorted(p.name for p in written) == ["new-curves.png", "notebook-new-seed0.json"]
    assert json.loads((here / "results" / "notebook-new-seed0.json").read_text())["git_commit"] == "abc"
