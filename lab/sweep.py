"""Search architecture and recipe for one parameter budget with Optuna, on the validation split only.

    python -m lab.sweep --budget 4000 --trials 12                 # -> runs/validation/budget-4000.json
    python -m lab.sweep --budget 4000 --trials 12 --storage postgresql://user:pass@host/optuna --seed 1
    python -m lab.sweep --budget 4000 --trials 42 --out results/validation/frontier-ii ...  # a committed study
    python -m lab.sweep --budget 20000 --space course --rank worst --trials 16 --confirm 5 --confirm-seeds 1 2 3 4

One study per budget (`budget-4000`). Each trial draws a net and a recipe from the study's space
(`--space`: the frontier family below, or the course nets' of `course_space.py`), is rejected
before training if the net has `budget` parameters or more, then trains for 15 epochs
on the first 55,000 training images and reports its accuracy on the last 5,000 (never the test
set) after each epoch. A median pruner stops a trial whose accuracy falls below the median of
earlier trials at the same epoch. The score is the lowest validation accuracy of the last 3
epochs, as the target asks of the test set.

The study lives in `--storage` (a SQLite file by default). Several workers, on one machine or
many, share a study when given the same storage and budget: start each with its own `--seed` (on
one 2-core machine, two with `--threads 1` each). `--trials` counts trained trials over
the whole study, those in training included; a trial queued by name trains whatever the count.
After every trial the whole study is exported to `<--out>/budget-<N>.json`
(runs/validation/ by default, git-ignored; the committed studies live in results/validation/):
each trial's suggested values, net, recipe, parameter count,
per-epoch validation accuracy and state (complete, pruned, rejected over budget, or failed when
its worker died). Run the same command again to continue a study; `--export` only exports it.

With `--teacher RECORD` (a train.py run of a bigger net made with the same `--val`; several records
joined by commas teach as one, by the mean of their softened predictions), the study also draws
how much of the loss is distillation from it (`DISTILL_WEIGHTS`).

`--space frontier-iii` (`frontier_space.py`) draws widths that fill 60-100 % of the budget and the
levers of the strongest small public nets, stops only trials that cannot reach the leaders
(`LeaderPruner`), and asks the second round's winner of its budget by name, learning from the
study's teacher, in both stages. There `--best-with` is a paired comparison: stage 2's winner with
one lever changed, trained on the winner's seeds, never a winner itself (`--export` queues it untrained).

Stage 2 (`--confirm 3 --confirm-seeds 1 2 3`): one seed's score is partly luck, so the best 3
distinct trials train again on 3 more seeds, still on validation; the export's `confirmation`
holds each one's per-seed scores and `winner` the trial with the best mean. That winner, not
stage 1's best, is the net and recipe a budget publishes. A study begun with `--rank worst` ranks
its finalists by their worst seed instead (then by the mean), for nets that must hold on every
seed; a study keeps the rank it was begun with. A course study also trains the public nets of its
budget (`lab/reference.py`, with their own recipes) in stage 1 and stage 2, beside its finalists
but never as its winner.
"""

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from lab.course_space import suggest_course
from lab.engine import load_teacher
from lab.frontier_space import PRUNED, PRUNED_AT, draw_affine, suggest_frontier
from lab.nets import PLAIN, Net, multiply_adds, searched, stage, trial_style
from lab.recipes import LabRecipe as Recipe
from lab.recipes import recipe_from_dict
from model import count_parameters
from train import (
    OneLineParser,
    Run,
    fit,
    git_commit,
    positive_int,
    prepare,
    repo_path,
    spec,
    versions,
    writable_dir,
    write_json,
)
from utils import DATA_DIR, Augment, DataConfig, NonFiniteLoss, UserError, first_line, make_loaders, pick_device

try:
    import optuna
    import sqlalchemy
except ImportError as err:  # the study tool needs the lab's packages, which the course does not
    print(f"error: {err.name} is not installed: pip install -r requirements-dev.txt", file=sys.stderr)
    sys.exit(2)

