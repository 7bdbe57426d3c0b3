import json
from dataclasses import replace

import pytest

from lab import report
from lab.recipes import RECIPES


def test_readmes_and_summary_are_generated_from_the_committed_results():
    """Both READMEs and summary.json equal what the report renders from results/ now: no typed or stale numbers."""
    assert report.main(["--check"]) == 0


def fake_run(model, seed, accs, device="cpu (2 threads)", seconds=60):
    epochs = [{"epoch": i + 1, "test_acc": a, "train_acc": a - 0.1} for i, a in enumerate(accs)]
    return {"model": model, "params": 7432, "budget": 8000, "seed": seed, "epochs": epochs, "train_time_s": seconds,
            "device": device, "eval_split": "test", "config": {"epochs": len(accs)},
            "command": "python train.py"}  # fmt: skip


def write(folder, name, run):
    (folder / name).write_text(json.dumps(run))


def test_summary_counts_every_seed_and_a_near_miss_is_a_miss(tmp_path):
    for seed, accs in enumerate([[99.5, 99.5, 99.5], [99.3, 99.45, 99.39], [99.6, 99.6, 99.7]]):
        write(tmp_path, f"s6-seed{seed}.json", fake_run("s6", seed, accs))
    write(tmp_path, "s6-seed3-subset256.json", fake_run("s6", 3, [10.0]))  # a smoke run: not published
    write(tmp_path, "notebook-s6-seed0.json", fake_run("s6", 0, [10.0]))  # the notebook's: told apart
    s = report.summarize(report.load_runs(tmp_path))["s6"]
    assert s["seeds"] == [0, 1, 2] and s["held"] == 2 and s["lowest_last3"] == 99.3
    assert s["final_mean"] == pytest.approx((99.5 + 99.39 + 99.7) / 3)
    assert report.verdict(s) == "**missed**"  # the course's target: every seed
    assert "| 2 of 3 |" in report.summary_table({"s6": s})


@pytest.mark.parametrize(
    ("needed", "held", "n", "verdict"),
    [
        (None, 5, 5, "held on every seed"),
        (None, 9, 10, "**missed**"),
        (4, 4, 5, "met"),  # the < 4k goal may lose one seed of five ...
        (4, 3, 5, "**missed**"),  # ... but not two
        (4, 4, 4, "**missed**"),  # and needs five seeds run
    ],
)
def test_verdicts_weigh_the_seeds_that_hold(needed, held, n, verdict):
    assert report.verdict({"held": held, "seeds": list(range(n))}, needed) == verdict


def test_the_course_table_gives_each_course_budget_its_net_cpu_and_gpu_seeds_and_times():
    cpu = report.summarize([fake_run("s6", s, [99.5] * 3, seconds=300 + s) for s in range(3)])
    gpu = report.summarize([fake_run("s6", 0, [99.3] * 3, device="NVIDIA H200", seconds=9)])
    row = next(line for line in report.course_table(cpu, gpu, {}).splitlines() if "`s6`" in line)
    assert "| < 20,000 | `s6` | 7,432 | 3 of 3 |" in row and "| 5.0 min |" in row
    assert "| 0 of 1 (NVIDIA H200), 99.30 % | 9 s | held on every seed |" in row


def test_numbers_in_sentences_come_from_the_results_and_an_unknown_name_is_an_error():
    text = "mean <!-- v:s6_mean -->99.99 %<!-- /v --> over <!-- v:s6_held -->?<!-- /v --> seeds"
    assert report.fill_numbers(text, {"s6_mean": "99.50 %", "s6_held": "5 of 5"}) == (
        "mean <!-- v:s6_mean -->99.50 %<!-- /v --> over <!-- v:s6_held -->5 of 5<!-- /v --> seeds"
    )
    with pytest.raises(report.UserError, match="s6_mean"):
        report.fill_numbers(text, {})


def test_the_lab_readme_names_its_numbers_from_the_results_too():
    """A number typed into a sentence of lab/README.md is replaced by the results' own, as in the course README."""
    readme = (report.HERE / "lab" / "README.md").read_text()
    typed = readme.replace("<!-- v:course_8000_worst -->", "<!-- v:course_8000_worst -->12.34 %", 1)
    cpu = report.summarize(report.load_runs())
    rendered = report.render_lab(typed, cpu, {}, {}, [], report.numbers(cpu, {}))
    assert "12.34 %" not in rendered and "<!-- v:course_8000_worst -->" in rendered


