"""sweep.py: two workers share one SQLite study; over-budget nets never train; every trial is exported."""

import itertools
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace

import optuna
import pytest
import torch
from conftest import ROOT, assert_one_line_error, build

from lab import report, sweep
from lab.nets import Net, searched, trial_style
from lab.recipes import RECIPES, recipe_from_dict
from model import count_parameters

TRIALS = 12


def start_worker(root, out, seed: int, trials: int = TRIALS) -> subprocess.Popen:
    args = ["--budget", "3000", "--trials", str(trials), "--epochs", "2", "--val", "64", "--subset", "448",
            "--data-dir", str(root), "--out", str(out), "--storage", f"sqlite:///{out / 'study.db'}",
            "--seed", str(seed), "--threads", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lab.sweep", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-3000:]


def test_two_workers_share_one_sqlite_study(synthetic_root, tmp_path):
    """Two workers started together create a study and train 3 trials; two more, started together, share the rest.

    The first pair races to create the study: its reference trials are queued once, not once each. The
    second pair joins the study together, so each trains: a worker that joined a running study late
    could find it finished and train nothing.
    """
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    finish([start_worker(synthetic_root, tmp_path, seed=s, trials=3) for s in (1, 2)])
    pair = [start_worker(synthetic_root, tmp_path, seed=s) for s in (3, 4)]
    finish(pair)

    study = optuna.load_study(study_name="budget-3000", storage=storage)
    trained = [t for t in study.trials if t.state.is_finished() and "rejected" not in t.user_attrs]
    assert TRIALS <= len(trained) <= TRIALS + 1  # a worker may finish the trial it had started when the other hit 12
    workers = {t.user_attrs["worker"].partition(":")[2] for t in trained}
    assert {str(w.pid) for w in pair} <= workers  # both of the second pair trained trials
    asked = [t.user_attrs["asked_for"] for t in study.trials if "asked_for" in t.user_attrs]
    assert sorted(asked) == sorted(["the public reference", sweep.PUBLIC_LABEL])
    assert len({t.number for t in study.trials}) == len(study.trials)
    for t in trained:
        assert t.user_attrs["params"] < 3000
        assert len(t.user_attrs["val_acc"]) == 2 and list(t.intermediate_values) == [1, 2]
    rejected = [t for t in study.trials if "rejected" in t.user_attrs]
    assert rejected and all(t.user_attrs["params"] >= 3000 and "val_acc" not in t.user_attrs for t in rejected)

    export = json.loads((tmp_path / "budget-3000.json").read_text())
    assert [t["number"] for t in export["trials"]] == [t.number for t in study.trials]
    assert {t["state"] for t in export["trials"]} <= {"complete", "pruned", "rejected"}
    assert export["best"]["score"] == max(t.value for t in study.trials if t.state.name == "COMPLETE")
    assert export["best"]["layers"] and export["best"]["recipe"]["augment"]


def open_at_barrier(url: str, barrier, errors) -> None:
    barrier.wait()
    try:
        sweep.open_storage(url)
    except sweep.UserError as err:
        errors.put(str(err))


def test_workers_opening_a_new_database_together_all_get_it(tmp_path):
    """Without a retry most rounds fail: the loser sees "table already exists" or a duplicate alembic_version."""
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for attempt in range(6):
        barrier = context.Barrier(3)
        url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        openers = [context.Process(target=open_at_barrier, args=(url, barrier, errors)) for _ in range(3)]
        for p in openers:
            p.start()
        for p in openers:
            p.join(timeout=120)
            assert p.exitcode == 0
    assert errors.empty(), errors.get()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeats, as sweep.main
def test_workers_opening_a_new_study_together_queue_its_reference_trials_once(tmp_path):
    args = sweep.parse_args(["--budget", "5000", "--storage", f"sqlite:///{tmp_path / 'study.db'}"])
    (first, created), (second, joined) = sweep.open_study(args, tmp_path), sweep.open_study(args, tmp_path)
    assert (created, joined) == (True, False)  # both opened it before either queued a trial
    sweep.ask_for(second, [], joined)
    sweep.ask_for(first, [], created)
    asked = [t.user_attrs["asked_for"] for t in second.get_trials()]
    assert sorted(asked) == sorted(["the public reference", sweep.PUBLIC_LABEL])


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat:UserWarning")  # the test asks and tells by hand
def test_a_named_net_whose_trial_was_interrupted_is_asked_for_again_once(tmp_path):
    args = sweep.parse_args(
        ["--budget", "3000", "--space", "frontier-iii", "--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    )
    study, created = sweep.open_study(args, tmp_path)
    sweep.ask_for(study, [], created)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # its worker was stopped during the trial
    for _ in range(2):  # two workers restarted
        again, joined = sweep.open_study(args, tmp_path)
        sweep.ask_for(again, [], joined)
    nets = [(t.user_attrs.get("net"), t.state.name) for t in again.get_trials()]
    assert nets == [("s8_3k", "FAIL"), ("s8_3k", "WAITING")]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_restarted_worker_draws_on_instead_of_drawing_its_earlier_trials_again(tmp_path):
    args = sweep.parse_args(["--budget", "5000", "--seed", "1", "--storage", f"sqlite:///{tmp_path / 'study.db'}"])

    def draw(study):
        study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
        return [t.params["x"] for t in study.trials[-2:]]

    first = draw(sweep.open_study(args, tmp_path)[0])
    again = draw(sweep.open_study(args, tmp_path)[0])  # the same worker, restarted
    assert set(again).isdisjoint(first)
    fresh = sweep.parse_args(["--budget", "5000", "--seed", "1", "--storage", f"sqlite:///{tmp_path / 'new.db'}"])
    assert draw(sweep.open_study(fresh, tmp_path)[0]) == first  # a new study still starts from budget + seed


def test_first_trial_is_the_public_reference_design(synthetic_root, tmp_path):
    assert sweep.main(["--budget", "5000", "--trials", "1", "--epochs", "1", "--val", "64", "--subset", "64",
                       "--data-dir", str(synthetic_root), "--out", str(tmp_path)]) == 0  # fmt: skip
    first = json.loads((tmp_path / "budget-5000.json").read_text())["trials"][0]
    assert first["layers"] == "4p 4p 4p M 8p 8p 8p M 8p 8p 8p" and first["params"] == 3692


def test_best_with_trains_the_best_trial_again_with_one_change(synthetic_root, tmp_path):
    tiny = ["--budget", "5000", "--epochs", "1", "--val", "64", "--subset", "64", "--data-dir", str(synthetic_root),
            "--out", str(tmp_path)]  # fmt: skip
    assert sweep.main([*tiny, "--trials", "2"]) == 0
    started = time.monotonic()
    assert sweep.main([*tiny, "--trials", "3", "--best-with", "ema=0.999", "batch_size=128"]) == 0
    assert time.monotonic() - started < 30  # it queued the trial itself, so it waits for no other worker to take it
    export = json.loads((tmp_path / "budget-5000.json").read_text())
    trained = [t for t in export["trials"] if t["state"] != "rejected"]
    best_before = max(trained[:2], key=lambda t: t["score"])
    asked = trained[2]
    assert asked["state"] == "complete" and len(asked["val_acc"]) == 1
    assert asked["suggested"] == {**best_before["suggested"], "ema": 0.999, "batch_size": 128}
    assert asked["asked_for"] == f"trial {best_before['number']} with ema=0.999, batch_size=128"
    assert asked["recipe"]["ema"] == 0.999 and asked["layers"] == best_before["layers"]
    for change, message in (("width=8", "--best-with: unknown parameter width"), ("ema=0.5", "'0.5' not in (0.0")):
        proc = subprocess.run(
            [sys.executable, "-m", "lab.sweep", *tiny, "--best-with", change], cwd=ROOT, capture_output=True, text=True
        )
        assert_one_line_error(proc, message)


def test_bad_sweep_flags_get_one_line_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "lab.sweep", *args], cwd=ROOT, capture_output=True, text=True)

    assert_one_line_error(run("--budget", "0"), "argument --budget: must be a positive integer")
    assert_one_line_error(run("--budget", "4000", "--data-dir", str(tmp_path)), "--data-dir")


@pytest.mark.parametrize("budget", report.FRONTIER)
def test_each_searched_budget_is_held_by_the_best_trial_of_its_committed_study(budget):
    """The net and recipe of a searched budget were chosen on validation and registered, not typed in."""
    path, study = report.study(budget)  # frontier-ii's once it has a winner
    complete = [t for t in study["trials"] if t["state"] == "complete"]
    assert study["best"]["score"] == max(t["score"] for t in complete)
    confirmed = study.get("confirmation") or {}
    best = study.get("winner") or study["best"]
    if confirmed:  # stage 2 decides: the best mean over seeds of the trials the search drew
        drawn = [str(t["number"]) for t in study["trials"] if searched(t) and str(t["number"]) in confirmed]
        assert round(confirmed[str(best["number"])]["mean"], 6) == round(max(confirmed[n]["mean"] for n in drawn), 6)
    states = [t["state"] for t in study["trials"]]
    trained = states.count("complete") + states.count("pruned")
    if path.parent == report.STUDIES_II:  # the second round chooses only at full scale
        assert trained >= 40
        assert len(confirmed) >= 3 and all(len(c["scores"]) >= 4 for c in confirmed.values())
    if path.parent == report.STUDIES_III:  # the third: and most trials ran all 15 epochs, 5 finalists x 5 seeds
        assert trained >= 40 and states.count("complete") >= 0.6 * trained
        assert len(confirmed) >= 5 and all(len(c["scores"]) >= 5 for c in confirmed.values())
    name = report.holder(budget)
    assert name, f"the best trial of budget-{budget} is not in the registry"
    layers, dropout, style, recipe = report.registered()[name]
    assert (layers, dropout, style) == (best["layers"], best["suggested"]["dropout"], trial_style(best))
    assert report.same_recipe(recipe, recipe_from_dict(best["recipe"]))  # bf16: the test below
    assert count_parameters(build(name)) == best["params"] < budget


def test_every_bf16_recipe_was_shown_on_validation_to_score_as_fp32_does():
    """Precision changes the numbers: a recipe may train in bf16 only with a committed comparison that holds."""
    comparisons = report.precision_trials()
    bf16 = [name for name, recipe in RECIPES.items() if recipe.precision == "bf16"]
    assert bf16 and any(name in comparisons for name in bf16)
    assert all(report.within_noise(comparisons[name]) for name in bf16 if name in comparisons)


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "postgresql://user:secret@127.0.0.1:1/optuna",
            "cannot use --storage postgresql://user:***@127.0.0.1:1/optuna",
        ),
        ("nosuchdb://host/x", "cannot use --storage nosuchdb://host/x"),
        ("not a url", "cannot use --storage 'not a url'"),
    ],
)
def test_storage_that_cannot_be_used_gets_one_line_naming_it(synthetic_root, tmp_path, url, message):
    proc = subprocess.run(
        [sys.executable, "-m", "lab.sweep", "--budget", "4000", "--val", "64", "--data-dir", str(synthetic_root),
         "--out", str(tmp_path), "--storage", url],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert_one_line_error(proc, message)
    assert proc.returncode == 2 and "secret" not in proc.stderr


def test_confirmation_retrains_the_best_distinct_trials_on_more_seeds_and_picks_the_best_mean(synthetic_root, tmp_path):
    args = ["--budget", "5000", "--trials", "3", "--epochs", "1", "--val", "64", "--subset", "64", "--data-dir",
            str(synthetic_root), "--out", str(tmp_path), "--confirm", "2", "--confirm-seeds", "1", "2"]  # fmt: skip
    assert sweep.main(args) == 0
    export = json.loads((tmp_path / "budget-5000.json").read_text())
    complete = sorted((t for t in export["trials"] if t["state"] == "complete"), key=lambda t: -t["score"])
    confirmed = export["confirmation"]
    assert len(confirmed) == 2 and set(confirmed) <= {str(t["number"]) for t in complete}
    for number, entry in confirmed.items():
        stage1 = next(t for t in complete if str(t["number"]) == number)["score"]
        assert list(entry["scores"]) == ["0", "1", "2"] and entry["scores"]["0"] == stage1
        assert entry["mean"] == pytest.approx(sum(entry["scores"].values()) / 3)
    by_number = {t["number"]: t for t in export["trials"]}
    assert export["winner"]["number"] == int(max(confirmed, key=lambda n: sweep.rank(confirmed[n], by_number[int(n)])))

    study = optuna.load_study(study_name="budget-5000", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    kept = dict(study.user_attrs)
    assert sweep.main(args) == 0  # a second run finds every score in the study and trains nothing again
    assert (
        dict(optuna.load_study(study_name="budget-5000", storage=f"sqlite:///{tmp_path / 'optuna.db'}").user_attrs)
        == kept
    )


def test_best_with_after_stage_2_varies_its_winner_and_judges_the_variant_on_the_same_seeds(synthetic_root, tmp_path):
    tiny = ["--budget", "5000", "--epochs", "1", "--val", "64", "--subset", "64", "--data-dir", str(synthetic_root),
            "--out", str(tmp_path), "--confirm", "2", "--confirm-seeds", "1"]  # fmt: skip
    assert sweep.main([*tiny, "--trials", "3"]) == 0
    stage1 = json.loads((tmp_path / "budget-5000.json").read_text())
    leader = stage1["best"]["number"]
    (second,) = (int(n) for n in stage1["confirmation"] if int(n) != leader)
    study = optuna.load_study(study_name="budget-5000", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    study.set_user_attr(f"confirm:{leader}:1", {"score": 0.0})  # stage 2 overturns stage 1, as at 8k, 4k, 3k
    study.set_user_attr(f"confirm:{second}:1", {"score": 100.0})
    before = sweep.export(study, tmp_path / "budget-5000.json", sweep.parse_args(tiny))
    assert sweep.main([*tiny, "--trials", "4", "--best-with", "ema=0.999"]) == 0
    export = json.loads((tmp_path / "budget-5000.json").read_text())
    variant = next(t for t in export["trials"] if t.get("asked_for", "").startswith("trial "))
    won = before["winner"]
    assert won["number"] == second
    assert variant["asked_for"] == f"trial {won['number']} with ema=0.999" and variant["stage_2"] is True
    assert variant["suggested"] == {**won["suggested"], "ema": 0.999}
    confirmed = export["confirmation"]
    assert set(before["confirmation"]) | {str(variant["number"])} == set(confirmed)  # in, whatever its seed-0 rank
    assert all(list(c["scores"]) == ["0", "1"] for c in confirmed.values()) and export["winner"] is not None


def test_stage_2_breaks_a_tie_in_mean_by_fewer_parameters_whatever_the_float_sums_say():
    def entry(scores):
        return {"scores": dict(enumerate(scores)), "mean": statistics.mean(scores)}

    big, small = entry([99.32, 99.10, 99.04, 99.30]), entry([99.36, 99.10, 99.22, 99.08])  # 396.76 / 4 both
    assert sweep.rank(small, {"params": 2960}) > sweep.rank(big, {"params": 3692})
    assert sweep.rank(entry([99.34, 99.10, 99.04, 99.30]), {"params": 3692}) > sweep.rank(small, {"params": 2960})


def test_ranked_by_the_worst_seed_stage_2_prefers_the_net_that_never_dips():
    def entry(scores):
        return {"scores": dict(enumerate(scores)), "mean": statistics.mean(scores), "worst": min(scores)}

    steady, peaky = entry([99.42, 99.44, 99.43, 99.42, 99.44]), entry([99.60, 99.58, 99.38, 99.56, 99.60])
    assert sweep.rank(peaky, {"params": 7000}) > sweep.rank(steady, {"params": 7000})  # by the mean
    assert sweep.rank(steady, {"params": 7000}, "worst") > sweep.rank(peaky, {"params": 7000}, "worst")
    same_worst = entry([99.42, 99.50, 99.50, 99.50, 99.50])  # then the mean decides
    assert sweep.rank(same_worst, {"params": 7000}, "worst") > sweep.rank(steady, {"params": 7000}, "worst")


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_study_keeps_the_rank_it_was_begun_with(tmp_path):
    storage = ["--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    study, _ = sweep.open_study(sweep.parse_args(["--budget", "8000", *storage, "--rank", "worst"]), tmp_path)
    assert study.user_attrs["rank"] == "worst"
    assert sweep.open_study(sweep.parse_args(["--budget", "8000", *storage]), tmp_path)[0].user_attrs["rank"] == "worst"
    with pytest.raises(sweep.UserError, match="was begun with --rank worst"):
        sweep.open_study(sweep.parse_args(["--budget", "8000", *storage, "--rank", "mean"]), tmp_path)
    assert sweep.open_study(sweep.parse_args(["--budget", "4000", *storage]), tmp_path)[0].user_attrs["rank"] == "mean"


def test_workers_share_a_confirmation_by_claims_and_name_no_winner_before_every_seed_is_in(synthetic_root, tmp_path):
    args = ["--budget", "5000", "--trials", "3", "--epochs", "1", "--val", "64", "--subset", "64", "--data-dir",
            str(synthetic_root), "--out", str(tmp_path), "--confirm", "2", "--confirm-seeds", "1"]  # fmt: skip
    assert sweep.main(args) == 0
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    taken, stale = map(int, json.loads((tmp_path / "budget-5000.json").read_text())["confirmation"])
    study = optuna.load_study(study_name="budget-5000", storage=storage)
    study.set_user_attr(f"claim:{taken}:2", {"worker": "elsewhere:1", "at": time.time()})
    study.set_user_attr(f"claim:{stale}:2", {"worker": "elsewhere:2", "at": time.time() - sweep.CLAIM_TTL_S - 1})

    assert sweep.main([*args[:-1], "1", "2"]) == 0
    export = json.loads((tmp_path / "budget-5000.json").read_text())
    assert list(export["confirmation"][str(taken)]["scores"]) == ["0", "1"]  # another worker is training it
    assert list(export["confirmation"][str(stale)]["scores"]) == ["0", "1", "2"]  # its worker was killed
    assert export["winner"] is None


def test_every_net_of_the_family_builds_and_trials_drawn_before_it_grew_mean_what_they_meant():
    """Each structural choice builds a working net; a committed trial, filled from REFERENCE, keeps net and recipe."""
    for depth, conv, residual, share, padded in itertools.product(
        (2, 3), ("plain", "separable"), (False, True), (False, True), (False, True)
    ):
        params = {**sweep.REFERENCE, "depth": depth, "conv": conv, "residual": residual, "share": share,
                  "last_padded": padded}  # fmt: skip
        layers, dropout, _ = sweep.suggest(optuna.trial.FixedTrial(params))
        assert Net(layers, dropout)(torch.randn(2, 1, 28, 28)).shape == (2, 10), layers
    for budget in report.FRONTIER:
        study = json.loads((ROOT / "results" / "validation" / f"budget-{budget}.json").read_text())
        for t in (t for t in study["trials"] if "recipe" in t):
            teacher = t["recipe"].get("teacher", "")
            layers, _, recipe = sweep.suggest(optuna.trial.FixedTrial({**sweep.REFERENCE, **t["suggested"]}), teacher)
            recorded = recipe_from_dict(t["recipe"])
            assert layers == t["layers"] and replace(recipe, precision=recorded.precision) == recorded


def test_the_public_recipe_as_published_is_asked_of_every_study(synthetic_root, tmp_path):
    tiny = ["--budget", "5000", "--epochs", "1", "--val", "64", "--subset", "64", "--data-dir", str(synthetic_root),
            "--out", str(tmp_path)]  # fmt: skip
    assert sweep.main([*tiny, "--trials", "2"]) == 0
    public = json.loads((tmp_path / "budget-5000.json").read_text())["trials"][1]
    assert public["asked_for"] == sweep.PUBLIC_LABEL
    assert public["recipe"]["batch_size"] == 32 and public["recipe"]["momentum"] == 0.0
    assert public["recipe"]["cycle_momentum"] is False and public["layers"] == "4p 4p 4p M 8p 8p 8p M 8p 8p 8p"
    teacher = "results/validation/teachers/s6-seed0-val5000.json"
    _, _, taught = sweep.suggest(optuna.trial.FixedTrial(sweep.PUBLIC), teacher)
    assert taught.distill_weight == 0.0 and taught.teacher == ""  # as published even where the study distils


def test_a_study_with_a_teacher_searches_how_much_to_distil(tmp_path, synthetic_root):
    teacher = "results/validation/teachers/s6-seed0-val5000.json"
    for weight in sweep.DISTILL_WEIGHTS:
        _, _, recipe = sweep.suggest(optuna.trial.FixedTrial({**sweep.REFERENCE, "distill_weight": weight}), teacher)
        assert recipe.distill_weight == weight and recipe.teacher == (teacher if weight else "")
    _, _, alone = sweep.suggest(optuna.trial.FixedTrial(sweep.REFERENCE))
    assert alone.distill_weight == 0.0 and alone.teacher == ""
    proc = subprocess.run(
        [sys.executable, "-m", "lab.sweep", "--budget", "4000", "--val", "64", "--teacher", str(tmp_path / "none.json"),
         "--data-dir", str(synthetic_root), "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert_one_line_error(proc, "none.json is not a run record of train.py with weights")


def test_a_stop_raises_at_once_only_while_training_and_never_inside_a_database_call():
    stop = sweep.Stop()
    stop(signal.SIGTERM, None)  # between trials, e.g. inside an Optuna commit: remembered, not raised
    assert stop.requested
    with pytest.raises(KeyboardInterrupt), stop.while_training():
        pytest.fail("a net started training after a stop")

    stop, reported = sweep.Stop(), []

    def report(run, row):  # a signal that lands mid-report must not cut the report short
        stop(signal.SIGTERM, None)
        reported.append(row)

    with pytest.raises(KeyboardInterrupt), stop.while_training():
        stop.sheltered(report)(None, {"epoch": 1})
    assert reported == [{"epoch": 1}] and not stop.training

    stop = sweep.Stop()
    with pytest.raises(KeyboardInterrupt), stop.while_training():
        stop(signal.SIGINT, None)  # mid-training: at once
        pytest.fail("a stop while training did not raise at once")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_a_stopped_worker_keeps_the_study_and_says_how_to_continue(synthetic_root, tmp_path, stop):
    tiny = ["--budget", "5000", "--epochs", "3", "--val", "64", "--subset", "64", "--trials", "20",
            "--data-dir", str(synthetic_root), "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.sweep", *tiny],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    export = tmp_path / "budget-5000.json"
    deadline = time.monotonic() + 120
    while not export.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(stop)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert "run the same command to continue it" in stderr.strip().splitlines()[-1]
    assert json.loads(export.read_text())["trials"]


def test_the_study_tool_without_its_packages_names_what_to_install():
    code = "import sys, runpy; sys.modules['optuna'] = None; runpy.run_module('lab.sweep', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert_one_line_error(proc, "optuna is not installed", "pip install -r requirements-dev.txt")
    assert proc.returncode == 2


def stage_2_study(finalists: dict[int, tuple[float, dict[int, float]]], named: tuple[int, ...] = ()) -> optuna.Study:
    """An in-memory study ranked by the worst seed: per trial its stage-1 score and its stage-2 scores by seed."""
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("rank", "worst")
    for number, (value, by_seed) in finalists.items():
        attrs = {"params": 15_000, **({"net": "ref_19088"} if number in named else {})}
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
        for seed, score in by_seed.items():
            study.set_user_attr(f"confirm:{number}:{seed}", {"score": score})
    return study


def test_stage_2_names_its_winner_once_no_finalist_still_waiting_could_overtake_it():
    leader, runner_up = (99.50, {1: 99.46, 2: 99.48}), (99.40, {1: 99.44, 2: 99.50})
    dipped = (99.52, {1: 99.44})  # its worst can only fall: below the leader's 99.46 already
    assert sweep.winner(stage_2_study({0: leader, 1: runner_up, 2: dipped})) == 0
    hopeful = (99.52, {1: 99.50})  # seed 2 still to come could keep it above 99.46
    assert sweep.winner(stage_2_study({0: leader, 1: runner_up, 2: hopeful})) is None
    public = (99.30, {1: 99.60})  # a public net waiting for a seed never holds the winner back
    assert sweep.winner(stage_2_study({0: leader, 1: runner_up, 2: public}, named=(2,))) == 0
    study = stage_2_study({0: leader, 1: runner_up, 2: (99.56, {})})  # a finalist whose stage 2 has not begun
    study.set_user_attr("finalists", 3)
    assert sweep.winner(study) is None
    begun = stage_2_study({0: (99.50, {}), 1: (99.40, {})})  # stage 2 about to begin: no finalist has a seed of it
    begun.set_user_attr("finalists", 2)
    assert sweep.winner(begun) == 0  # a study that never said which seeds stage 2 takes
    sweep.expect_stage_2(begun, sweep.parse_args(["--budget", "5000", "--confirm", "2", "--confirm-seeds", "1", "2"]))
    assert sweep.winner(begun) is None


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # stale heartbeats, as sweep.main
def test_stage_2_waits_for_the_stage_1_trials_other_workers_are_still_training():
    study = optuna.create_study(direction="maximize")
    running = study.ask()
    threading.Timer(0.3, lambda: study.tell(running, 99.5)).start()
    sweep.wait_for_stage_1(study, poll_s=0.05)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]


def test_a_joining_worker_waits_until_the_creator_has_taken_the_first_queued_trial():
    """Two workers popping the queue at once could both take the queued trial; the joiner lets the creator go first."""
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({}, user_attrs={"net": "s8_5k"})
    taken = []
    threading.Timer(0.3, lambda: taken.append(study.ask())).start()  # the creator takes it
    started = time.monotonic()
    sweep.let_the_creator_take_first(study, queued_here=False, poll_s=0.05, limit_s=30)
    assert taken and 0.25 < time.monotonic() - started < 10
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]
    started = time.monotonic()
    sweep.let_the_creator_take_first(optuna.create_study(), queued_here=False, poll_s=0.05, limit_s=30)  # none queued
    queued = optuna.create_study()
    queued.enqueue_trial({})
    sweep.let_the_creator_take_first(queued, queued_here=True, poll_s=0.05, limit_s=30)  # the creator never waits
    sweep.let_the_creator_take_first(queued, queued_here=False, poll_s=0.05, limit_s=0.2)  # a dead creator's queue
    assert time.monotonic() - started < 5


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeats
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # asked outside optimize, as a test does
def test_a_worker_draws_no_trial_past_the_count_while_another_trains_the_last_one_but_always_takes_the_queue(
    tmp_path,
):
    """Two workers trained 3 queued variants with --trials 44 on 41 trained; the one that finished first while the
    other trained the last variant drew a 45th (trial 47 of the < 3k study). Trials in training count too."""
    study = optuna.create_study(direction="maximize")
    for _ in range(3):
        study.tell(study.ask(), 99.0)
    rejected = study.ask()
    rejected.set_user_attr("rejected", "over budget")
    study.tell(rejected, state=optuna.trial.TrialState.PRUNED)
    assert sweep.more_to_train(study, 4) and not sweep.more_to_train(study, 3)  # a rejected draw never counts
    other = study.ask()  # another worker trains the 4th
    assert not sweep.more_to_train(study, 4) and sweep.more_to_train(study, 5)
    study.enqueue_trial({}, user_attrs={"variant_of": 0})
    assert sweep.more_to_train(study, 4)  # a queued trial trains whatever the count
    study.ask()
    study.tell(other, 99.1)
    assert not sweep.more_to_train(study, 5)  # 4 trained and the queued one in training

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1, grace_period=1)
    shared = optuna.create_study(storage=storage)
    shared.tell(shared.ask(), 99.0)
    dead = shared.ask()  # its worker died: the heartbeat stopped
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    assert sweep.more_to_train(shared, 2)  # the dead worker's trial is failed, not counted as in training
    assert [t.state.name for t in shared.trials] == ["COMPLETE", "FAIL"]


def test_export_only_writes_the_study_as_it_stands_and_trains_nothing(synthetic_root, tmp_path):
    args = ["--budget", "5000", "--trials", "2", "--epochs", "1", "--val", "64", "--subset", "64", "--data-dir",
            str(synthetic_root), "--out", str(tmp_path)]  # fmt: skip
    assert sweep.main(args) == 0
    (tmp_path / "budget-5000.json").unlink()
    elsewhere = [*args[:3], "5", *args[4:-4], "--data-dir", str(tmp_path / "no-data"), *args[-2:], "--export"]
    assert sweep.main(elsewhere) == 0  # asks for more trials, trains none, needs no data
    assert (
        len([t for t in json.loads((tmp_path / "budget-5000.json").read_text())["trials"] if t["state"] != "waiting"])
        == 2
    )


def test_a_recipe_that_diverges_is_a_pruned_trial_and_a_finalist_that_diverges_on_a_seed_scores_0(
    synthetic_root, tmp_path, monkeypatch
):
    """A NaN loss is a result of what was drawn: the worker records it and goes on, where it used to die."""
    calls = []

    def train(build, recipe, args, device, seed, on_epoch=None):
        calls.append(seed)
        if len(calls) in (1, 3):  # stage 1's first trial, then the finalist's stage-2 seed
            raise sweep.NonFiniteLoss("loss became NaN/inf in epoch 1, batch 0; lower --lr")
        return [99.0]

    monkeypatch.setattr(sweep, "train_on_validation", train)
    assert sweep.main(["--budget", "5000", "--trials", "2", "--epochs", "1", "--confirm", "1", "--confirm-seeds", "1",
                       "--val", "64", "--subset", "64", "--data-dir", str(synthetic_root),
                       "--out", str(tmp_path)]) == 0  # fmt: skip
    exported = json.loads((tmp_path / "budget-5000.json").read_text())
    first, second = exported["trials"][:2]
    assert first["state"] == "pruned" and "NaN" in first["diverged"] and second["state"] == "complete"
    assert exported["confirmation"][str(second["number"])]["scores"] == {"0": 99.0, "1": 0.0}
