"""The CUDA-graph training step, run eagerly on the CPU: the same arithmetic as the ordinary step."""

import itertools
import json
from dataclasses import replace

import pytest
import torch

from lab import graph
from lab.engine import WeightAverage
from lab.recipes import LabRecipe
from model import S6
from train import Recipe, prepare, train_steps
from utils import Augment, DataConfig, NonFiniteLoss


def twin_runs(synthetic_root, recipe: Recipe, dtype: torch.dtype = torch.float32):
    """The same run prepared twice: one for the ordinary step, one for the graphed step."""
    data = DataConfig(str(synthetic_root), 64, val=64, augment=Augment(), seed=3)
    runs = [prepare(lambda: S6(dropout=0.0), recipe, data, 2, torch.device("cpu"), "fp32") for _ in range(2)]
    for run in runs:
        run.model.to(dtype)  # the optimizer keeps the same parameters
        if run.average is not None:
            run.average = WeightAverage(run.model, run.average.decay)
    return runs


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(lr=0.05, weight_decay=5e-4),  # StepLR, momentum 0.9
        Recipe(lr=0.05, schedule="onecycle", nesterov=True),  # momentum cycled every batch, Nesterov
        LabRecipe(lr=0.05, schedule="onecycle", ema=0.99),  # and a weight average
        Recipe(lr=0.05, momentum=0.0),  # plain SGD
    ],
    ids=["step-decay", "onecycle-nesterov", "weight-average", "plain"],
)
def test_the_graphed_step_trains_as_sgd_and_the_weight_average_do(synthetic_root, recipe):
    """Batch by batch, the same weights up to rounding: SGD adds `-lr * grad` in one fused op, where the graph,
    which cannot pass a tensor as `alpha`, multiplies first. In float32 training amplifies such last-bit
    differences within a few steps, so the arithmetic is compared in float64."""
    plain, graphed = twin_runs(synthetic_root, recipe, torch.float64)
    step = graph.GraphStep(graphed)
    for x, y in itertools.islice(iter(plain.train_loader), 5):
        x = x.double()
        expected = train_steps(plain, [(x, y)], progress=False)
        got = step(graphed, [(x, y)])
        assert got["acc"] == expected["acc"] and got["loss"] == pytest.approx(expected["loss"], rel=1e-6)
        assert graphed.optimizer.param_groups[0]["lr"] == plain.optimizer.param_groups[0]["lr"]
        nets = [(plain.model, graphed.model)]
        if plain.average is not None:
            nets.append((plain.average.module, graphed.average.module))
            assert graphed.average.updates == plain.average.updates
        for ours, theirs in nets:
            for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
                assert torch.allclose(a.double(), b.double(), rtol=1e-9, atol=1e-12)
    if recipe.momentum:  # the buffers live where SGD keeps them, so a checkpoint holds them
        assert all("momentum_buffer" in graphed.optimizer.state[p] for p in graphed.model.parameters())


def test_a_graphed_epoch_scores_as_an_ordinary_one(synthetic_root):
    plain, graphed = twin_runs(synthetic_root, Recipe(lr=0.05, schedule="onecycle"))
    expected = train_steps(plain, plain.train_loader, 1, progress=False)
    got = graph.GraphStep(graphed)(graphed, graphed.train_loader, 1)
    assert got["acc"] == pytest.approx(expected["acc"], abs=0.5) and got["loss"] == pytest.approx(
        expected["loss"], rel=1e-3
    )


def test_the_graphed_step_stops_on_a_non_finite_loss(synthetic_root):
    _, run = twin_runs(synthetic_root, Recipe(lr=1e30))
    with pytest.raises(NonFiniteLoss, match="loss became NaN/inf in epoch 1"):
        graph.GraphStep(run)(run, run.train_loader, 1)


def test_the_graphed_step_refuses_another_optimizer(synthetic_root):
    _, run = twin_runs(synthetic_root, replace(Recipe(), optimizer="adamw"))
    with pytest.raises(graph.UserError, match="written for SGD"):
        graph.GraphStep(run)


def test_the_comparison_trains_each_seed_both_ways_and_records_them(synthetic_root, tmp_path):
    argv = ["--model", "s8_8k", "--seeds", "0", "--val", "64", "--epochs", "1", "--data-dir", str(synthetic_root),
            "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert graph.main(argv) == 0
    record = json.loads((tmp_path / "graph-cpu.json").read_text())
    seed = record["seeds"]["0"]
    assert set(seed) == {"eager", "graph"} and len(seed["graph"]["val_acc"]) == 1
    assert seed["graph"]["val_acc"] == seed["eager"]["val_acc"]  # on a CPU the graphed step runs eagerly