def test_the_baseline_augmentation_is_read_from_its_record():
    record = json.loads((report.GPU / "baseline-seed0.json").read_text())["config"]["recipe"]["augment"]
    assert f"±{record['degrees']:g}°" in report.numbers({}, {})["baseline_augment"]


def test_superseded_designs_each_keep_a_name_of_their_own():
    """One name per design: the superseded runs are shown under names no current net or other design has."""
    runs = report.load_superseded()
    names = {r["model"] for r in runs}
    assert runs and not names & {*report.MODELS, *report.SEARCHED}
    designs = {(r["model"], r["params"], json.dumps(r["config"]["recipe"], sort_keys=True)) for r in runs}
    assert len({d[0] for d in designs}) == len(names)
    folders = {p.name for p in (report.RESULTS / "superseded").iterdir() if p.is_dir()}
    assert folders == {*report.SUPERSEDED, report.EARLIER_CPU.name}


@pytest.mark.parametrize("content", ["{not json", '{"model": "s6"}', "[1, 2]"])
def test_a_damaged_results_file_is_named_in_one_line(tmp_path, monkeypatch, capsys, content):
    (tmp_path / "s6-seed0.json").write_text(content)
    with pytest.raises(report.UserError, match="s6-seed0.json"):
        report.load_runs(tmp_path)
    load = report.load_runs
    monkeypatch.setattr(report, "load_runs", lambda folder=None, rename=str: load(tmp_path))
    assert report.main(["--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s6-seed0.json" in err[0]


def test_the_models_table_names_the_teacher_of_a_distilled_net(monkeypatch):
    def row():
        return next(line for line in report.models_table().splitlines() if line.startswith("| `s7_3k`"))

    assert "of the loss from" not in row()
    recipe = replace(RECIPES["s7_3k"], teacher="results/validation/teachers/s6-seed0-val5000.json", distill_weight=0.5)
    monkeypatch.setitem(RECIPES, "s7_3k", recipe)
    assert row().endswith("50% of the loss from `results/validation/teachers/s6-seed0-val5000.json` |")


def test_the_teachers_table_gives_each_teacher_its_members_scores_and_forward_cost(tmp_path, monkeypatch):
    from lab.nets import multiply_adds
    from train import spec

    monkeypatch.setattr(report, "TEACHERS", tmp_path)
    members = []
    for model, acc in (("s9_20k", 99.54), ("s9_8k", 99.5)):
        write(tmp_path, f"{model}-seed0-val5000.json", {"model": model})
        members.append({"record": str(tmp_path / f"{model}-seed0-val5000.json"), "val_acc": acc})
    write(tmp_path, "teacher-s9_20k-seed0-and-s9_8k-seed0.json", {"members": members, "val_acc": 99.6})
    row = report.teachers_table().splitlines()[-1]
    cost = multiply_adds(spec("s9_20k").build()) + multiply_adds(spec("s9_8k").build())
    assert row.endswith(f"| `s9_20k` 99.54 %, `s9_8k` 99.50 % | 99.60 % | {cost:,} |")
    (tmp_path / "s9_8k-seed0-val5000.json").write_text("{damaged")
    with pytest.raises(report.UserError, match="s9_8k-seed0-val5000.json"):
        report.teachers_table()


def test_the_teacher_checks_give_one_row_per_student_seed_and_teacher(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "TEACHER_CHECKS", tmp_path)
    for model in ("s6", "s9_20k"):
        write(tmp_path, f"{model}-seed0-val5000.json", {"model": model})
    for folder, teacher, accs in (("a", "s6", [99.4, 99.38, 99.4]), ("b", "s9_20k", [99.1, 99.08, 99.08])):
        (tmp_path / folder).mkdir()
        run = fake_run("s8_5k", 0, [98.0, *accs])
        run["epochs"] = [{**e, "val_acc": e["test_acc"]} for e in run["epochs"]]
        run["config"]["recipe"] = {"teacher": str(tmp_path / f"{teacher}-seed0-val5000.json"), "distill_weight": 0.5}
        write(tmp_path / folder, "s8_5k-seed0-val5000.json", run)
    rows = report.teacher_checks_table().splitlines()[2:]
    assert rows == [
        "| `s8_5k` | 0 | `s6` (50% of the loss) | 99.40, 99.38, 99.40 | 99.38 % |",
        "| `s8_5k` | 0 | `s9_20k` (50% of the loss) | 99.10, 99.08, 99.08 | 99.08 % |",
    ]


def test_the_levers_table_counts_each_drawn_value_of_the_complete_trials_and_their_best(tmp_path):
    def trial(state, score, **suggested):
        return {"state": state, "score": score, "suggested": suggested}

    trials = [
        {**trial("complete", 99.3), "net": "s8_5k"},  # asked for by name: it drew nothing
        trial("complete", 99.2, head="dense32", act="leaky"),
        trial("complete", 99.1, head="dense32", act="prelu"),
        trial("complete", 99.25, head="gap", act="leaky"),
        trial("pruned", 99.9, head="gap", act="relu"),  # did not run all 15 epochs
        {**trial("complete", 99.9, head="gap", act="relu"), "variant_of": 1},  # a paired comparison: drawn by hand
    ]
    write(tmp_path, "budget-5000.json", {"trials": trials})
    write(tmp_path, "budget-3000.json", {"trials": [trial("complete", 99.0, head="gap", act="leaky")]})
    rows = report.levers_table(tmp_path).splitlines()
    assert rows[0] == "| lever | < 5,000 | < 3,000 |"
    assert "| head | `dense32` 2 × 99.20, `gap` 1 × 99.25 | `gap` 1 × 99.00 |" in rows
    assert "| activation | `leaky` 2 × 99.25, `prelu` 1 × 99.10 | `leaky` 1 × 99.00 |" in rows
    assert "| norm | — | — |" in rows


def test_a_paired_comparison_gives_the_variants_change_on_each_seed_the_winner_has_and_stays_out_of_stage_2(
    tmp_path,
):
    def trial(number, **attrs):
        return {"number": number, "state": "complete", "params": 2900, "layers": "3p M 6p M 12 12", **attrs}

    trials = [trial(4), trial(7, variant_of=4, asked_for='trial 4 with act="prelu"'), trial(8, variant_of=4)]
    confirmation = {
        "4": {"scores": {"0": 99.30, "1": 99.20, "2": 99.10}, "mean": 99.2},
        "7": {"scores": {"0": 99.36, "1": 99.20, "2": 99.06, "3": 99.5}, "mean": 99.28},  # seed 3: the winner has none
    }  # trial 8 has no stage 2 yet
    write(tmp_path, "budget-3000.json", {"trials": trials, "confirmation": confirmation, "winner": trials[0]})
    rows = report.pairs_table(tmp_path).splitlines()[2:]
    assert rows == ['| `budget-3000` | trial 4 with act="prelu" | 2,900 | +0.06, +0.00, -0.04 | +0.007 | 1 / 1 / 1 |']
    assert [row.split(" | ")[1] for row in report.stage2_table(tmp_path).splitlines()[2:]] == ["4 **winner**"]
    write(tmp_path, "budget-3000.json", {"trials": trials[:1], "confirmation": confirmation, "winner": trials[0]})
    assert report.pairs_table(tmp_path) == "No paired comparison has run yet."


def test_a_published_teacher_of_several_nets_is_the_studys_member_for_member_trained_on_all_images():
    from lab.recipes import LabRecipe

    def teacher(pattern, seeds):
        return LabRecipe(teacher=",".join(pattern.format(k) for k in seeds), distill_weight=0.5)

    study, published = "results/validation/teachers/s9_20k-seed{}-val5000.json", "results/s9_20k-seed{}.json"
    assert report.same_recipe(teacher(published, [0, 1, 2]), teacher(study, [0, 1, 2]))
    assert not report.same_recipe(teacher(published, [0, 1, 3]), teacher(study, [0, 1, 2]))
    assert not report.same_recipe(teacher(published, [0, 1]), teacher(study, [0, 1, 2]))


def test_a_study_just_begun_chose_nothing_yet_and_a_finished_one_names_its_winners_mean():
    begun = {"trials": [{"number": 0, "state": "fail"}], "best": None, "winner": None}
    assert report.choice(begun) == "none yet"
    winner = {"number": 3, "score": 99.3, "layers": "4p M 8p"}
    confirmed = {"3": {"scores": {"0": 99.3, "1": 99.1}, "mean": 99.2}}
    done = {"best": {**winner, "number": 1}, "winner": winner, "confirmation": confirmed}
    assert report.choice(done) == "3, 99.200 % over 2 seeds, `4p M 8p`"