EPOCHS = 15
VAL = 5000  # the last 5,000 training images: scored on, never trained on
TRIAL_SEED = 0  # every trial trains from the same seed, so trials differ by their parameters only
# Random draws before TPE models the space. Draws rejected over budget count among them, and with 4 the
# frontier-ii budget-4000 study (begun with 4) settled early: distillation weight 0.8 in 40 of its 41 trained
# trials, separable, residual or shared blocks in only 3, 2 and 1. Studies begun since draw 10 at random.
STARTUP_TRIALS = 10
# The pruner waits for 4 complete trials, and compares from epoch 10 on: at epoch 4 a OneCycle trial with a
# long warm-up is still near its peak lr, and frontier-ii's first 25 trials were all pruned there against
# the two reference trials' fast warm-up, whatever they would have reached.
PRUNE_FROM = 4  # complete trials before the pruner compares with their median ...
PRUNE_AFTER = 10  # ... after this epoch of a trial (epochs are reported from 1)
OUT = Path("runs") / "validation"  # git-ignored: a committed study is continued with --out results/validation/...
# The first trial of every study: the public 3,762-parameter net (4-4-4 / 8-8-8 / 8-8-8, padded) with its
# recipe (lr 0.1 reached at epoch 2, linear to 0 at 15; rotation 7 degrees, zoom 9 %, p 0.5, dropout 0.01),
# shift 10 % (its 9 % is not among the choices), batch 64 instead of its 32 and OneCycle's momentum (cycled
# 0.95 -> 0.85 -> 0.95) instead of its plain SGD, as the first space could hold it. Parameters added to the space
# since take these values in the trials drawn before them, which is what those trials trained with.
REFERENCE = dict(depth=3, w1=4, w2=8, w3=8, last_padded=True, dropout=0.01, lr=0.1, pct_start=2 / 15,
                 anneal="linear", batch_size=64, degrees=7.0, translate=0.1, scale=0.09, p=0.5, ema=0.0,
                 conv="plain", residual=False, share=False, momentum="cycle", nesterov=False, weight_decay=0.0,
                 label_smoothing=0.0)  # fmt: skip
# The public recipe as it is: batch 32 and plain SGD (its optimizer is given no momentum), learning from
# labels only in a study with a teacher too.
PUBLIC = {**REFERENCE, "batch_size": 32, "momentum": 0.0, "distill_weight": 0.0}
PUBLIC_LABEL = "the public reference as published: batch 32, plain SGD"


DISTILL_WEIGHTS = [0.0, 0.5, 0.8]  # share of the loss learnt from the teacher, when the study has one


def suggest(trial: optuna.Trial, teacher: str = "") -> tuple[str, float, Recipe]:
    """Draw a net and its recipe.

    The family: three stages of `depth` 3x3 convolutions at 28, 14 and 7 px with a max-pool
    between them, the last stage padded or not (7 -> 5 -> 3 px), then the 1x1 + GAP head. The
    convolutions after the first stage are plain or depthwise-separable; within each padded stage
    the convolutions after the first may share one set of weights and may sit in a residual
    group. The recipe: OneCycle SGD annealing to ~0 at the last batch, with OneCycle's cycled
    momentum, plain SGD or a fixed 0.9 (Nesterov or not), weight decay, label smoothing, batch
    size, augmentation strength and probability, and whether a moving average of the weights is
    what gets evaluated; with a `teacher` (a run record), how much of the loss is distillation.
    """
    depth = trial.suggest_int("depth", 2, 3)
    w1 = trial.suggest_int("w1", 4, 8, step=2)  # the 28 px stage costs most CPU time per parameter
    w2 = trial.suggest_int("w2", 6, 20, step=2)
    w3 = trial.suggest_int("w3", 6, 20, step=2)
    padded = trial.suggest_categorical("last_padded", [True, False])
    kind = "d" if trial.suggest_categorical("conv", ["plain", "separable"]) == "separable" else "p"
    residual = trial.suggest_categorical("residual", [False, True])
    share = trial.suggest_categorical("share", [False, True])
    last = stage(w3, depth, kind, residual, share) if padded else stage(w3, depth, "", False, share)
    layers = " ".join([*stage(w1, depth, "p", residual, share), "M", *stage(w2, depth, kind, residual, share), "M",
                       *last])  # fmt: skip
    dropout = trial.suggest_float("dropout", 0.0, 0.1)
    momentum = trial.suggest_categorical("momentum", ["cycle", 0.0, 0.9])
    distill = trial.suggest_categorical("distill_weight", DISTILL_WEIGHTS) if teacher else 0.0
    recipe = Recipe(
        lr=trial.suggest_float("lr", 0.03, 0.3, log=True),
        momentum=0.9 if momentum == "cycle" else momentum,
        cycle_momentum=momentum == "cycle",
        nesterov=trial.suggest_categorical("nesterov", [False, True]) if momentum != 0.0 else False,
        weight_decay=trial.suggest_categorical("weight_decay", [0.0, 1e-4, 5e-4]),
        label_smoothing=trial.suggest_categorical("label_smoothing", [0.0, 0.05, 0.1]),
        schedule="onecycle",
        pct_start=trial.suggest_float("pct_start", 0.1, 0.3),
        anneal=trial.suggest_categorical("anneal", ["cos", "linear"]),
        batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
        augment=Augment(**draw_affine(trial)),
        ema=trial.suggest_categorical("ema", [0.0, 0.999]),
        precision="bf16",  # where the device has it: the same scores as fp32 on validation, faster
        teacher=teacher if distill else "",
        distill_weight=distill,
    )
    return layers, dropout, recipe


