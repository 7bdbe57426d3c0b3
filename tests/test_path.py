"""One training path: train.py, sweep.py and --jobs reach the same numbers; precision falls back or refuses clearly."""

import json
from argparse import Namespace
from dataclasses import replace

import optuna
import pytest
import torch
from conftest import assert_one_line_error, epoch_metrics, run_cli

import train as train_script
from lab import sweep
from lab.recipes import RECIPES
from train import Recipe, resolve_precision
from utils import UserError

TINY = ["--epochs", "2", "--subset", "448", "--val", "64"]


def record(folder, name):
    return json.loads((folder / f"{name}.json").read_text())


def test_train_py_and_a_sweep_trial_of_the_same_net_and_recipe_reach_the_same_numbers(synthetic_root, tmp_path):
    """The study's reference with ema=0.999 is s7_4k with its recipe: the trial must repeat train.py epoch for epoch."""
    data = ["--data-dir", str(synthetic_root), "--out", str(tmp_path), "--device", "cpu"]
    assert train_script.main(["--model", "s7_4k", *TINY, *data]) == 0
    by_train = [e["val_acc"] for e in record(tmp_path, "s7_4k-seed0-val64-subset448")["epochs"]]

    trial = optuna.trial.FixedTrial({**sweep.REFERENCE, "ema": 0.999})
    args = Namespace(
        budget=4000,
        commit="test",
        data_dir=str(synthetic_root),
        subset=448,
        val=64,
        epochs=2,
        teacher="",
        space="frontier",
    )
    score = sweep.objective(trial, args, torch.device("cpu"))
    assert trial.user_attrs["layers"] == "4p 4p 4p M 8p 8p 8p M 8p 8p 8p"
    assert trial.user_attrs["val_acc"] == by_train and score == min(by_train)


def test_jobs_runs_each_seed_exactly_as_it_runs_alone_on_one_thread(synthetic_root, tmp_path):
    common = ["--model", "s7_8k", "--epochs", "1", "--subset", "256", "--data-dir", str(synthetic_root),
              "--device", "cpu"]  # fmt: skip
    proc = run_cli(*common, "--out", str(tmp_path / "jobs"), "--seeds", "3", "4", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "seed 3: final test accuracy" in proc.stdout and "seed 4: final test accuracy" in proc.stdout
    for seed in (3, 4):
        alone = run_cli(*common, "--out", str(tmp_path / "alone"), "--seed", str(seed), "--threads", "1")
        assert alone.returncode == 0, alone.stderr[-2000:]
        name = f"s7_8k-seed{seed}-subset256"
        by_jobs, by_hand = record(tmp_path / "jobs", name), record(tmp_path / "alone", name)
        assert epoch_metrics(by_jobs) == epoch_metrics(by_hand)
        assert (
            by_jobs["command"] == by_hand["command"].replace("/alone", "/jobs")
            and by_jobs["device"] == "cpu (1 thread)"
        )
        assert by_jobs["weights"]["sha256"] == by_hand["weights"]["sha256"]
        assert (tmp_path / "jobs" / f"{name}.log").read_text().strip()


def test_bf16_recipe_falls_back_to_fp32_on_a_device_without_fast_bf16(monkeypatch):
    bf16 = Recipe(precision="bf16")
    cpu = torch.device("cpu")
    monkeypatch.setattr(train_script, "bf16_is_fast", lambda device: False)
    assert resolve_precision(bf16, cpu) == "fp32"
    assert resolve_precision(bf16, cpu, "fp32") == "fp32"
    with pytest.raises(UserError, match="no fast bfloat16"):
        resolve_precision(Recipe(), cpu, "bf16")
    monkeypatch.setattr(train_script, "bf16_is_fast", lambda device: True)
    assert resolve_precision(bf16, cpu) == "bf16"
    assert resolve_precision(Recipe(), cpu) == "fp32"  # the recipe's precision, not the fastest
    assert resolve_precision(bf16, cpu, "fp32") == "fp32"


def test_a_run_records_the_precision_it_trained_in(synthetic_root, tmp_path, monkeypatch):
    """Simulated CPU without bf16: a bf16 recipe trains in fp32 and says so; asking for bf16 is a one-line error."""
    monkeypatch.setattr(train_script, "bf16_is_fast", lambda device: False)
    monkeypatch.setitem(RECIPES, "s7_3k", replace(RECIPES["s7_3k"], precision="bf16"))
    args = ["--model", "s7_3k", "--epochs", "1", "--subset", "128", "--data-dir", str(synthetic_root)]
    assert train_script.main([*args, "--out", str(tmp_path)]) == 0
    run = record(tmp_path, "s7_3k-seed0-subset128")
    assert run["config"]["precision"] == "fp32" and run["config"]["recipe"]["precision"] == "bf16"


def test_bf16_training_repeats_exactly_where_the_cpu_has_it(synthetic_root, tmp_path):
    if not train_script.bf16_is_fast(torch.device("cpu")):
        pytest.skip("this CPU has no bf16 instructions: the bf16 path falls back to fp32 (tested above)")
    args = ["--model", "s7_3k", "--epochs", "2", "--subset", "256", "--precision", "bf16", "--threads", "1",
            "--data-dir", str(synthetic_root)]  # fmt: skip
    for out in ("a", "b", "fp32"):
        extra = ["--precision", "fp32"] if out == "fp32" else []
        assert train_script.main([*args, *extra, "--out", str(tmp_path / out)]) == 0
    a, b, fp32 = (record(tmp_path / out, "s7_3k-seed0-subset256") for out in ("a", "b", "fp32"))
    assert a["config"]["precision"] == "bf16" and fp32["config"]["precision"] == "fp32"
    assert epoch_metrics(a) == epoch_metrics(b) != epoch_metrics(fp32)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--jobs", "0"], "argument --jobs: must be a positive integer, got '0'"),
        (["--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
    ],
)
def test_bad_path_flags_get_one_line_errors(tmp_path, flags, message):
    assert_one_line_error(run_cli("--out", str(tmp_path), *flags), message)


def test_asking_for_bf16_where_the_cpu_lacks_it_is_a_one_line_error(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_script, "bf16_is_fast", lambda device: False)
    args = ["--model", "s7_3k", "--epochs", "1", "--subset", "128", "--precision", "bf16"]
    assert train_script.main([*args, "--data-dir", str(synthetic_root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no fast bfloat16" in err[0]
    assert not (tmp_path / "out").exists()
