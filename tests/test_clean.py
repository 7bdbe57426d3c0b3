"""Nothing a user runs changes a tracked file: each entry point's smoke command, in a fresh clone, leaves
`git status` clean; and records name their files by the repository, wherever a command is started."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SMOKE = {  # entry point -> its smoke command (after `python`), on the tiny synthetic MNIST
    "train.py": ["train.py", "--epochs", "1", "--subset", "128", "--device", "cpu"],
    "train.py --seeds": ["train.py", "--epochs", "1", "--subset", "64", "--seeds", "0", "1", "--jobs", "2"],
    "verify.py": ["verify.py", "--runs", "results/s6-seed0.json"],  # the synthetic digits: a mismatch, no writes
    "lab.sweep": [
        "-m",
        "lab.sweep",
        "--budget",
        "3000",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--val",
        "64",
        "--subset",
        "64",
    ],  # fmt: skip
    "lab.bench": [
        "-m",
        "lab.bench",
        "--batch-size",
        "32",
        "--warmup",
        "1",
        "--batches",
        "2",
        "--repeats",
        "1",
        "--device",
        "cpu",
    ],  # fmt: skip
    "lab.run_notebook": ["-m", "lab.run_notebook", "--set", "EPOCHS=1", "SUBSET=64"],
    "lab.graph": ["-m", "lab.graph", "--model", "s8_8k", "--seeds", "0", "--epochs", "1", "--val", "64"],
    "lab.teacher": [
        "-m",
        "lab.teacher",
        "--teacher",
        "results/validation/teachers/s6-seed0-val5000.json",
        "--val",
        "64",
    ],
    "lab.report --check": ["-m", "lab.report", "--check"],
}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of the committed repository, as a user gets it."""
    path = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    return path


def git_status(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout


@pytest.mark.parametrize("entry", list(SMOKE))
def test_an_entry_points_smoke_run_leaves_git_status_clean(clone, synthetic_root, entry):
    assert git_status(clone) == ""
    proc = subprocess.run(
        [sys.executable, *SMOKE[entry]],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MNIST_ROOT": str(synthetic_root)},
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == {"verify.py": 1, "lab.teacher": 2}.get(entry, 0), proc.stderr[-2000:]
    assert git_status(clone) == ""


def test_a_teacher_named_in_a_recipe_is_found_from_any_folder(tmp_path, synthetic_root):
    """s8_4k's recipe names results/s6-seed0.json: train.py started elsewhere finds that record, and then refuses
    it for the right reason (it trained on all the images, this student on a subset)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--model",
            "s8_4k",
            "--epochs",
            "1",
            "--subset",
            "64",
            "--data-dir",
            str(synthetic_root),
            "--out",
            str(tmp_path / "out"),
        ],  # fmt: skip
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "results/s6-seed0.json trained with --val 0 --subset None" in proc.stderr, proc.stderr
