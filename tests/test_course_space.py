"""The course nets' search space: every draw fits its budget and the cost cap, and a course study
trains its budget's public nets beside its own, in both stages, without letting them win."""

import json

import optuna
import pytest
from conftest import ROOT

from lab import course_space, sweep
from lab.nets import Net, multiply_adds
from model import count_parameters

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeats


def draws(budget: int, n: int = 40) -> list[tuple[optuna.trial.FrozenTrial, str | None, object]]:
    """n random draws of the space for one budget: (trial, layers, recipe)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=budget))
    out = []
    for _ in range(n):
        trial = study.ask()
        layers, _, recipe = course_space.suggest_course(trial, budget)
        study.tell(trial, 0.0)
        out.append((study.trials[-1], layers, recipe))
    return out


@pytest.mark.parametrize("budget", [20_000, 10_000, 8_000])
def test_every_draw_is_the_widest_net_of_its_shape_within_its_share_of_the_budget_and_the_cost_cap(budget):
    for trial, layers, _ in draws(budget):
        assert layers is not None, trial.params  # no draw is wasted
        net, most = Net(layers), min(int(trial.params["fill"] * budget), budget - 1)
        assert count_parameters(net) <= most and multiply_adds(net) <= course_space.MAC_CAP
        shape = {k: trial.params.get(k, True) for k in ("d1", "pad1", "d2", "d3", "pad3", "residual")}
        w2 = int(layers.split(" M ")[1].split()[0].rstrip("p"))
        wider = course_space.layer_string(
            **shape,
            w1=max(2, round(trial.params["narrow"] * (w2 + 1))),
            w2=w2 + 1,
            w3=max(2, round(trial.params["taper"] * (w2 + 1))),
        )
        assert count_parameters(Net(wider)) > most or multiply_adds(Net(wider)) > course_space.MAC_CAP


def test_the_notebook_budget_keeps_steplr_and_the_smaller_ones_may_take_onecycle():
    assert {recipe.schedule for _, _, recipe in draws(20_000)} == {"step"}
    assert {recipe.schedule for _, _, recipe in draws(8_000)} == {"step", "onecycle"}
    for budget in (20_000, 8_000):
        for _, _, recipe in draws(budget, 10):  # what a student can train with the course code alone
            assert (recipe.ema, recipe.teacher, recipe.precision, recipe.batch_size) == (0.0, "", "fp32", 128)


def test_a_course_net_has_the_parameters_counted_by_hand():
    layers = course_space.layer_string(d1=1, pad1=False, d2=2, d3=2, pad3=False, residual=False, w1=4, w2=8, w3=16)
    assert layers == "4 M 8p 8p M 16 16"
    # conv weights 9 * in * out, BatchNorm 2 per map, head 16 * 10
    assert (
        count_parameters(Net(layers))
        == (9 * 4 + 8) + (9 * 4 * 8 + 16) + (9 * 8 * 8 + 16) + (9 * 8 * 16 + 32) + (9 * 16 * 16 + 32) + 16 * 10
    )
    residual = course_space.layer_string(d1=2, pad1=True, d2=3, d3=2, pad3=True, residual=True, w1=4, w2=8, w3=8)
    assert residual == "4p [ 4p ] M 8p [ 8p 8p ] M 8p [ 8p ]"  # a shortcut adds no parameters
    plain = residual.replace("[ ", "").replace(" ]", "")
    assert count_parameters(Net(residual)) == count_parameters(Net(plain))
    single = course_space.layer_string(d1=1, pad1=True, d2=2, d3=2, pad3=True, residual=True, w1=4, w2=8, w3=8)
    assert single.startswith("4p M")  # no shortcut around nothing


def test_a_course_study_trains_its_budgets_public_nets_in_both_stages_but_never_names_one_its_winner(
    synthetic_root, tmp_path
):
    args = ["--budget", "8000", "--space", "course", "--rank", "worst", "--trials", "4", "--confirm", "1",
            "--confirm-seeds", "1", "--epochs", "1", "--val", "64", "--subset", "64", "--data-dir",
            str(synthetic_root), "--out", str(tmp_path)]  # fmt: skip
    assert sweep.main(args) == 0
    export = json.loads((tmp_path / "budget-8000.json").read_text())
    first = export["trials"][:2]
    assert [t["net"] for t in first] == ["ref_7946", "ref_7904"] and [t["params"] for t in first] == [7946, 7904]
    assert all(t["state"] == "complete" and "stage_2" in t for t in first)
    assert export["space"] == "course" and all(t["recipe"]["precision"] == "fp32" for t in export["trials"][2:])
    assert {"0", "1"} <= set(export["confirmation"]) and len(export["confirmation"]) == 3  # the two, the best drawn
    assert "net" not in export["winner"]


def test_a_study_keeps_the_space_it_was_begun_with_and_best_with_is_the_frontiers(synthetic_root, tmp_path):
    storage = ["--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    study, _ = sweep.open_study(sweep.parse_args(["--budget", "8000", *storage, "--space", "course"]), tmp_path)
    continued = sweep.parse_args(["--budget", "8000", *storage])
    assert sweep.open_study(continued, tmp_path)[0].user_attrs["space"] == "course" and continued.space == "course"
    with pytest.raises(sweep.UserError, match="was begun with --space course"):
        sweep.open_study(sweep.parse_args(["--budget", "8000", *storage, "--space", "frontier"]), tmp_path)
    with pytest.raises(sweep.UserError, match="--best-with"):
        sweep.ask_for(study, ["lr=0.1"], False)


def test_the_committed_course_studies_drew_their_nets_from_this_space():
    """Each drawn trial of results/validation/course/, drawn again from its suggested values, is the same net."""
    for path in sorted((ROOT / "results" / "validation" / "course").glob("budget-*.json")):
        study = json.loads(path.read_text())
        for t in study["trials"]:
            if "net" in t or "recipe" not in t:
                continue
            layers, _, recipe = course_space.suggest_course(optuna.trial.FixedTrial(t["suggested"]), study["budget"])
            assert layers == t.get("layers") and sweep.recipe_from_dict(t["recipe"]) == recipe, t["number"]


def test_each_course_budget_with_a_decided_study_is_answered_by_its_winner():
    """The first net of a budget's course row is stage 2's winner: the same layers, dropout and recipe."""
    from dataclasses import asdict

    from lab.nets import COURSE_LAYERS
    from lab.report import COURSE
    from train import RECIPES

    for path in sorted((ROOT / "results" / "validation" / "course").glob("budget-*.json")):
        study = json.loads(path.read_text())
        won = study.get("winner")
        if won is None or study["budget"] not in COURSE:
            continue
        name = COURSE[study["budget"]][0]
        assert (COURSE_LAYERS[name].layers, COURSE_LAYERS[name].dropout) == (won["layers"], won["suggested"]["dropout"])
        assert sweep.recipe_from_dict(asdict(RECIPES[name])) == sweep.recipe_from_dict(won["recipe"]), name
