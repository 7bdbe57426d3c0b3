"""Shared fixtures: a tiny synthetic MNIST in IDX format, the real one when $MNIST_ROOT has it, the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: magic (0, 0, 0x08=ubyte, ndim), big-endian dims, bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_synthetic_mnist(root: Path, n_train: int = 512, n_test: int = 128, seed: int = 0) -> Path:
    """Digits stand-in: class k is a bright bar at row 2 + 2k on noise, so a model can learn it."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 40, (n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 4 + 2 * k : 6 + 2 * k, 4:24] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    return make_synthetic_mnist(tmp_path / "data")


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real MNIST, from the folder named by $MNIST_ROOT (CI points it at ../shared/data)."""
    root = os.environ.get("MNIST_ROOT")
    if not root or not (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip("real MNIST not available: set MNIST_ROOT to a folder holding MNIST/raw")
    return Path(root)


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run train.py as a user would, from the repository root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MNIST_ROOT", None)
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Non-zero exit, exactly one line on stderr naming the problem, and no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def build(name: str):
    """A fresh net by the name its runs are recorded under: a course class or a searched net of the lab."""
    from train import spec

    return spec(name).build()


def epoch_metrics(run: dict) -> list[dict]:
    """Per-epoch numbers without wall time: what must match between two runs of the same recipe and seed."""
    return [{k: v for k, v in e.items() if k != "time_s"} for e in run["epochs"]]