def design(trial: optuna.Trial, args: argparse.Namespace) -> tuple[Callable[[], nn.Module], str | None, Recipe]:
    """What a trial trains: a net of the study's space and its recipe, or a registered net asked for by name
    (`user_attrs["net"]`) with its own recipe. The string names the net (its layers); None: nothing fits."""
    named = trial.user_attrs.get("net")
    if named:
        found = spec(named)
        # a published net's teacher saw the validation images: in a study it learns from the study's, or alone
        recipe = replace(found.recipe, teacher=args.teacher) if getattr(found.recipe, "teacher", "") else found.recipe
        return found.build, named, recipe if recipe.teacher else replace(recipe, distill_weight=0.0)
    style = PLAIN
    if args.space == "course":
        layers, dropout, recipe = suggest_course(trial, args.budget)
    elif args.space == "frontier-iii":
        layers, dropout, style, recipe = suggest_frontier(trial, args.budget, args.teacher)
        trial.set_user_attr("style", asdict(style))
    else:
        layers, dropout, recipe = suggest(trial, args.teacher)
    return (lambda: Net(layers, dropout, style=style)), layers, recipe


def objective(trial: optuna.Trial, args: argparse.Namespace, device: torch.device) -> float:
    build, layers, recipe = design(trial, args)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("git_commit", args.commit)
    trial.set_user_attr("recipe", asdict(recipe))
    if layers is None:
        trial.set_user_attr("rejected", "no net of the drawn shape fits the budget and the cost cap")
        raise optuna.TrialPruned("nothing fits")
    model = build()
    params = count_parameters(model)
    trial.set_user_attr("layers", layers)
    trial.set_user_attr("params", params)
    trial.set_user_attr("multiply_adds", multiply_adds(model))
    if params >= args.budget:
        trial.set_user_attr("rejected", f"{params:,} parameters, budget < {args.budget:,}")
        raise optuna.TrialPruned("over budget")

    def report(run: Run, row: dict) -> None:
        accs = [h["val_acc"] for h in run.history]
        trial.set_user_attr("val_acc", accs)
        trial.set_user_attr("precision", run.precision)
        trial.report(row["val_acc"], row["epoch"])
        if trial.should_prune() and "asked_for" not in trial.user_attrs:
            raise optuna.TrialPruned(f"epoch {row['epoch']}: {row['val_acc']:.2f} % is below the median")

    try:
        return score(train_on_validation(build, recipe, args, device, TRIAL_SEED, report))
    except NonFiniteLoss as err:  # a drawn recipe that diverges is a result of the search, not a dead worker
        trial.set_user_attr("diverged", str(err))
        raise optuna.TrialPruned(str(err)) from None


def train_on_validation(
    build: Callable[[], nn.Module],
    recipe: Recipe,
    args: argparse.Namespace,
    device: torch.device,
    seed: int,
    on_epoch=None,
) -> list[float]:
    """Train a net and recipe on the first images of the training set; its validation accuracy per epoch."""
    data = DataConfig(
        args.data_dir, recipe.batch_size, subset=args.subset, val=args.val, augment=recipe.augment, seed=seed
    )
    with STOP.while_training():
        run = prepare(build, recipe, data, args.epochs, device)
        return [h["val_acc"] for h in fit(run, on_epoch=STOP.sheltered(on_epoch), verbose=False)]


def rebuild(trial: optuna.trial.FrozenTrial) -> Callable[[], nn.Module]:
    """A finished trial's net, to train again in stage 2."""
    named = trial.user_attrs.get("net")
    if named:
        return spec(named).build
    style = trial_style(trial.user_attrs)
    return lambda: Net(trial.user_attrs["layers"], trial.params["dropout"], style=style)


class Stop:
    """Ctrl-C and kill, for a worker that writes to a shared database.

    Python raises KeyboardInterrupt wherever the signal lands. Inside one of Optuna's commits that
    can leave the SQLite file locked and the worker hung; inside a destructor it is swallowed. So a
    stop raises at once only while a net trains, and anywhere else is remembered and raised at the
    next safe point: an epoch's end, a trial's end or the next training.
    """

    def __init__(self) -> None:
        self.requested = False
        self.training = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.training:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    @contextmanager
    def while_training(self) -> Iterator[None]:
        self.check()
        self.training = True
        try:
            yield
        finally:
            self.training = False

    def sheltered(self, on_epoch: Callable[..., None] | None) -> Callable[..., None]:
        """An epoch's end: `on_epoch` (which reports to the database) with stops held back, then a check."""

        def call(*args: object) -> None:
            self.training = False
            try:
                if on_epoch is not None:
                    on_epoch(*args)
            finally:
                self.training = True
            self.check()

        return call


STOP = Stop()


def score(accs: list[float]) -> float:
    """A trial's score: its lowest validation accuracy of the last 3 epochs, as the target asks of the test set."""
    return min(accs[-3:])


