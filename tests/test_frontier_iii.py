"""The third frontier round's search: draws that fill 60-100 % of the budget, a pruner that stops only the
trials that cannot reach the leaders, the second round's winner asked in each study, and paired comparisons
of a lever added to a study's winner."""

import json
import statistics

import optuna
import pytest
import torch
from conftest import ROOT

from lab import frontier_space, sweep
from lab.nets import Net, Style
from model import count_parameters

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeats
TEACHER = "results/validation/teachers/s6-seed0-val5000.json"


@pytest.mark.parametrize("budget", [5000, 4000, 3000])
def test_draws_land_between_60_and_100_percent_of_the_budget_and_are_rarely_rejected(budget):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=budget))
    shares, rejected = [], 0
    for _ in range(60):
        trial = study.ask()
        layers, dropout, style, recipe = frontier_space.suggest_frontier(trial, budget, TEACHER)
        study.tell(trial, 0.0)
        if layers is None:
            rejected += 1
            continue
        params = count_parameters(Net(layers, dropout, style=style))
        assert params <= trial.params["fill"] * budget and params < budget
        shares.append(params / budget)
        assert (recipe.teacher == TEACHER) == (recipe.distill_weight > 0)
    assert rejected <= 6  # of 60
    assert sum(s >= 0.58 for s in shares) >= 0.95 * len(shares) and statistics.median(shares) > 0.7


def test_every_lever_of_the_space_builds_a_working_net():
    base = {"d1": 1, "d2": 2, "d3": 2, "pad3": False, "residual": True, "w1": 4, "w2": 8, "w3": 8}
    for kind in frontier_space.KINDS:
        for head in frontier_space.HEADS:
            layers = frontier_space.layer_string(**base, kind=kind, head=head)
            for style in (Style(), Style("leaky", "bn2", True), Style("leaky")):
                assert Net(layers, 0.05, style=style)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def leaders_study(values_at_10: list[float]) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=sweep.LeaderPruner())
    for value in values_at_10:
        study.add_trial(optuna.trial.create_trial(value=value, intermediate_values={e: value for e in (10, 14, 15)}))
    return study


def test_the_pruner_stops_only_a_trial_more_than_its_margin_below_the_fifth_leader():
    study = leaders_study([99.5, 99.4, 99.3, 99.2, 99.1, 98.0])  # the fifth best at epoch 10: 99.1
    pruner = sweep.LeaderPruner()

    def pruned(value: float, epoch: int = 10) -> bool:
        trial = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, intermediate_values={epoch: value})
        return pruner.prune(study, trial)

    assert pruned(98.79) and not pruned(98.81)  # 0.3 points below 99.1
    assert not pruned(90.0, epoch=9)  # never before epoch 10
    assert pruned(90.0, epoch=14) and not pruned(90.0, epoch=15)  # nor at the last epoch: it has run to the end
    assert not pruner.prune(leaders_study([99.5, 99.4, 99.3, 99.2]), optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, intermediate_values={10: 90.0}))  # fewer than 5 leaders yet  # fmt: skip


def test_a_frontier_iii_study_asks_the_second_rounds_winner_with_its_own_teacher_never_the_published_one(
    synthetic_root, tmp_path
):
    args = ["--budget", "4000", "--space", "frontier-iii", "--trials", "2", "--epochs", "1", "--val", "64",
            "--subset", "64", "--data-dir", str(synthetic_root), "--out", str(tmp_path)]  # fmt: skip
    assert sweep.main(args) == 0
    export = json.loads((tmp_path / "budget-4000.json").read_text())
    first = export["trials"][0]
    assert first["net"] == "s8_4k" and first["stage_2"] and export["space"] == "frontier-iii"
    assert first["recipe"]["teacher"] == "" and first["recipe"]["distill_weight"] == 0.0  # the study has none
    drawn = export["trials"][1]
    assert drawn["style"] and drawn["recipe"]["augment"]["brightness"] in (0.0, 0.1, 0.25)
    study = optuna.load_study(study_name="budget-4000", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)  # a study's pruner is set when it is opened ...
    opened, _ = sweep.open_study(sweep.parse_args(["--budget", "4000", "--out", str(tmp_path)]), tmp_path)
    assert isinstance(opened.pruner, sweep.LeaderPruner)  # ... by its space

    trial = optuna.trial.FixedTrial({})
    trial.set_user_attr("net", "s8_4k")
    parsed = sweep.parse_args(["--budget", "4000", "--space", "frontier-iii", "--teacher", TEACHER])
    _, name, recipe = sweep.design(trial, parsed)
    assert name == "s8_4k" and recipe.teacher == TEACHER and recipe.distill_weight == 0.8


