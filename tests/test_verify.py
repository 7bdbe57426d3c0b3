"""verify.py: the committed weights reproduce every published number; tampering fails with one line per run."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, assert_one_line_error

import train as train_script
from lab import report

NAME = "s7_3k-seed0-subset128"


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "verify.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture
def run_dir(synthetic_root, tmp_path):
    out = tmp_path / "results"
    argv = [
        "--model",
        "s7_3k",
        "--epochs",
        "1",
        "--subset",
        "128",
        "--data-dir",
        str(synthetic_root),
        "--out",
        str(out),
        "--device",
        "cpu",  # verify.py checks on the CPU, where a CPU run must repeat exactly
    ]
    assert train_script.main(argv) == 0
    return out


def check(run_dir, synthetic_root) -> subprocess.CompletedProcess:
    return verify("--runs", str(run_dir / "*.json"), "--data-dir", str(synthetic_root))


def test_a_run_is_reproduced_exactly_from_its_weights(run_dir, synthetic_root):
    record = json.loads((run_dir / f"{NAME}.json").read_text())
    assert record["weights"]["file"] == f"{NAME}.safetensors" and len(record["weights"]["sha256"]) == 64
    proc = check(run_dir, synthetic_root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if NAME in line)
    assert line.endswith(": exact") and f"({record['epochs'][-1]['test_acc']:.2f} %)" in line
    assert "1 runs reproduced" in proc.stdout.splitlines()[-1]


@pytest.mark.parametrize("damage", ["tampered weights", "changed record", "missing weights", "damaged record"])
def test_any_difference_fails_with_one_line_naming_the_run(run_dir, synthetic_root, damage):
    weights, record_path = run_dir / f"{NAME}.safetensors", run_dir / f"{NAME}.json"
    if damage == "tampered weights":
        blob = bytearray(weights.read_bytes())
        blob[-1] ^= 0xFF
        weights.write_bytes(bytes(blob))
        expected = "has changed: its SHA-256 differs"
    elif damage == "changed record":
        record = json.loads(record_path.read_text())
        record["epochs"][-1]["test_acc"] += 5.0
        record_path.write_text(json.dumps(record))
        expected = "correct"
    elif damage == "missing weights":
        weights.unlink()
        expected = "cannot read weights"
    else:
        record_path.write_text(record_path.read_text()[:100])
        expected = "cannot read the record"
    proc = check(run_dir, synthetic_root)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    bad = [line for line in proc.stdout.splitlines() if "MISMATCH" in line]
    assert len(bad) == 1 and NAME in bad[0] and expected in bad[0], proc.stdout
    assert "0 runs reproduced on cpu" in proc.stdout and "1 did not" in proc.stdout


def test_runs_without_weights_are_listed_as_skipped(run_dir, synthetic_root):
    record = json.loads((run_dir / f"{NAME}.json").read_text())
    del record["weights"]
    (run_dir / "s7_3k-seed1-subset128.json").write_text(json.dumps(record))
    proc = check(run_dir, synthetic_root)
    assert proc.returncode == 0 and "1 runs reproduced" in proc.stdout and "1 skipped" in proc.stdout


def test_bad_verify_input_gets_one_line_errors(tmp_path, synthetic_root):
    assert_one_line_error(verify("--data-dir", str(tmp_path)), "MNIST is not in")
    assert_one_line_error(
        verify("--runs", str(tmp_path / "*.json"), "--data-dir", str(synthetic_root)), "no run records"
    )
    assert_one_line_error(verify("--device", "tpu"), "invalid choice: 'tpu'")


def test_every_published_run_is_reproduced_from_its_committed_weights(real_root):
    """The README's numbers, checked: every published run has weights and gives its final accuracy exactly."""
    published = report.load_runs()
    kept = [run for run in published if "weights" in run]
    assert kept == published
    proc = verify("--runs", "results/*-seed*.json", "--data-dir", str(real_root))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.splitlines()[-1].startswith(f"{len(kept)} runs reproduced")
    for run in kept:  # the weights and BatchNorm's statistics in fp32, no optimizer state: a small file per run
        size = (ROOT / "results" / run["weights"]["file"]).stat().st_size
        assert size < 1.25 * 4 * run["params"] + 4096, (run["weights"]["file"], size)


def test_by_default_it_checks_the_repositorys_runs_from_any_folder(real_root, tmp_path, monkeypatch, capsys):
    import verify as verify_script

    monkeypatch.chdir(tmp_path)  # a folder with no results/ of its own
    monkeypatch.setattr(verify_script, "RUNS", "results/s6-seed0.json")  # one run, to keep it quick
    assert verify_script.main(["--data-dir", str(real_root)]) == 0
    out = capsys.readouterr().out
    assert f"{ROOT / 'results' / 's6-seed0.json'}: " in out and out.splitlines()[-1].startswith("1 runs reproduced")