def finalists(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    """The n best complete drawn trials with distinct parameters (a --best-with repeat counts once), and every
    trial marked for stage 2, whatever its rank: a variant of a stage-2 winner asked for by --best-with, or a
    public net asked for by name. Each is judged on the same seeds as the finalists.
    """
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    chosen, seen = [], set()
    drawn = [t for t in complete if searched(t.user_attrs)]
    for t in sorted(drawn, key=lambda t: t.value, reverse=True):
        key = json.dumps(t.params, sort_keys=True)
        if key not in seen:
            chosen.append(t)
            seen.add(key)
    best = {t.number for t in chosen[:n]}
    return chosen[:n] + [t for t in complete if t.user_attrs.get("stage_2") and t.number not in best]


def confirm(study: optuna.Study, args: argparse.Namespace, device: torch.device) -> None:
    """Stage 2: train the best --confirm trials again on each of --confirm-seeds, on validation.

    One seed's score is partly luck; the winner is the trial with the best mean over its stage-1
    seed and these. Each score is kept in the study (a key per trial and seed), so a stopped
    confirmation resumes where it was. Several workers share it: each claims a score before it
    trains it, and the others pass it by while the claim is fresh (CLAIM_TTL_S).
    """
    worker = f"{socket.gethostname()}:{os.getpid()}"
    expect_stage_2(study, args)
    for trial in finalists(study, args.confirm):
        for seed in args.confirm_seeds:
            key, claimed = f"confirm:{trial.number}:{seed}", f"claim:{trial.number}:{seed}"
            if key in study.user_attrs or not claim(study, claimed, worker):
                continue
            recipe = recipe_from_dict(trial.user_attrs["recipe"])
            try:
                accs = train_on_validation(rebuild(trial), recipe, args, device, seed)
            except KeyboardInterrupt:  # give the score back, so that the next worker trains it
                study.set_user_attr(claimed, {"worker": worker, "at": 0})
                raise
            except NonFiniteLoss as err:  # a finalist that diverges on a seed holds on no seed: it scores 0
                study.set_user_attr(key, {"score": 0.0, "diverged": str(err), "git_commit": args.commit})
                print(f"confirmation: trial {trial.number}, seed {seed}: diverged ({err})", flush=True)
                continue
            study.set_user_attr(key, {"score": score(accs), "val_acc": accs, "git_commit": args.commit})
            print(f"confirmation: trial {trial.number}, seed {seed}: score {score(accs):.2f}", flush=True)


CLAIM_TTL_S = 3600  # a claim older than this is a killed worker's (a CPU trial takes minutes; a stop gives it back)


def expect_stage_2(study: optuna.Study, args: argparse.Namespace) -> None:
    """Record how many finalists stage 2 takes and on which seeds, so that no winner is named before each
    finalist has a score on each seed (before a stage 2 had begun, every finalist had its stage-1 seed only,
    and the export named stage 1's best the winner)."""
    study.set_user_attr("finalists", args.confirm)
    study.set_user_attr("stage_2_seeds", [TRIAL_SEED, *args.confirm_seeds])


def claim(study: optuna.Study, key: str, worker: str) -> bool:
    """Take a stage-2 score for this worker, unless another worker's claim on it is fresh."""
    held = study.user_attrs.get(key)
    if held and held["worker"] != worker and time.time() - held["at"] < CLAIM_TTL_S:
        print(f"confirmation: {key} is being trained by {held['worker']}, passed by", flush=True)
        return False
    study.set_user_attr(key, {"worker": worker, "at": time.time()})
    return study.user_attrs[key]["worker"] == worker  # two claims at once: the last one written trains


def confirmation(study: optuna.Study) -> dict:
    """Stage 2 as exported: per confirmed trial its per-seed scores (stage 1's seed included) and their mean."""
    scores: dict[int, dict[int, float]] = {}
    for key, value in study.user_attrs.items():
        if key.startswith("confirm:"):
            _, number, seed = key.split(":")
            scores.setdefault(int(number), {})[int(seed)] = value["score"]
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    confirmed = {}
    for number, by_seed in sorted(scores.items()):
        every = {TRIAL_SEED: trials[number].value, **dict(sorted(by_seed.items()))}
        mean, worst = statistics.mean(every.values()), min(every.values())
        confirmed[str(number)] = {"scores": every, "mean": mean, "worst": worst}
    return confirmed


# What a study draws: the second round's lab nets and recipes, the course nets (course_space.py) or the third
# round's (frontier_space.py).
SPACES = ("frontier", "course", "frontier-iii")
RANKS = ("mean", "worst")  # how stage 2 orders its finalists: by the mean over seeds, or by the worst seed first


def rank(confirmed: dict, trial: dict, by: str = "mean") -> tuple[float, ...]:
    """How stage 2 orders its trials: the best mean over seeds (or, `by="worst"`, the best worst seed, then
    the mean), and on a tie the fewer parameters.

    A score is a whole number of validation images (0.02 points each), so means tie exactly;
    rounding keeps float noise in the sums from breaking such a tie.
    """
    first = (round(confirmed["worst"], 6),) if by == "worst" else ()
    return *first, round(confirmed["mean"], 6), -trial["params"]


def winner(study: optuna.Study) -> int | None:
    """Stage 2's winner (a trial number): the best drawn trial by the study's rank among those with every seed,
    once no drawn trial still waiting for a seed could overtake it (a public net never wins).

    A finalist still waiting for seeds could at best score 100 % on each: under `--rank worst` its
    worst seed so far bounds it, so one that has already dipped below the leader's worst is out.
    """
    confirmed = confirmation(study)
    for t in finalists(study, study.user_attrs.get("finalists", 0)):  # those not begun yet wait for every seed
        confirmed.setdefault(str(t.number), {"scores": {TRIAL_SEED: t.value}, "mean": t.value, "worst": t.value})
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    by = study.user_attrs.get("rank", "mean")
    drawn = [n for n in confirmed if searched(trials[int(n)].user_attrs)]
    seeds = set(study.user_attrs.get("stage_2_seeds", [])).union(*(set(confirmed[n]["scores"]) for n in drawn))
    done = [n for n in drawn if set(confirmed[n]["scores"]) == seeds]
    if not done:
        return None
    leader = max(done, key=lambda n: rank(confirmed[n], trials[int(n)].user_attrs, by))
    for n in set(drawn) - set(done):
        scores = {**{seed: 100.0 for seed in seeds}, **confirmed[n]["scores"]}
        best_case = {
            "scores": scores,
            "mean": statistics.mean(scores.values()),
            "worst": min(confirmed[n]["scores"].values()),
        }
        if rank(best_case, trials[int(n)].user_attrs, by) >= rank(
            confirmed[leader], trials[int(leader)].user_attrs, by
        ):
            return None
    return int(leader)


def wait_for_stage_1(study: optuna.Study, poll_s: float = 30.0) -> None:
    """Hold a worker at the start of stage 2 until the other workers' stage-1 trials have finished, so that
    every worker confirms the same finalists (a worker that went ahead once put the sixth best in stage 2
    while the eventual winner was still training). A dead worker's trial is failed by its stale heartbeat."""
    while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        print(f"stage 2 waits for the stage-1 trials still running (checks every {poll_s:.0f} s)", flush=True)
        STOP.check()
        time.sleep(poll_s)
        optuna.storages.fail_stale_trials(study)


def let_the_creator_take_first(
    study: optuna.Study, queued_here: bool, poll_s: float = 1.0, limit_s: float = 60.0
) -> None:
    """A worker that joined a study waits until a trial runs, while trials queued by name are waiting,
    unless it queued some itself (it created the study, or asked for `--best-with`): then it is the creator.

    SQLite cannot lock a row, so two workers that take Optuna's queue at the same moment can both
    take the same queued trial: both train it, and the second to finish crashes telling it (the third
    round's first two workers, started together, did). Once the creator is training its first trial,
    the joiner takes the rest of the queue alone. A queue left by a dead worker is taken after `limit_s`.
    """
    if queued_here:
        return
    waiting, running = (optuna.trial.TrialState.WAITING,), (optuna.trial.TrialState.RUNNING,)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not study.get_trials(deepcopy=False, states=waiting) or study.get_trials(deepcopy=False, states=running):
            return
        STOP.check()
        time.sleep(poll_s)


def trained(study: optuna.Study) -> int:
    """Trials that trained (complete or pruned), not those rejected over budget."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if "rejected" not in t.user_attrs)


def more_to_train(study: optuna.Study, trials: int) -> bool:
    """Whether a worker takes another trial: one queued by name always; a new draw only while the trained
    trials and those other workers are training fall short of `trials` (counting the trained ones alone,
    a worker that finished while another still trained the last queued trial drew one more). A trial left
    running by a dead worker is failed first, by its stale heartbeat, so that it does not count."""
    optuna.storages.fail_stale_trials(study)
    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        return True
    return trained(study) + len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))) < trials


def export(study: optuna.Study, path: Path, args: argparse.Namespace) -> dict:
    """The whole study as one JSON file, what the README's story links to; returns what it wrote."""
    trials = []
    for t in study.get_trials(deepcopy=False):
        state = "rejected" if "rejected" in t.user_attrs else t.state.name.lower()  # complete, pruned, fail, running
        trials.append(
            {
                "number": t.number,
                "state": state,
                # Optuna gives a pruned trial the value it was stopped at; the score is only a complete trial's
                "score": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                "stopped_at_epoch": max(t.intermediate_values, default=0) if state == "pruned" else None,
                "suggested": t.params,
                **t.user_attrs,  # params (the count), layers, recipe, val_acc, worker, and why it was rejected
                "duration_s": t.duration.total_seconds() if t.duration else None,
            }
        )
    complete = [t for t in trials if t["state"] == "complete"]
    by_number = {t["number"]: t for t in trials}
    won = winner(study)
    exported = {
        "study": study.study_name,
        "budget": args.budget,
        "command": args.command,
        "exported_at_commit": args.commit,  # the writing worker's; a trial's own is its git_commit, where recorded
        "versions": {**versions(), "optuna": optuna.__version__},
        "score": "lowest validation accuracy (%) of the last 3 epochs",
        "epochs": args.epochs,
        "val": args.val,
        "trial_seed": TRIAL_SEED,
        "best": max(complete, key=lambda t: t["score"]) if complete else None,
        "confirmation": confirmation(study),  # stage 2: trial number -> per-seed scores, their mean and the worst
        "space": study.user_attrs.get("space", "frontier"),
        "rank": study.user_attrs.get("rank", "mean"),  # what stage 2's winner is the best of
        "winner": by_number[won] if won is not None else None,  # the best by rank, once all are in
        "trials": trials,
    }
    write_json(path, exported)
    return exported


def open_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """The study's database. Workers started together race to create its tables: the loser retries
    (SQLite says so as "table already exists" or as a second row in alembic_version).

    A worker that dies mid-trial stops its heartbeat; the next worker to start marks that trial failed.
    A URL that can't be parsed, names a missing driver or a database that can't be reached is a
    UserError naming the URL (without its password).
    """

    def connect() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=60,
            grace_period=180,
            # several workers on one SQLite file: wait for the lock instead of failing
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {},
        )

    tries = 0
    while True:
        try:
            return connect()
        # busy, lost the race to create the tables, or unreachable: the first two pass, unreachable stays
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as err:
            tries += 1
            if tries == attempts:
                raise UserError(f"cannot open --storage {shown(url)}: {first_line(err.orig or err)}") from None
            time.sleep(tries)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:  # bad URL, missing driver
            raise UserError(f"cannot use --storage {shown(url)}: {first_line(err)}") from None


