import json
from dataclasses import replace

import pytest
import report

from utils import RECIPES, Recipe


def test_readme_and_summary_are_generated_from_the_committed_results():
    """README.md and summary.json must equal what report.py renders from results/ now: no typed or stale numbers."""
    assert report.main(["--check"]) == 0


def fake_run(model, seed, accs):
    epochs = [{"epoch": i + 1, "test_acc": a, "train_acc": a - 0.1} for i, a in enumerate(accs)]
    return {
        "model": model,
        "params": 7432,
        "budget": 8000,
        "seed": seed,
        "epochs": epochs,
        "train_time_s": 60,
        "device": "cpu",
        "eval_split": "test",
        "config": {"epochs": len(accs)},
    }


def test_a_missed_target_is_reported_as_missed(tmp_path):
    (tmp_path / "s7_8k-seed0.json").write_text(json.dumps(fake_run("s7_8k", 0, [99.0, 99.5, 99.39, 99.6])))
    (tmp_path / "s7_8k-seed1.json").write_text(json.dumps(fake_run("s7_8k", 1, [99.0, 99.41, 99.4, 99.45])))
    (tmp_path / "s7_8k-seed2-subset256.json").write_text(json.dumps(fake_run("s7_8k", 2, [10.0])))  # not published
    table = report.results_table(report.load_runs(tmp_path)).splitlines()
    assert len(table) == 4
    assert "| 0 |" in table[2] and "99.60 %" in table[2] and "99.39 %" in table[2] and "**missed**" in table[2]
    assert "| 1 |" in table[3] and "| 99.40 % | 2 | met |" in table[3]


def test_summary_counts_every_seed_and_flags_misses(tmp_path):
    for seed, accs in enumerate([[99.5, 99.5, 99.5], [99.3, 99.45, 99.39], [99.6, 99.6, 99.7]]):
        (tmp_path / f"s6-seed{seed}.json").write_text(json.dumps(fake_run("s6", seed, accs)))
    s = report.summarize(report.load_runs(tmp_path))["s6"]
    assert s["seeds"] == [0, 1, 2] and s["seeds_at_target_last3"] == 2
    assert s["final_acc_mean"] == pytest.approx((99.5 + 99.39 + 99.7) / 3)
    assert s["final_acc_min"] == 99.39 and s["final_acc_max"] == 99.7
    assert s["first_epoch_at_target"] == [1, 2, 1]
    assert "| 2 of 3 |" in report.summary_table({"s6": s})
    assert report.goal_verdicts({"s6": s})[20_000]["verdict"] == "missed"  # 5 of 5 needed: one failed seed settles it


@pytest.mark.parametrize(
    ("goal", "held", "n", "mean", "verdict"),
    [
        (report.Goal(5), 3, 3, 99.5, "pending"),  # so far so good, but fewer than 5 seeds ran
        (report.Goal(5), 5, 5, 99.4, "met"),
        (report.Goal(5), 4, 5, 99.5, "missed"),
        (report.Goal(4), 4, 5, 99.4, "met"),  # the < 5k moonshot may lose one seed ...
        (report.Goal(4), 3, 4, 99.4, "pending"),
        (report.Goal(4), 2, 4, 99.4, "missed"),  # ... but not two
        (report.Goal(5, mean_final=99.5), 5, 5, 99.49, "missed"),  # every seed holds, the mean is short
        (report.Goal(5, mean_final=99.5), 5, 5, 99.5, "met"),
    ],
)
def test_goal_verdict_weighs_seeds_held_and_mean(goal, held, n, mean, verdict):
    summary = {"seeds": list(range(n)), "seeds_at_target_last3": held, "final_acc_mean": mean}
    assert report.goal_verdict(goal, summary) == verdict


def write_runs(folder, model, held_by_seed):
    """One fake 15-epoch run per seed: True holds 99.45 % in the last 3 epochs, False dips to 99.35 %."""
    for seed, held in enumerate(held_by_seed):
        accs = [99.0] * 12 + ([99.45] * 3 if held else [99.45, 99.35, 99.45])
        (folder / f"{model}-seed{seed}.json").write_text(json.dumps(fake_run(model, seed, accs)))


def test_goal_table_gives_every_budget_a_verdict(tmp_path):
    """Each budget's row reports the net that holds it; a net holding several budgets answers each with its runs."""
    holders = {b: report.holder(b) for b in report.GOALS}
    assert all(holders.values()), holders
    nets = list(dict.fromkeys(holders[b] for b in report.FRONTIER))
    write_runs(tmp_path, nets[0], [True, True, False, True, True])  # 4 of 5
    if len(nets) > 1:
        write_runs(tmp_path, nets[-1], [True, True, True])  # 3 of 3 so far
    summary = report.summarize(report.load_runs(tmp_path))
    table = report.goal_table(summary, report.goal_verdicts(summary))
    rows = {int(line.split(" | ")[0].strip("|< ").replace(",", "")): line for line in table.splitlines()[2:]}
    assert set(rows) == set(report.GOALS)
    assert rows[20_000].endswith("| not run yet |") and f"`{holders[20_000]}`" in rows[20_000]
    for budget in report.FRONTIER:
        assert f"`{holders[budget]}`" in rows[budget]
        if holders[budget] == nets[0]:
            verdict = "**missed**" if report.GOALS[budget].seeds_holding == 5 else "met"
            assert "| 4 of 5 |" in rows[budget] and rows[budget].endswith(f"| {verdict} |")
        elif len(nets) > 1 and holders[budget] == nets[-1]:
            assert rows[budget].endswith("| pending |")