def test_the_committed_frontier_iii_studies_drew_their_nets_from_this_space():
    """Those trials that drew a lever pruned since are drawn again at commit `frontier_space.PRUNED_AT`."""
    redrawn = 0
    for path in sorted((ROOT / "results" / "validation" / "frontier-iii").glob("budget-*.json")):
        study = json.loads(path.read_text())
        for t in study["trials"]:
            pruned = any(t.get("suggested", {}).get(k) in v for k, v in frontier_space.PRUNED.items())
            if "net" in t or "recipe" not in t or pruned:
                continue
            teacher = t["recipe"]["teacher"] or study.get("teacher", "")
            layers, _, style, recipe = frontier_space.suggest_frontier(
                optuna.trial.FixedTrial(t["suggested"]), study["budget"], teacher
            )
            assert layers == t.get("layers") and sweep.recipe_from_dict(t["recipe"]) == recipe, t["number"]
            redrawn += 1
    assert redrawn >= 60  # over half of the trials the 3 studies drew


def test_a_study_drawn_before_levers_were_pruned_is_continued_at_the_commit_that_has_them(
    synthetic_root, tmp_path, capsys
):
    (tmp_path / "optuna.db").write_bytes((ROOT / "results" / "validation" / "frontier-iii" / "optuna.db").read_bytes())
    tiny = ["--budget", "3000", "--epochs", "1", "--val", "64", "--subset", "64", "--data-dir", str(synthetic_root),
            "--out", str(tmp_path)]  # fmt: skip
    assert sweep.main([*tiny, "--trials", "60"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"continue it at commit {frontier_space.PRUNED_AT}" in err
    assert sweep.main([*tiny, "--export"]) == 0  # exporting still reads it


def test_a_lever_added_to_the_winner_is_compared_on_its_seeds_and_never_takes_its_place(synthetic_root, tmp_path):
    """`--best-with` in a third-round study: a paired comparison with stage 2's winner, never a new winner."""
    tiny = ["--budget", "4000", "--space", "frontier-iii", "--epochs", "1", "--val", "64", "--subset", "64",
            "--data-dir", str(synthetic_root), "--out", str(tmp_path), "--confirm", "2",
            "--confirm-seeds", "1"]  # fmt: skip
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert sweep.main([*tiny, "--trials", "1"]) == 0  # s8_4k only: no drawn trial, so no winner yet
    with pytest.raises(sweep.UserError, match="has no stage-2 winner yet"):
        sweep.variant(optuna.load_study(study_name="budget-4000", storage=storage), ['act="leaky"'], "")
    assert sweep.main([*tiny, "--trials", "3"]) == 0
    won = json.loads((tmp_path / "budget-4000.json").read_text())["winner"]
    other = "leaky" if won["suggested"]["act"] != "leaky" else "relu"
    study = optuna.load_study(study_name="budget-4000", storage=storage)
    with pytest.raises(sweep.UserError, match="unknown parameter width; known: act, act_first"):
        sweep.variant(study, ["width=8"], "")
    with pytest.raises(sweep.UserError, match="'relu6' not in"):
        sweep.variant(study, ['act="relu6"'], "")
    if won["suggested"]["optimizer"] == "adamw":  # SGD needs its own rate and momentum
        with pytest.raises(sweep.UserError, match="momentum"):
            sweep.variant(study, ['optimizer="sgd"'], "")

    assert sweep.main([*tiny, "--trials", "4", "--best-with", f'act="{other}"']) == 0
    export = json.loads((tmp_path / "budget-4000.json").read_text())
    pair = next(t for t in export["trials"] if "variant_of" in t)
    assert pair["variant_of"] == won["number"] and pair["suggested"] == {**won["suggested"], "act": other}
    assert pair["style"]["act"] == other and pair["layers"] == won["layers"] and pair["state"] == "complete"
    assert list(export["confirmation"][str(pair["number"])]["scores"]) == ["0", "1"]  # the winner's seeds
    for seed in (0, 1):  # a variant far ahead on every seed is still a comparison, not the winner
        study.set_user_attr(f"confirm:{pair['number']}:{seed}", {"score": 100.0})
    assert sweep.winner(study) == won["number"]
    assert pair["number"] not in [t.number for t in sweep.finalists(study, 2)[:2]]  # nor displaces a finalist
