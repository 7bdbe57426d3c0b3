"""Checkpoints: exact resume after kill -9, atomic writes, safe loading, clear errors."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from argparse import Namespace

import pytest
import torch
from conftest import ROOT, assert_one_line_error, build, epoch_metrics, make_synthetic_mnist, run_cli

from lab.recipes import RECIPES
from train import load_checkpoint, save_checkpoint
from utils import UserError

EPOCHS = "5"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_mnist(tmp_path_factory.mktemp("mnist"), n_train=2048, n_test=256)


def args(data, out, *extra):
    """s7_8k with a weight average, so that resuming must restore both the live and the averaged weights.

    On the CPU, where every kernel is deterministic: test_cuda.py resumes on a GPU.
    """
    return ["--model", "s7_8k", "--epochs", EPOCHS, "--ema", "0.99", "--data-dir", str(data), "--out", str(out),
            "--device", "cpu", *extra]  # fmt: skip


def run_file(out):
    return json.loads((out / "s7_8k-seed0.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = run_cli(*args(data, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def kill_after_first_checkpoint(cmd_args, ckpt):
    proc = subprocess.Popen(
        [sys.executable, "train.py", *cmd_args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc


def test_resume_after_kill_9_reproduces_the_uninterrupted_run(data, uninterrupted, tmp_path):
    ckpt = tmp_path / "s7_8k-seed0.pt"
    proc = kill_after_first_checkpoint(args(data, tmp_path), ckpt)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(ckpt)["epoch"]
    assert 1 <= killed_at < int(EPOCHS), "the run finished before it could be killed"
    assert not (tmp_path / "s7_8k-seed0.json").exists()

    resumed = run_cli(*args(data, tmp_path, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {ckpt} after epoch {killed_at}" in resumed.stdout

    result = run_file(tmp_path)
    assert epoch_metrics(result) == epoch_metrics(run_file(uninterrupted))
    assert result["resumed_after_epoch"] == killed_at
    final, reference = load_checkpoint(ckpt), load_checkpoint(uninterrupted / "s7_8k-seed0.pt")
    assert final["average"]["updates"] == reference["average"]["updates"] > 0
    for weights in (lambda state: state["model"], lambda state: state["average"]["weights"]):
        assert weights(final).keys() == weights(reference).keys()
        assert all(torch.equal(weights(final)[k], weights(reference)[k]) for k in weights(final))


KILL_DURING_WRITE = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
import train
def half_then_die(obj, f):
    f.write(b"PK" + os.urandom(4096))  # the first bytes of a new checkpoint ...
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # ... and the power goes
train.torch.save = half_then_die
train.save_checkpoint({{"epoch": 2}}, {path!r})
"""


def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    previous = {"epoch": 1, "weights": torch.arange(5.0)}
    save_checkpoint(previous, path)
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE.format(root=str(ROOT), path=str(path))])
    assert proc.returncode == -signal.SIGKILL
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 1 and torch.equal(loaded["weights"], previous["weights"])


def test_pickled_objects_that_are_not_tensor_dicts_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Namespace(epoch=1)))
    with pytest.raises(UserError, match="not a loadable checkpoint"):
        load_checkpoint(path)
    proc = run_cli("--model", "s7_8k", "--resume", str(path), "--out", str(tmp_path))
    assert_one_line_error(proc, "evil.pt is not a loadable checkpoint")
    torch.save({"epoch": torch.tensor(1)}, path)  # loads safely, but is no checkpoint of ours
    with pytest.raises(UserError, match="not a checkpoint of train.py"):
        load_checkpoint(path)


def test_resume_without_a_checkpoint(data, tmp_path):
    assert_one_line_error(run_cli(*args(data, tmp_path, "--resume")), "no checkpoint at", "s7_8k-seed0.pt")


def test_damaged_checkpoint(data, tmp_path):
    ckpt = tmp_path / "s7_8k-seed0.pt"
    ckpt.write_bytes(os.urandom(2000))
    assert_one_line_error(run_cli(*args(data, tmp_path, "--resume")), "s7_8k-seed0.pt is not a loadable checkpoint")


def test_checkpoint_of_another_model(data, uninterrupted, tmp_path):
    proc = run_cli(*args(data, tmp_path, "--model", "s6", "--resume", str(uninterrupted / "s7_8k-seed0.pt")))
    assert_one_line_error(proc, "holds model 's7_8k', not 's6'")


def test_resume_with_other_settings(data, uninterrupted, tmp_path):
    batch, other = RECIPES["s7_8k"].batch_size, RECIPES["s7_8k"].batch_size // 2
    proc = run_cli(*args(data, tmp_path, "--batch-size", str(other), "--resume", str(uninterrupted / "s7_8k-seed0.pt")))
    assert_one_line_error(proc, f"batch_size={batch} (now {other})")


def test_unwritable_output_folder(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_one_line_error(run_cli(*args(data, blocker / "out")), "cannot write to output folder")


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(data, uninterrupted, tmp_path):
    state = load_checkpoint(uninterrupted / "s7_8k-seed0.pt")
    steps_per_epoch = state["scheduler"]["last_epoch"] // len(state["history"])  # rewind to after epoch 1:
    state["epoch"], state["history"] = 1, state["history"][:1]  # the history, and the schedule with it
    state["scheduler"]["last_epoch"], state["scheduler"]["_step_count"] = steps_per_epoch, steps_per_epoch + 1
    state["model"][f"{len(build('s7_8k')) - 1}.0.weight"].fill_(float("nan"))  # the head's 1x1 conv
    ckpt = tmp_path / "s7_8k-seed0.pt"
    save_checkpoint(state, ckpt)
    before = ckpt.read_bytes()
    proc = run_cli(*args(data, tmp_path, "--resume"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: loss became NaN/inf in epoch 2, batch 0")
    assert ckpt.read_bytes() == before
    assert not (tmp_path / "s7_8k-seed0.json").exists()


def test_huge_learning_rate_is_caught_as_non_finite_loss(data, tmp_path):
    proc = run_cli(*args(data, tmp_path, "--lr", "1e30"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "loss became NaN/inf in epoch 1" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "s7_8k-seed0.pt").exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_a_stopped_run_saves_and_prints_the_resume_command(data, tmp_path, stop):
    ckpt = tmp_path / "s7_8k-seed0.pt"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args(data, tmp_path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(stop)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert "resume with: python train.py" in stderr and stderr.rstrip().endswith("--resume")
    assert load_checkpoint(ckpt)["epoch"] >= 1