def test_superseded_designs_stay_in_the_story_with_their_numbers(tmp_path):
    """Two generations of designs once named s7_8k: each keeps its own row and numbers."""
    for design, holding in (("hand-designed", [True, True, True, False, False]), ("no-weight-average", [True, False])):
        (tmp_path / "old" / design).mkdir(parents=True)
        write_runs(tmp_path / "old" / design, "s7_8k", holding)
    write_runs(tmp_path, "s6", [True] * 5)
    superseded = report.load_superseded(tmp_path / "old")
    story = report.story(report.load_runs(tmp_path), superseded).splitlines()
    hand = next(line for line in story if line.startswith("| `s7_8k` (hand designed, superseded) |"))
    assert "3 of 5 seeds hold ≥ 99.4 %" in hand and "**Superseded**" in hand
    last = next(line for line in story if line.startswith("| `s7_8k` (no weight average, superseded) |"))
    assert "1 of 2 seeds hold ≥ 99.4 %" in last and "**Superseded**" in last
    new = next(line for line in story if line.startswith(f"| `{report.holder(8000)}` |"))
    assert "**not run here**" in new
    table = report.summary_table(report.summarize(superseded)).splitlines()[2:]
    assert [row.split(" | ")[0] for row in table] == ["| `s7_8k` (hand designed)", "| `s7_8k` (no weight average)"]


def test_a_first_round_net_replaced_by_a_second_round_winner_stays_in_the_story(tmp_path):
    """s7_8k held < 8k until frontier-ii's stage 2 chose s8_8k: its runs keep a row, which names its successor."""
    old, new = report.first_round(8000), report.holder(8000)
    assert old and new and old != new and old not in report.searched_nets()
    write_runs(tmp_path, "s6", [True] * 5)
    write_runs(tmp_path, old, [True, True, False])
    write_runs(tmp_path, new, [True, True, True, True, True])
    story = report.story(report.load_runs(tmp_path), []).splitlines()
    first = next(line for line in story if line.startswith(f"| `{old}` (first round, superseded) |"))
    assert "2 of 3 seeds hold ≥ 99.4 %" in first and f"**Superseded** by `{new}`" in first
    assert "results/validation/budget-8000.json" in first  # chosen by the first round's study
    winner = next(line for line in story if line.startswith(f"| `{new}` |"))
    assert "5 of 5 seeds hold ≥ 99.4 %" in winner and "frontier-ii/budget-8000.json" in winner
    assert f"{report.label(old)} (7,432 parameters) held on 2 of 3 seeds" in winner  # among the earlier designs


def test_five_minute_check_uses_runs_made_alone_and_flags_slow_ones():
    def timed(model, seed, device, seconds):
        run = fake_run(model, seed, [99.5] * 3)
        run.update(device=device, train_time_s=seconds - 5, setup_time_s=5, command="python train.py")
        run["config"]["batch_size"] = 128
        return run

    runs = [timed("s7_8k", 0, report.ALONE, 290), timed("s7_8k", 1, "cpu (1 thread)", 200),
            timed("s7_4k", 0, report.ALONE, 320)]  # fmt: skip
    lines = report.full_run_times(runs).splitlines()
    assert "| 4.8 min (met) |" in lines[2] and "| 3.3 min |" in lines[2]  # the 1-thread run is not the timing
    assert "| 5.3 min (**missed**) |" in lines[3]


