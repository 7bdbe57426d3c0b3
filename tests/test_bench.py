import json
import subprocess
import sys

import pytest
from conftest import ROOT, assert_one_line_error

import bench


def test_bench_times_both_loaders_and_writes_its_json(synthetic_root, tmp_path, capsys):
    argv = ["--model", "s7_8k", "--batch-size", "32", "--warmup", "1", "--batches", "3", "--repeats", "2",
            "--data-dir", str(synthetic_root), "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "bench-cpu.json").read_text())
    assert result["command"] == "python bench.py " + " ".join(argv)
    assert set(result["images_per_s"]) == {"fast", "classic"}
    assert all(len(rates) == 2 and min(rates) > 0 for rates in result["images_per_s"].values())
    median = result["median_images_per_s"]
    assert result["fast_over_classic"] == median["fast"] / median["classic"]
    assert "fast/classic" in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "message"), [(["--batch-size", "0"], "--batch-size"), (["--model", "x"], "--model")])
def test_bad_bench_flags_get_one_line_errors(tmp_path, flags, message):
    proc = subprocess.run(
        [sys.executable, "bench.py", *flags, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert_one_line_error(proc, message)
