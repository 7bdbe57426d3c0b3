import json
import subprocess
import sys

import pytest
from conftest import ROOT, assert_one_line_error, build

from lab import bench
from utils import UserError


def test_bench_times_both_loaders_and_writes_its_json(synthetic_root, tmp_path, capsys):
    argv = ["--model", "s7_8k", "--batch-size", "32", "--warmup", "1", "--batches", "3", "--repeats", "2",
            "--data-dir", str(synthetic_root), "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "bench-loaders-cpu.json").read_text())
    assert result["command"] == "python -m lab.bench " + " ".join(argv)
    assert set(result["images_per_s"]) == {"fast", "classic"}
    assert all(len(rates) == 2 and min(rates) > 0 for rates in result["images_per_s"].values())
    median = result["median_images_per_s"]
    assert result["fast_over_classic"] == median["fast"] / median["classic"]
    assert "fast/classic" in capsys.readouterr().out


def test_compare_prints_one_line_per_model_ending_in_its_speedup(synthetic_root, tmp_path, capsys):
    argv = ["--compare", "--models", "s7_3k", "s7_8k", "--levers", "--warmup", "1", "--batches", "2", "--repeats", "2",
            "--data-dir", str(synthetic_root), "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "bench-cpu.json").read_text())["compare"]
    assert list(result) == ["s7_3k", "s7_8k"]
    for entry in result.values():
        median = entry["median_ms_per_batch"]
        assert entry["speedup"] == median["fp32"] / median["auto"] and all(
            len(t) == 2 for t in entry["ms_per_batch"].values()
        )
        assert set(entry["levers_median_ms_per_batch"]) == set(bench.LEVERS)
    lines = [line for line in capsys.readouterr().out.splitlines() if "per batch:" in line]
    assert [line.split()[0] for line in lines] == ["s7_3k", "s7_8k"]
    assert all(line.endswith(f"{result[line.split()[0]]['speedup']:.2f}×") for line in lines)


@pytest.mark.parametrize(("flags", "message"), [(["--batch-size", "0"], "--batch-size"), (["--model", "x"], "--model")])
def test_bad_bench_flags_get_one_line_errors(tmp_path, flags, message):
    proc = subprocess.run(
        [sys.executable, "-m", "lab.bench", *flags, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert_one_line_error(proc, message)


def test_multiply_adds_count_each_convolution_as_worked_by_hand():
    from lab.nets import Net

    # 3x3 conv 1 -> 8 unpadded (26 x 26 x 8 outputs, 9 each), then the 1x1 head 8 -> 10 over 26 x 26
    assert bench.multiply_adds(Net("8")) == 26 * 26 * 8 * 9 + 26 * 26 * 10 * 8
    # padded 3x3 1 -> 8; separable 8 -> 8: a 3x3 per map (groups), then 1x1 8 -> 8; the head 8 -> 10
    side = 28 * 28
    assert bench.multiply_adds(Net("8p 8d")) == side * 8 * 9 + side * 8 * 9 + side * 8 * 8 + side * 10 * 8
    assert bench.multiply_adds(build("baseline")) > bench.multiply_adds(build("s6"))  # the linear layers count too


def test_versus_times_each_net_against_the_reference_on_its_own_recipe(synthetic_root, tmp_path):
    argv = ["--versus", "s6", "--models", "s8_8k", "--warmup", "1", "--batches", "2", "--repeats", "1",
            "--data-dir", str(synthetic_root), "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "bench-versus-cpu.json").read_text())
    s6, small = result["models"]["s6"], result["models"]["s8_8k"]
    assert result["reference"] == "s6" and s6["faster_than_reference"] == 1.0 and s6["multiply_adds_ratio"] == 1.0
    assert small["batch_size"] == 32 and small["multiply_adds_ratio"] > 1 and small["median_ms_per_image"] > 0


def test_versus_times_a_studys_trial_by_its_export_before_it_has_a_name(synthetic_root, tmp_path):
    drawn = {"number": 3, "layers": "4p M 8p 8p M 16 16", "suggested": {"dropout": 0.02},
             "recipe": {"batch_size": 64, "augment": {"degrees": 5.0}}}  # fmt: skip
    pruned = {**drawn, "number": 4, "style": {"act": "prelu"}}  # a lever the family has lost since the study drew it
    study = {"budget": 8000, "trials": [drawn, pruned, {**drawn, "number": 5, "layers": "4p M 8f 8f M 16 16"}]}
    (tmp_path / "budget-8000.json").write_text(json.dumps(study))
    trial = f"{tmp_path / 'budget-8000.json'}:3"
    argv = ["--versus", "s6", "--models", trial, "--warmup", "1", "--batches", "2", "--repeats", "1",
            "--data-dir", str(synthetic_root), "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert bench.main(argv) == 0
    timed = json.loads((tmp_path / "bench-versus-cpu.json").read_text())["models"][trial]
    assert timed["batch_size"] == 64 and timed["multiply_adds"] == bench.multiply_adds(bench.Net("4p M 8p 8p M 16 16"))
    absent = [*argv[:3], f"{tmp_path / 'budget-8000.json'}:9", *argv[4:]]
    missing = subprocess.run([sys.executable, "-m", "lab.bench", *absent], cwd=ROOT, capture_output=True, text=True)
    assert_one_line_error(missing, "is not a trial of a study export")
    for number in (4, 5):
        with pytest.raises(UserError, match="does not build in the family today: .*PRUNED_AT"):
            bench.design(f"{tmp_path / 'budget-8000.json'}:{number}")