@pytest.mark.parametrize("content", ["{not json", '{"model": "s6"}', "[1, 2]"])
def test_a_damaged_results_file_is_named_in_one_line(tmp_path, monkeypatch, capsys, content):
    (tmp_path / "s6-seed0.json").write_text(content)
    with pytest.raises(report.UserError, match="s6-seed0.json"):
        report.load_runs(tmp_path)
    load = report.load_runs
    monkeypatch.setattr(report, "load_runs", lambda: load(tmp_path))
    assert report.main(["--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s6-seed0.json" in err[0]


def test_the_models_table_names_the_teacher_of_a_distilled_net(monkeypatch):
    def row():
        return next(line for line in report.models_table().splitlines() if line.startswith("| `s7_3k`"))

    assert "distilled" not in row()
    recipe = replace(RECIPES["s7_3k"], teacher="results/validation/teachers/s6-seed0-val5000.json", distill_weight=0.5)
    monkeypatch.setitem(RECIPES, "s7_3k", recipe)
    assert row().endswith("distilled from `results/validation/teachers/s6-seed0-val5000.json` (50% of the loss) |")


def test_the_goal_table_says_which_nets_were_distilled_and_from_what(tmp_path, monkeypatch):
    recipe = replace(RECIPES["s7_10k"], teacher="results/s6-seed0.json", distill_weight=0.5)
    write_runs(tmp_path, "s7_10k", [True] * 5)
    summary = report.summarize(report.load_runs(tmp_path))
    before = report.goal_table(summary, report.goal_verdicts(summary))
    monkeypatch.setitem(RECIPES, "s7_10k", recipe)
    after = report.goal_table(summary, report.goal_verdicts(summary))
    assert "distilled" not in before
    assert "| `s7_10k` (7,432; distilled from `s6`, not counted) |" in after  # 7,432: fake_run's count


def fake_trial(number, state, score=None, params=3000, conv="plain", residual=False, share=False, distill=0.5):
    suggested = {"dropout": 0.0, "conv": conv, "residual": residual, "share": share}
    return {"number": number, "state": state, "score": score, "params": params, "layers": "4p M 8p M 8",
            "recipe": {"distill_weight": distill}, "suggested": suggested}  # fmt: skip


@pytest.fixture
def fresh_studies():
    """report reads each study once: these tests' fake studies must not stay in its caches."""
    caches = (report.study_path, report.study, report.holder)
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()


def test_a_second_round_study_is_shown_as_it_stands_and_chooses_only_once_stage_2_has_a_winner(
    tmp_path, monkeypatch, fresh_studies
):
    first, second = tmp_path, tmp_path / "frontier-ii"
    second.mkdir()
    trials = [fake_trial(0, "complete", 99.1, conv="separable", residual=True), fake_trial(1, "pruned", share=True,
              distill=0.0), fake_trial(2, "rejected", conv="separable"), fake_trial(3, "complete", 99.3, residual=True),
              fake_trial(4, "fail", conv="separable")]  # fmt: skip
    export = {"trials": trials, "best": trials[3], "winner": None, "confirmation": {}}
    (first / "budget-4000.json").write_text(json.dumps({"trials": [], "best": None}))
    (second / "budget-4000.json").write_text(json.dumps(export))
    monkeypatch.setattr(report, "STUDIES", first)
    monkeypatch.setattr(report, "STUDIES_II", second)

    assert report.study_path(4000) == first / "budget-4000.json"  # no winner yet: the first round still chooses
    table = report.frontier_ii([]).splitlines()
    assert table[2].startswith("| [`budget-4000`]") and "| 3 | 2 / 1 | 1 | 1 | 1 / 2 / 1 / 2 |" in table[2]
    assert "3 (3,000 params, 99.30 %), 0 (3,000 params, 99.10 %)" in table[2] and "Stage 2" not in "".join(table)

    confirmation = {"0": {"scores": {"0": 99.1, "1": 99.4}, "mean": 99.25}, "3": {"scores": {"0": 99.3, "1": 99.1},
                    "mean": 99.2}}  # fmt: skip
    (second / "budget-4000.json").write_text(json.dumps({**export, "confirmation": confirmation, "winner": trials[0]}))
    report.study_path.cache_clear()  # report reads which study chooses once per run
    assert report.study_path(4000) == second / "budget-4000.json"
    rows = [r for r in report.frontier_ii([]).splitlines() if r.startswith("| `budget-4000` |")]
    assert rows[0].startswith("| `budget-4000` | 0 |") and "| 99.10, 99.40 | 99.250 % | **winner** |" in rows[0]
    assert rows[1].endswith("| 99.30, 99.10 | 99.200 % |  |")

    variant = {**fake_trial(5, "complete", 99.0), "asked_for": "trial 0 with ema=0.999", "stage_2": True}
    confirmation["5"] = {"scores": {"0": 99.0, "1": 99.2}, "mean": 99.1}
    exported = {**export, "trials": [*trials, variant], "confirmation": confirmation, "winner": trials[0]}
    (second / "budget-4000.json").write_text(json.dumps(exported))
    rows = [r for r in report.frontier_ii([]).splitlines() if r.startswith("| `budget-4000` |")]
    assert rows[2].startswith("| `budget-4000` | 5 (0 with ema=0.999) |") and rows[2].endswith("| 99.100 % |  |")


def test_a_published_recipe_may_distil_from_the_study_teacher_trained_again_on_all_training_images():
    studied = Recipe(lr=0.1, teacher="results/validation/teachers/s6-seed0-val5000.json", distill_weight=0.5)
    assert report.is_chosen_recipe(replace(studied, teacher="results/s6-seed0.json", precision="fp32"), studied)
    assert not report.is_chosen_recipe(replace(studied, teacher="results/s6-seed1.json"), studied)  # another seed
    assert not report.is_chosen_recipe(replace(studied, teacher="results/s7_10k-seed0.json"), studied)  # another net
    assert not report.is_chosen_recipe(replace(studied, teacher=""), studied)
    assert not report.is_chosen_recipe(replace(studied, teacher="results/s6-seed0.json", lr=0.2), studied)
