"""The CUDA path, on a machine with a GPU: the loader, training, checkpoint + resume, the summary.

Skipped with the reason where there is no GPU (CI has none). The notebook's smoke run takes the
CUDA path by itself on such a machine (test_notebook.py), since the notebook picks CUDA first.
"""

import json

import pytest
import torch
from conftest import build, epoch_metrics, make_synthetic_mnist, run_cli
from test_resume import kill_after_first_checkpoint

from train import fit, load_checkpoint, prepare, spec
from utils import Augment, DataConfig, DeviceLoader, print_summary

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
CUDA = torch.device("cuda")


def loader(augment: Augment | None, n: int = 1000) -> DeviceLoader:
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)
    return DeviceLoader(images, torch.arange(n), 64, CUDA, shuffle=True, augment=augment, seed=3)


def epoch(batches: DeviceLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_device_loader_on_cuda_shuffles_each_epoch_and_replays_from_its_generator_state():
    batches = loader(Augment())
    x1, y1 = epoch(batches)
    assert x1.device.type == y1.device.type == "cuda" and x1.shape == (1000, 1, 28, 28)
    assert torch.equal(y1.sort().values, torch.arange(1000, device=CUDA))  # every image once
    state = batches.generator.get_state()
    x2, y2 = epoch(batches)
    assert not torch.equal(y1, y2)  # a new order every epoch
    batches.generator.set_state(state)
    x3, y3 = epoch(batches)
    assert torch.equal(y2, y3) and torch.equal(x2, x3)  # shuffling and augmentation replay exactly


def test_augmentation_on_cuda_moves_the_images_and_keeps_their_labels():
    plain, augmented = loader(None), loader(Augment(degrees=15, translate=0.1, scale=0.1))
    (xp, yp), (xa, ya) = epoch(plain), epoch(augmented)
    assert torch.equal(yp, ya)  # same seed: the same order, augmentation draws from the same generator after it
    changed = (xp - xa).abs().flatten(1).amax(1) > 1e-3
    assert changed.float().mean() > 0.95


def test_training_on_cuda_learns_real_digits_in_fp32_and_in_bf16(real_root):
    for model, precision in (("s6", "fp32"), ("s7_4k", "bf16")):
        recipe = spec(model).recipe
        data = DataConfig(str(real_root), recipe.batch_size, subset=10_000, augment=recipe.augment, download=False)
        run = prepare(lambda m=model: build(m), recipe, data, 2, CUDA, precision)
        assert run.precision == precision and next(run.model.parameters()).is_cuda
        history = fit(run, verbose=False)
        assert history[-1]["test_acc"] > 95, (model, history)


def test_print_summary_leaves_a_cuda_model_and_the_cuda_random_stream_alone(capsys):
    torch.manual_seed(0)
    net = build("s7_8k").to(CUDA).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.cuda.get_rng_state()
    print_summary(net)
    assert "Total params" in capsys.readouterr().out
    assert all(v.is_cuda and torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert torch.equal(torch.cuda.get_rng_state(), rng) and net.training


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_mnist(tmp_path_factory.mktemp("mnist"), n_train=2048, n_test=256)


def cuda_args(data, out, *extra):
    return ["--model", "s7_8k", "--epochs", "4", "--ema", "0.99", "--data-dir", str(data), "--out", str(out),
            "--device", "cuda", *extra]  # fmt: skip


def run(data, out, *extra) -> dict:
    proc = run_cli(*cuda_args(data, out, *extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "s7_8k-seed0.json").read_text())


def weights(out):
    return load_checkpoint(out / "s7_8k-seed0.pt")["average"]["weights"]


def largest_gap(a: dict, b: dict) -> float:
    """The largest relative difference between two runs' per-epoch losses."""
    return max(
        abs(x[k] - y[k]) / abs(y[k]) for x, y in zip(a["epochs"], b["epochs"], strict=True) for k in x if "loss" in k
    )


def test_deterministic_cuda_runs_repeat_and_resume_bit_for_bit(data, tmp_path):
    first, second = run(data, tmp_path / "a", "--deterministic"), run(data, tmp_path / "b", "--deterministic")
    assert first["device"] == torch.cuda.get_device_name() and first["deterministic"]
    assert epoch_metrics(first) == epoch_metrics(second)

    resumed_dir = tmp_path / "resumed"
    kill_after_first_checkpoint(cuda_args(data, resumed_dir, "--deterministic"), resumed_dir / "s7_8k-seed0.pt")
    resumed = run(data, resumed_dir, "--deterministic", "--resume")
    assert resumed["resumed_after_epoch"] >= 1
    assert epoch_metrics(resumed) == epoch_metrics(first)
    a, b = weights(resumed_dir), weights(tmp_path / "a")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cuda_resume_without_determinism_drifts_no_more_than_a_rerun_does(data, tmp_path):
    """cuDNN's fastest kernels add in any order, so two runs part after a few steps and drift apart.

    A resumed run may drift from the uninterrupted one as far as a plain re-run does, not further.
    """
    reference, rerun = run(data, tmp_path / "a"), run(data, tmp_path / "b")
    resumed_dir = tmp_path / "resumed"
    kill_after_first_checkpoint(cuda_args(data, resumed_dir), resumed_dir / "s7_8k-seed0.pt")
    resumed = run(data, resumed_dir, "--resume")
    noise, gap = largest_gap(rerun, reference), largest_gap(resumed, reference)
    print(f"largest relative loss gap to the uninterrupted run: re-run {noise:.2e}, resumed {gap:.2e}")
    assert resumed["resumed_after_epoch"] >= 1
    assert gap <= 5 * noise + 1e-3


def test_the_graphed_step_replays_one_graph_per_batch_size_and_trains_as_the_eager_step(tmp_path):
    from lab.graph import GraphStep
    from train import train_steps

    root = make_synthetic_mnist(tmp_path / "data")
    data = DataConfig(str(root), 64, val=64, augment=Augment(), seed=3)  # 448 training images: 7 batches of 64
    found = spec("s6")
    eager, graphed = (prepare(found.build, found.recipe, data, 3, CUDA, "fp32") for _ in range(2))
    step = GraphStep(graphed)
    for epoch in (1, 2, 3):
        expected = train_steps(eager, eager.train_loader, epoch, progress=False)
        got = step(graphed, graphed.train_loader, epoch)
        assert got["acc"] == pytest.approx(expected["acc"], abs=3.0)  # float rounding grows, the learning does not
    assert set(step.graphs) == {64} and step.replays == 7 * 3 - 1  # the first batch warms up, every other replays
    for a, b in zip(eager.model.parameters(), graphed.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-2)
