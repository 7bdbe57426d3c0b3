"""The third frontier round's levers: each new token and style counted by hand, Adam and AdamW, and a teacher
made of several nets."""

import copy
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lab.engine import Ensemble, Loss, load_teacher, soft_targets
from lab.nets import LayerNorm2, Net, Style
from lab.recipes import LabRecipe
from model import count_parameters
from train import Recipe, UserError, make_optimizer
from utils import DataConfig

STEM = 9 * 4 + 2 * 4  # "4p": a 3x3 convolution from the image to 4 maps and its BatchNorm


def test_a_dense_head_pools_then_maps_through_a_small_linear_layer():
    net = Net("4p h16")  # GAP, 4 -> 16 with biases, ReLU, 16 -> 10 with biases
    assert count_parameters(net) == STEM + (4 * 16 + 16) + (16 * 10 + 10)
    assert isinstance(net[-1][-1], nn.Linear) and net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="must be the last layer"):
        Net("4p h16 8p")


def test_a_two_parameter_norm_has_one_scale_and_one_shift_per_layer():
    net = Net("4p 8p", style=Style(norm="bn2"))
    assert count_parameters(net) == (9 * 4 + 2) + (9 * 4 * 8 + 2) + 8 * 10
    norm = LayerNorm2(3).train()
    x = torch.randn(64, 3, 5, 5) * 4 + 2
    with torch.no_grad():
        norm.weight.fill_(2.0)
        norm.bias.fill_(-1.0)
    out = norm(x)  # each map normalised by its batch statistics, then the one scale and shift
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.full((3,), -1.0), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.full((3,), 2.0), atol=1e-2)


def test_act_first_puts_the_activation_before_the_norm_and_a_pruned_lever_is_refused():
    first = Net("4p 8p", style=Style(act="leaky", act_first=True))
    assert [type(m).__name__ for m in first[0]] == ["Conv2d", "LeakyReLU", "BatchNorm2d"]
    assert [type(m).__name__ for m in Net("4p 8p")[0]] == ["Conv2d", "BatchNorm2d", "ReLU"]
    for act in ("gelu", "prelu"):  # PReLU lost its paired comparison (frontier_space.PRUNED)
        with pytest.raises(ValueError, match="act is one of"):
            Style(act=act)
    with pytest.raises(ValueError, match="bad layer '8f'"):  # so did factorised convolutions
        Net("4p 8f")


@pytest.mark.parametrize("name, kind", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_and_adamw_train_with_the_recipes_rate_and_decay_and_onecycle_cycles_their_beta(name, kind):
    model = nn.Linear(4, 2)
    recipe = Recipe(optimizer=name, lr=0.01, weight_decay=5e-5, schedule="onecycle")
    optimizer, scheduler, per_batch = make_optimizer(model, recipe, epochs=2, steps_per_epoch=10)
    assert type(optimizer) is kind and per_batch
    assert optimizer.param_groups[0]["weight_decay"] == 5e-5
    betas = []
    for _ in range(20):
        optimizer.step()
        scheduler.step()
        betas.append(optimizer.param_groups[0]["betas"][0])
    assert min(betas) < 0.9 < max(betas)  # cycled between 0.85 and 0.95
    with pytest.raises(UserError, match="unknown optimizer 'lamb'"):
        make_optimizer(model, replace(recipe, optimizer="lamb"), 2, 10)


def test_an_ensembles_soft_targets_are_the_mean_of_its_members_probabilities():
    torch.manual_seed(0)
    a, b = nn.Linear(6, 10), nn.Linear(6, 10)
    x = torch.randn(5, 6)
    mean = (F.softmax(a(x) / 4, dim=1) + F.softmax(b(x) / 4, dim=1)) / 2
    assert torch.allclose(soft_targets(Ensemble([a, b]), x, 4.0).exp(), mean, atol=1e-6)
    assert torch.allclose(soft_targets(Ensemble([a, copy.deepcopy(a)]), x, 4.0), soft_targets(a, x, 4.0), atol=1e-6)
    assert torch.allclose(Ensemble([a, b])(x).exp().sum(1), torch.ones(5))  # scored as log-probabilities
    loss = Loss(teacher=Ensemble([a, b]), weight=1.0, temperature=4.0)(a(x), x, torch.zeros(5, dtype=torch.long))
    assert loss.item() > 0 and math.isfinite(loss.item())


def test_an_ensemble_teacher_is_loaded_member_by_member_and_refused_if_one_saw_the_validation_images(tmp_path):
    record = "results/validation/teachers/s6-seed0-val5000.json"
    data = DataConfig("unused", val=5000)
    teacher = load_teacher(LabRecipe(teacher=f"{record},{record}"), data, torch.device("cpu"))
    assert isinstance(teacher, Ensemble) and len(teacher.members) == 2
    with pytest.raises(UserError, match="a teacher must train on exactly the images its student may see"):
        load_teacher(LabRecipe(teacher=f"{record},results/s6-seed0.json"), data, torch.device("cpu"))


def test_the_teacher_tool_refuses_a_member_that_saw_the_validation_images(capsys):
    from lab import teacher

    assert teacher.main(["--teacher", "results/s6-seed0.json", "--data-dir", "nowhere", "--out", "runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained with --val 0" in err


def test_each_teacher_is_scored_into_a_file_of_its_own_named_after_its_members():
    from lab import teacher

    t = "results/validation/teachers"
    ensemble = f"{t}/s9_20k-seed0-val5000.json,{t}/s9_20k-seed1-val5000.json,{t}/s9_20k-seed2-val5000.json"
    assert teacher.record_name(ensemble, 5000) == "teacher-s9_20k-seed0-and-s9_20k-seed1-and-s9_20k-seed2.json"
    other = f"{t}/s9_20k-seed0-val5000.json,{t}/s9_8k-seed0-val5000.json,{t}/s9_10k-seed0-val5000.json"
    assert teacher.record_name(other, 5000) != teacher.record_name(ensemble, 5000)  # as many members, another name
    assert teacher.record_name(f"{t}/s6-seed0-val5000.json", 5000) == "teacher-s6-seed0.json"