def shown(url: str) -> str:
    """The URL with its password masked, fit for an error message."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return repr(url)


def open_study(args: argparse.Namespace, out: Path) -> tuple[optuna.Study, bool]:
    """The budget's study, and whether this worker created it. The database lets one worker create it,
    so workers started together on a new study queue its reference trials once, not once each.

    A study keeps the space and the stage-2 rank it was begun with: `args.space` becomes the study's."""
    kw = {
        "study_name": f"budget-{args.budget}",
        "storage": open_storage(args.storage or f"sqlite:///{out / 'optuna.db'}"),
        "pruner": optuna.pruners.MedianPruner(n_startup_trials=PRUNE_FROM, n_warmup_steps=PRUNE_AFTER),
    }
    try:
        study, new = optuna.create_study(direction="maximize", **kw), True
        study.set_user_attr("space", args.space or "frontier")
        study.set_user_attr("rank", args.rank or "mean")
    except optuna.exceptions.DuplicatedStudyError:
        study, new = optuna.load_study(**kw), False
    begun = {"space": study.user_attrs.get("space", "frontier"), "rank": study.user_attrs.get("rank")}
    for flag, was in begun.items():  # the rank is None for a moment while the creating worker writes it
        asked = getattr(args, flag)
        if asked and was and asked != was:
            raise UserError(f"--{flag} {asked}: {study.study_name} was begun with --{flag} {was}")
    args.space = begun["space"]
    study.sampler = sampler(args, already=len(study.trials))
    if args.space == "frontier-iii":
        study.pruner = LeaderPruner(last=args.epochs)
    return study, new


def drawn_from_this_space(study: optuna.Study) -> None:
    """Refuse to train in a third-round study begun before levers were pruned from its space: Optuna
    refuses a parameter whose choices changed, which would fail the worker's first draw."""
    if study.user_attrs.get("space") != "frontier-iii":
        return
    for t in study.get_trials(deepcopy=False):
        for key, dropped in PRUNED.items():
            if key in t.distributions and set(dropped) & set(t.distributions[key].choices):
                raise UserError(
                    f"{study.study_name} was drawn from the third round's space before its levers were pruned "
                    f"(lab/frontier_space.py PRUNED): continue it at commit {PRUNED_AT}"
                )


def sampler(args: argparse.Namespace, already: int) -> optuna.samplers.TPESampler:
    """The worker's sampler, seeded by the budget, its --seed and the trials the study already holds.

    Seeded by the first two only, a restarted worker drew again what it had drawn before its restart
    (while the study is under STARTUP_TRIALS, TPE's draws are its seeded random ones): two of the
    third round's restarted workers trained two of their earlier trials again. A new study still
    starts from budget + seed; 7919 (a prime above any worker's --seed) keeps two workers apart."""
    return optuna.samplers.TPESampler(seed=args.budget + args.seed + 7919 * already, n_startup_trials=STARTUP_TRIALS)


class LeaderPruner(optuna.pruners.BasePruner):
    """Stop a trial only when it cannot reach the leaders: from epoch `after` on, when its validation accuracy
    is more than `margin` points below the `leaders`-th best complete trial's at the same epoch.

    The median pruner of the earlier studies stopped 17 to 35 of each study's 41 trained trials after
    epoch 10, some of them a few tenths below the median, and so judged a trial by the epochs that are
    not its score. This one lets every trial that might still place among the leaders finish, and never
    stops one at its `last` epoch: that saves nothing, and would count a trial that ran to the end as pruned.
    """

    def __init__(self, leaders: int = 5, margin: float = 0.3, after: int = PRUNE_AFTER, last: int = EPOCHS) -> None:
        self.leaders, self.margin, self.after, self.last = leaders, margin, after, last

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        epoch = trial.last_step
        if epoch is None or not self.after <= epoch < self.last:
            return False
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        at = sorted((t.intermediate_values[epoch] for t in complete if epoch in t.intermediate_values), reverse=True)
        return len(at) >= self.leaders and trial.intermediate_values[epoch] < at[self.leaders - 1] - self.margin


ROUND_II = {5000: "s8_5k", 4000: "s8_4k", 3000: "s8_3k"}  # the second frontier round's winners


def public_nets(budget: int) -> dict[str, str]:
    """The public nets of `lab/reference.py` under this budget, each with the label it is asked for by."""
    from lab.reference import REFERENCE as NETS
    from lab.reference import SOURCES

    return {name: f"{name}, the public net of ../shared/reference/{SOURCES[name]}_*.txt"
            for name, net in NETS.items() if net.budget == budget}  # fmt: skip


def lost(study: optuna.Study, name: str) -> bool:
    """Whether every trial of a net asked for by name failed: its worker was stopped before the trial ended.
    Asked again, or the study's stage 2 would go without it."""
    tried = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("net") == name]
    return bool(tried) and all(t.state == optuna.trial.TrialState.FAIL for t in tried)


def ask_for(study: optuna.Study, changes: list[str], new: bool, teacher: str = "") -> None:
    """Queue the trials asked for by name: in a new study the public reference, mapped and as published (in
    a course study: the public nets of its budget; in a frontier-iii study, the second round's winner: both
    also join stage 2; asked again if its trial was interrupted), then `--best-with` (`variant`).
    """
    space, budget = study.user_attrs["space"], int(study.study_name.removeprefix("budget-"))
    named = public_nets(budget) if space == "course" else {}
    if space == "frontier-iii" and budget in ROUND_II:
        named = {ROUND_II[budget]: f"{ROUND_II[budget]}, the second round's winner, learning from this study's teacher"}
    if named and not new:
        optuna.storages.fail_stale_trials(study)  # a trial that a stopped worker left running counts as lost
    for name, label in named.items():
        if new or lost(study, name):
            study.enqueue_trial({}, user_attrs={"asked_for": label, "net": name, "stage_2": True})
    if new and space == "frontier":
        study.enqueue_trial(REFERENCE, user_attrs={"asked_for": "the public reference"})
        study.enqueue_trial(PUBLIC, user_attrs={"asked_for": PUBLIC_LABEL})
    if changes:
        params, attrs = variant(study, changes, teacher)
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)


def variant(study: optuna.Study, changes: list[str], teacher: str) -> tuple[dict, dict]:
    """`--best-with KEY=VALUE ...`: the study's best trial (stage 2's winner once there is one) with these
    parameters changed, and the attributes it is queued with.

    Such a trial answers a question asked on purpose ("does the best net gain from X?"), so it
    trains to the end: the pruner would judge it by epochs that are not the score. Once there is a
    winner the variant joins stage 2: one seed cannot answer a question whose answer is smaller than
    the spread of seeds. In the second round's space a variant could win. In the third round's it is
    a paired comparison (`variant_of` the winner, on the winner's seeds) and never wins: whether a lever
    stays in the family is decided by such pairs, and the published winner stays the study's winner.
    """
    space, budget = study.user_attrs["space"], int(study.study_name.removeprefix("budget-"))
    if space not in ("frontier", "frontier-iii"):
        raise UserError(f"--best-with varies the frontier spaces' trials, not the {space} space's")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise UserError(f"--best-with: {study.study_name} has no complete trial yet")
    won = winner(study)
    if space == "frontier-iii" and won is None:
        raise UserError(f"--best-with: {study.study_name} has no stage-2 winner yet to compare a variant with")
    best = study.best_trial if won is None else next(t for t in complete if t.number == won)
    # in the second round, parameters added to the space since take the reference's values
    known = set(REFERENCE) if space == "frontier" else {k for t in complete if searched(t.user_attrs) for k in t.params}
    pairs = [change.partition("=") for change in changes]
    unknown = [key for key, _, _ in pairs if key not in known]
    if unknown:
        raise UserError(f"--best-with: unknown parameter {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        values = {key: json.loads(value) for key, _, value in pairs}
    except json.JSONDecodeError:
        raise UserError(f'--best-with takes KEY=VALUE with a JSON value (0.999, true, "cos"), got {changes}') from None
    params = {**REFERENCE, **best.params, **values} if space == "frontier" else {**best.params, **values}
    try:
        with warnings.catch_warnings():  # a value outside a range is allowed: Optuna warns once when it trains
            warnings.simplefilter("ignore")
            fixed = optuna.trial.FixedTrial(params)
            layers = suggest(fixed, teacher)[0] if space == "frontier" else suggest_frontier(fixed, budget, teacher)[0]
    except ValueError as err:  # a value that is not one of a parameter's choices, or one that a change needs
        raise UserError(f"--best-with {' '.join(changes)}: {first_line(err)}") from None
    if layers is None:
        raise UserError(f"--best-with {' '.join(changes)}: no net of that shape fits {study.study_name}")
    attrs = {"asked_for": f"trial {best.number} with {', '.join(changes)}"}
    if won is not None:
        attrs["stage_2"] = True
    if space == "frontier-iii":
        attrs["variant_of"] = won
    return params, attrs


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = OneLineParser(description="Optuna search of architecture and recipe for one budget, on --val.")
    p.add_argument("--budget", type=positive_int, required=True, help="strict upper bound on parameters")
    p.add_argument("--trials", type=positive_int, default=12, help="trained trials in the study, all workers together")
    p.add_argument("--storage", help="Optuna storage URL (default: a SQLite file beside the exported trials)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (added to the budget); one per worker of a study")
    p.add_argument("--data-dir", default=DATA_DIR, help="folder holding MNIST/raw (default: $MNIST_ROOT or data/)")
    p.add_argument("--out", default=str(OUT), help="folder for the exported trials")
    p.add_argument("--epochs", type=positive_int, default=EPOCHS)
    p.add_argument("--val", type=positive_int, default=VAL, help="held-out training images to score on")
    p.add_argument("--subset", type=positive_int, help="train on the first N training images only (smoke runs)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument(
        "--teacher",
        default="",
        metavar="RECORD",
        help="a train.py run record (trained with the same --val) to distil from: adds distill_weight to the space",
    )
    p.add_argument(
        "--confirm",
        type=positive_int,
        help="stage 2: train the best N distinct trials again on each --confirm-seeds seed (e.g. 3)",
    )
    p.add_argument(
        "--space",
        choices=SPACES,
        help="a new study's search space: the frontier family (default) or the course nets' (lab/course_space.py)",
    )
    p.add_argument(
        "--rank",
        choices=RANKS,
        help="a new study's stage-2 order: by the mean over seeds (default) or the worst seed first",
    )
    p.add_argument(
        "--confirm-seeds", type=int, nargs="+", default=[1, 2, 3], metavar="SEED", help="stage 2 seeds (default 1 2 3)"
    )
    p.add_argument("--export", action="store_true", help="only export the study as it stands: train nothing")
    p.add_argument(
        "--best-with",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="first train the study's best trial (stage 2's winner once there is one) with these parameters "
        "changed (e.g. ema=0.999)",
    )
    args = p.parse_args(argv)
    args.command = shlex.join(["python", "-m", "lab.sweep", *argv])
    args.teacher = repo_path(args.teacher) if args.teacher else ""
    args.commit = git_commit()  # what this worker runs, whatever the tree holds by the time it exports
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
        out = writable_dir(args.out)
        data = DataConfig(args.data_dir, subset=args.subset, val=args.val)
        if not args.export:  # exporting reads the database only
            make_loaders(data, device)  # bad data: fail now
        if args.teacher and not args.export:
            load_teacher(Recipe(teacher=args.teacher), data, device)  # a teacher that cannot teach: fail now
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a trial stopped by Ctrl-C is no traceback
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
    try:
        study, new = open_study(args, out)
        if not args.export:
            drawn_from_this_space(study)
        ask_for(study, args.best_with, new, args.teacher)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    path = out / f"{study.study_name}.json"
    if args.export:
        if args.confirm:
            expect_stage_2(study, args)
        export(study, path, args)
        print(f"{trained(study)} trained trials in {study.study_name} exported to {path}")
        return 0

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        export(study, path, args)
        if "rejected" not in trial.user_attrs:
            accs = trial.user_attrs.get("val_acc", [])
            print(
                f"trial {trial.number} {trial.state.name.lower()} after {len(accs)} epochs: "
                f"{trial.user_attrs['params']:,} params, `{trial.user_attrs['layers']}`, "
                f"last val {accs[-1] if accs else float('nan'):.2f} %, score {trial.value or float('nan'):.2f}",
                flush=True,
            )
        if not more_to_train(study, args.trials):
            study.stop()
        STOP.check()

    started = time.perf_counter()
    # `kill` stops a worker as Ctrl-C does: one under nohup or a scheduler never sees Ctrl-C
    signal.signal(signal.SIGINT, STOP)
    signal.signal(signal.SIGTERM, STOP)
    try:
        if more_to_train(study, args.trials):
            let_the_creator_take_first(study, queued_here=new or bool(args.best_with))
            study.optimize(lambda t: objective(t, args, device), callbacks=[after_trial])
        if args.confirm:
            wait_for_stage_1(study)
            confirm(study, args, device)
    except KeyboardInterrupt:  # Optuna has marked the trial in progress failed; the study keeps the rest
        export(study, path, args)
        print(f"\ninterrupted: {path} holds the study so far; run the same command to continue it", file=sys.stderr)
        return 130
    best = study.best_trial if any(t.state.name == "COMPLETE" for t in study.trials) else None
    print(f"{trained(study)} trained trials in {study.study_name} ({time.perf_counter() - started:.0f} s here)")
    if best:
        print(f"best: trial {best.number}, score {best.value:.2f} %, `{best.user_attrs['layers']}`, {best.params}")
    winner = export(study, path, args)["winner"]
    if winner:
        print(f"stage 2 winner: trial {winner['number']}, `{winner['layers']}` (see confirmation in the export)")
    print(f"trials exported to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
