"""Regenerate the README's numbers, tables and plots from the files in results/ (never type a number by hand).

python report.py          # rewrite the generated blocks of README.md and images/test-accuracy.png
python report.py --check  # exit 1 if README.md is out of date with results/
"""

import functools
import json
import re
import statistics
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from model import MODELS, count_parameters, get_model
from train import OneLineParser
from utils import RECIPES, Recipe, UserError, first_line, format_rf_table, receptive_field_table, recipe_from_dict

HERE = Path(__file__).parent
TARGET = 99.4  # % test accuracy, on the final epoch and on each of the last 3
PUBLISHED = re.compile(r"^(?P<model>\w+?)-seed(?P<seed>\d+)\.json$")  # full-data runs on the test set
SEEDS = 5  # seeds per model behind a published verdict


@dataclass(frozen=True)
class Goal:
    """What a model must show over SEEDS seeds: how many hold TARGET in each of the last 3 epochs, and a mean."""

    seeds_holding: int
    mean_final: float | None = None  # minimum mean final-epoch test accuracy, %

    def describe(self) -> str:
        mean = f", mean ≥ {self.mean_final} %" if self.mean_final else ""
        at_least = "" if self.seeds_holding == SEEDS else "≥ "
        return f"{at_least}{self.seeds_holding} of {SEEDS} seeds hold {TARGET} %{mean}"


GOALS = {  # parameter budget -> what the net that holds it must show
    20_000: Goal(5, mean_final=99.5),
    10_000: Goal(5),
    8_000: Goal(5),
    5_000: Goal(5),
    4_000: Goal(4),  # beats the best public result (one seed at 3,762 parameters) with evidence
    3_000: Goal(4),  # the moonshot
}
FRONTIER = (8_000, 5_000, 4_000, 3_000)  # the budgets whose net and recipe a sweep.py study chose
ALONE, MAX_RUN_S = "cpu (2 threads)", 300  # a student's 2-core laptop: a published net trains in 5 minutes
MAX_JOBS_RATIO = 0.6  # 5 seeds with --jobs 2 against one after another on 2 threads
SPEEDUP_GOALS = {"s6": 1.5, "s7_8k": 2.0, "s7_4k": 2.0, "s7_3k": 2.0}  # training step, default path over fp32
LOADER_GOALS = {"cpu": 1.3, "cuda": 10.0}  # fast (on-device) loader over the classic DataLoader, images/s
GPU = HERE / "results" / "gpu"  # runs made on a lent CUDA GPU (.ci/gpu), kept apart from the CPU's published ones
GPU_RUN_GOALS_S = {"s6": 10}  # a full 15-epoch run alone on the GPU, data included
SUPERSEDED = HERE / "results" / "superseded"  # a folder per generation of designs whose names now mean newer nets
STUDIES = HERE / "results" / "validation"  # sweep.py's exported Optuna studies, one per budget
STUDIES_II = STUDIES / "frontier-ii"  # the second round: a wider family, distillation, stage 2
STUDY_TRIALS = 40  # trained trials a frontier-ii study needs before its stage 2
PRECISION = STUDIES / "precision"  # the same recipe and seeds trained in bf16 and in fp32, scored on validation


def read_json(path: Path, keys: Iterable[str] = ()) -> dict:
    """A results file, or a UserError naming it: unreadable, not JSON, or missing the keys its kind must have."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {first_line(err)}") from None
    missing = sorted(set(keys) - set(data)) if isinstance(data, dict) else sorted(keys) or ["an object"]
    if missing:
        raise UserError(f"{path} is not a results file of this kind: it lacks {', '.join(missing)}")
    return data


RUN_KEYS = ("model", "params", "budget", "seed", "device", "config", "eval_split", "train_time_s", "epochs")


def load_runs(folder: Path = HERE / "results") -> list[dict]:
    """Published runs, sorted by model (story order) and seed."""
    runs = [read_json(p, RUN_KEYS) for p in sorted(folder.glob("*.json")) if PUBLISHED.match(p.name)]
    runs = [r for r in runs if r.get("eval_split") == "test" and len(r["epochs"]) == r["config"]["epochs"]]
    rank = {m: i for i, m in enumerate(MODELS)}
    return sorted(runs, key=lambda r: (rank.get(r["model"], len(rank)), -(r["budget"] or 0), r["model"], r["seed"]))


def load_superseded(folder: Path = SUPERSEDED) -> list[dict]:
    """Runs of superseded designs, each renamed `<model> (<its folder>)`: a budget name may have had several."""
    runs = []
    for design in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        runs += [{**r, "model": f"{r['model']} ({design.name.replace('-', ' ')})"} for r in load_runs(design)]
    return runs


def label(model: str, superseded: bool = False) -> str:
    """`s7_8k`, or `s7_8k` (hand designed) for a superseded design; with ", superseded" in the story."""
    name, _, design = model.partition(" (")
    notes = [n for n in (design.rstrip(")"), "superseded" if superseded else "") if n]
    return f"`{name}`" + (f" ({', '.join(notes)})" if notes else "")


def test_accs(run: dict) -> list[float]:
    return [e["test_acc"] for e in run["epochs"]]


def target_met(run: dict) -> bool:
    return min(test_accs(run)[-3:]) >= TARGET


def first_epoch_at_target(run: dict) -> int | None:
    return next((e["epoch"] for e in run["epochs"] if e["test_acc"] >= TARGET), None)


def results_table(runs: list[dict]) -> str:
    head = (
        "| model | params (budget) | seed | epochs | final test acc | min of last 3 | first epoch ≥ 99.4 "
        "| target | train time | device |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for r in runs:
        budget = f" (< {r['budget']:,})" if r["budget"] else ""
        verdict = "met" if target_met(r) else "**missed**"
        rows.append(
            f"| `{r['model']}` | {r['params']:,}{budget} | {r['seed']} | {len(r['epochs'])} "
            f"| {test_accs(r)[-1]:.2f} % | {min(test_accs(r)[-3:]):.2f} % | {first_epoch_at_target(r) or 'never'} "
            f"| {verdict} | {r['train_time_s'] / 60:.1f} min | {r['device']} |"
        )
    return "\n".join([head, *rows]) if rows else "_No published runs yet._"


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Per model, over every seed that was run: what results/summary.json holds."""
    summary = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        group = [r for r in runs if r["model"] == model]
        finals = [test_accs(r)[-1] for r in group]
        summary[model] = {
            "params": group[0]["params"],
            "budget": group[0]["budget"],
            "seeds": [r["seed"] for r in group],
            "final_acc_mean": statistics.fmean(finals),
            "final_acc_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "final_acc_min": min(finals),
            "final_acc_max": max(finals),
            "seeds_at_target_last3": sum(target_met(r) for r in group),
            "first_epoch_at_target": [first_epoch_at_target(r) for r in group],
            "train_time_s_mean": statistics.fmean(r["train_time_s"] for r in group),
            "devices": sorted({r["device"] for r in group}),
        }
    return summary


def goal_verdict(goal: Goal, s: dict) -> str:
    """Missed as soon as too many seeds fail; pending until SEEDS seeds ran; then met or missed."""
    failed = len(s["seeds"]) - s["seeds_at_target_last3"]
    if failed > SEEDS - goal.seeds_holding:
        return "missed"
    if len(s["seeds"]) < SEEDS:
        return "pending"
    return "missed" if goal.mean_final and s["final_acc_mean"] < goal.mean_final else "met"


def summary_table(summary: dict[str, dict]) -> str:
    head = (
        f"| model | params (budget) | seeds | final test acc, mean ± std | min – max | seeds ≥ {TARGET} % in each "
        "of the last 3 epochs | first epoch ≥ 99.4 % (per seed) | mean train time |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for model, s in summary.items():
        budget = f" (< {s['budget']:,})" if s["budget"] else ""
        n = len(s["seeds"])
        spread = f" ± {s['final_acc_std']:.2f}" if n > 1 else ""
        firsts = ", ".join(str(f) if f else "never" for f in s["first_epoch_at_target"])
        rows.append(
            f"| {label(model)} | {s['params']:,}{budget} | {n} | {s['final_acc_mean']:.2f}{spread} % "
            f"| {s['final_acc_min']:.2f} – {s['final_acc_max']:.2f} % | {s['seeds_at_target_last3']} of {n} "
            f"| {firsts} | {s['train_time_s_mean'] / 60:.1f} min |"
        )
    return "\n".join([head, *rows]) if rows else "_No published runs yet._"


@functools.cache
def study_path(budget: int) -> Path:
    """The study that chose a budget's net: frontier-ii's once its stage 2 has a winner, else the first round's."""
    second = STUDIES_II / f"budget-{budget}.json"
    if second.exists() and read_json(second, ("trials", "winner"))["winner"]:
        return second
    return STUDIES / f"budget-{budget}.json"


@functools.cache
def study(budget: int) -> dict | None:
    """sweep.py's exported study of a budget, or None where the budget's net was set up front (read once)."""
    path = study_path(budget)
    return read_json(path, ("trials", "best")) if path.exists() else None


@functools.cache
def holder(budget: int) -> str | None:
    """The registered net that holds a budget: its study's winner (or best trial), else the entry registered for it.

    A study's best trial may be a net that a smaller budget's study chose too: one net then holds
    several budgets, and its runs answer each of them.
    """
    exported = study(budget) or {}
    return holder_of(exported.get("winner") or exported.get("best"), budget)  # stage 2's winner once there is one


def holder_of(best: dict | None, budget: int) -> str | None:
    """The registered net and recipe of a study's chosen trial (or, with none, the entry registered for budget)."""
    for name, spec in MODELS.items():
        model = spec.build()
        if best is None and spec.budget == budget:
            return name
        if best and (getattr(model, "layers", None), getattr(model, "dropout", None)) == (
            best["layers"],
            best["suggested"]["dropout"],
        ):
            if is_chosen_recipe(RECIPES[name], recipe_from_dict(best["recipe"])):
                return name
    return None


def is_chosen_recipe(published: Recipe, chosen: Recipe) -> bool:
    """Whether a registered recipe is a study's: the same in every field but precision (decided apart, see
    precision_table()) and the teacher, which for the published runs is the study's teacher trained again
    the same way on all 60,000 training images (the student's images, as load_teacher checks)."""
    same = replace(published, precision=chosen.precision, teacher=chosen.teacher) == chosen
    return same and same_teacher(published.teacher, chosen.teacher)


def same_teacher(published: str, studied: str) -> bool:
    """Two teacher records of one net, seed and recipe (or no teacher at all in either)."""
    if not (published and studied):
        return published == studied
    a, b = (read_json(HERE / path, ("model", "seed", "config")) for path in (published, studied))
    return (a["model"], a["seed"], a["config"]["recipe"]) == (b["model"], b["seed"], b["config"]["recipe"])


def searched_nets() -> list[str]:
    """The registered nets that hold a searched budget, largest budget first, each once."""
    return [m for m in dict.fromkeys(holder(b) for b in FRONTIER) if m]


def goal_verdicts(summary: dict[str, dict]) -> dict[int, dict]:
    """Per budget: its net, the goal and the verdict over the seeds that ran (results/summary.json's "goals")."""
    verdicts = {}
    for budget, goal in GOALS.items():
        model = holder(budget)
        s = summary.get(model)
        verdicts[budget] = {
            "model": model,
            "goal": goal.describe(),
            "verdict": goal_verdict(goal, s) if s else "not run yet",
        }
    return verdicts


def teacher_record(recipe: Recipe | None) -> str:
    """The run record a recipe distils from, or "" where it learns from labels only."""
    return recipe.teacher if recipe and recipe.teacher and recipe.distill_weight else ""


def teacher_net(name: str) -> str:
    """The registry name of the net a model's recipe distils from, or "" where it learns from labels only."""
    record = teacher_record(RECIPES.get(name))
    return read_json(HERE / record, ("model",))["model"] if record else ""


def goal_table(summary: dict[str, dict], verdicts: dict[int, dict]) -> str:
    """One row per budget: its net, the goal, and the verdict over the seeds that ran."""
    rows = []
    for budget, v in verdicts.items():
        s = summary.get(v["model"])
        verdict = "**missed**" if v["verdict"] == "missed" else v["verdict"]
        if s is None:
            net = f"`{v['model']}`" if v["model"] else "—"
            rows.append(f"| < {budget:,} | {net} | {v['goal']} | — | — | {verdict} |")
            continue
        digits = 3 if GOALS[budget].mean_final else 2  # a mean just under its goal must not round up to it
        taught = teacher_net(v["model"])
        params = f"{s['params']:,}" + (f"; distilled from `{taught}`, not counted" if taught else "")
        rows.append(
            f"| < {budget:,} | `{v['model']}` ({params}) | {v['goal']} | {s['seeds_at_target_last3']} of "
            f"{len(s['seeds'])} | {s['final_acc_mean']:.{digits}f} ± {s['final_acc_std']:.2f} % | {verdict} |"
        )
    head = (
        f"| budget | net (params) | goal over {SEEDS} seeds, 15 epochs | seeds holding ≥ {TARGET} % in each of the "
        "last 3 epochs | final test acc | verdict |\n|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def replace_block(text: str, name: str, body: str) -> str:
    """Swap what stands between <!-- name:begin --> and <!-- name:end --> for body."""
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"error: README.md has no '<!-- {name}:begin -->' ... '<!-- {name}:end -->' block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def distilled(name: str) -> str:
    """ ", distilled from <teacher record>" for a net whose recipe learns from a teacher; else nothing."""
    record = teacher_record(RECIPES.get(name))
    return f"; distilled from `{record}` ({RECIPES[name].distill_weight:.0%} of the loss)" if record else ""


def models_table() -> str:
    rows = [
        f"| `{name}` | {count_parameters(get_model(name)):,} | {f'< {spec.budget:,}' if spec.budget else '—'} "
        f"| {spec.about}{distilled(name)} |"
        for name, spec in MODELS.items()
    ]
    return "\n".join(["| name | parameters | budget | design |", "|---|---|---|---|", *rows])


@dataclass(frozen=True)
class Step:
    """One row of the story: what a step set out to do, and what its result taught.

    `{...}` fields are filled in from the runs, the registry and the studies; a step whose facts
    are not there yet shows "—". A superseded step reads its runs from results/superseded/.
    """

    model: str
    target: str
    analysis: str
    superseded: bool = False


FRONTIER_TARGET = (
    "{budgets}: {chosen} on the validation split of {studies}. Net `{layers}`, dropout {dropout:.3g}; {sgd}; lr by "
    "OneCycle up to {lr:.3g} (warm-up {pct_start:.0%} of the steps, {anneal} annealing to ~0), batch {batch_size}; "
    "rotation ±{degrees:.1f}°, shift ±{translate:.0%}, zoom ±{scale:.0%}, each image with p = {p:.2f}.{averaging}"
)
FRONTIER_ANALYSIS = (
    "Its validation score (lowest of the last 3 epochs, {val_seeds}) was {val_score} %; on the test set the final "
    "accuracy averages {mean:.2f} % over {n} seeds, {delta:+.2f} points against s6 with {ratio:.0%} of its "
    "parameters. Train accuracy (on augmented images) ends {gap_word} test accuracy ({train:.2f} % vs {test:.2f} %, "
    "lowest seed). {versus}"
)
LAST_WEIGHTS_ANALYSIS = (
    "Against s6 the mean final accuracy moves by {delta:+.2f} points with {ratio:.0%} of its parameters; train "
    "accuracy ends {gap_word} test accuracy ({train:.2f} % vs {test:.2f} %). The test accuracy still swings from "
    "epoch to epoch while the lr anneals. **Superseded** by `{successor}`: the same training, evaluated on a "
    "moving average of its weights, which its studies preferred; its runs are in "
    "`results/superseded/no-weight-average/`."
)
STORY = [
    Step(
        "baseline",
        "Get the pipeline right with a big, plain CNN: convs 32-64-128-256, two max-pools, FC 4096 → 50 → 10.",
        "{params} parameters, {fc:.0%} of them in the first fully connected layer, no BatchNorm, no augmentation "
        "and no global pooling. The budgeted nets keep the 3x3 stacks and max-pool, and replace the FC head by a "
        "1x1 convolution to 10 maps plus global average pooling. Over 15 epochs it ends {delta:+.2f} points against "
        "s6's mean, with train accuracy {gap_word} test accuracy ({train:.2f} % vs {test:.2f} %).",
    ),
    Step(
        "s6",
        "< 20,000 parameters, ≥ 99.4 % in each of the last 3 of 15 epochs. BatchNorm after every convolution, a "
        "max-pool followed by a 1x1 convolution that halves the channels, Dropout 0.05 on the small maps, a GAP "
        "head, ±7° / ±1 px augmentation, SGD (lr 0.05, momentum 0.9) with StepLR (÷10 every 6 epochs).",
        "Train accuracy ends {gap_word} test accuracy ({train:.2f} % vs {test:.2f} %): augmentation and Dropout "
        "keep the net from overfitting. Most of its {params} parameters sit in the 16→32 and 32→16 convolutions, "
        "so the next step narrows the channels with the same shape and recipe.",
    ),
    Step(
        "s7_10k",
        "< 10,000 parameters with the same shape and recipe: widths 10-20 / 10 / 16-16-20.",
        "With about half the parameters of s6, the mean final accuracy moves by {delta:+.2f} points against s6. "
        "Train accuracy ends {gap_word} test accuracy ({train:.2f} % vs {test:.2f} %).",
    ),
    Step(
        "s7_8k (hand designed)",
        "< 8,000 parameters: the same shape, widths 8-16 / 8 / 16-16-16, Dropout 0.03, the same StepLR recipe.",
        "Against s6 the mean final accuracy moves by {delta:+.2f} points with {ratio:.0%} of its parameters, and "
        "the seeds spread wider: the unpadded net ends on a 6 px map and trains its last 3 epochs at lr 0.0005. "
        "**Superseded** by `{successor}`, the searched net that holds < 8,000 below; its runs are in "
        "`results/superseded/hand-designed/`.",
        superseded=True,
    ),
    Step(
        "s7_5k (hand designed)",
        "< 5,000 parameters: the same shape, widths 8-12 / 8 / 12-12-14, Dropout 0.02. The schedule was chosen on "
        "the validation split (`--val 5000`), before any test run: {val_runs}.",
        "OneCycle reached the higher validation plateau, but on the test set the mean final accuracy moves by "
        "{delta:+.2f} points against s6 with {ratio:.0%} of its parameters, and the seeds touch 99.4 % without "
        "holding it. **Superseded** by `{successor}`, the searched net that holds < 5,000 below; its runs are in "
        "`results/superseded/hand-designed/`.",
        superseded=True,
    ),
    *(
        Step(
            f"{model} (no weight average)",
            "The best trial of its studies before the search could average weights: the net and recipe that "
            "`{successor}` below keeps, evaluated and saved on its last weights.",
            LAST_WEIGHTS_ANALYSIS,
            superseded=True,
        )
        for model in ("s7_8k", "s7_4k")
    ),
    *(
        Step(
            f"{model} (no weight average)",
            "The first stage-2 winner of its budget's second-round study, as first published: the net and recipe "
            "that `{successor}` below keeps, evaluated and saved on its last weights.",
            "Mean final accuracy {mean:.2f} % over {n} seeds ({delta:+.2f} points against s6). After these runs, "
            "the study was asked on validation whether its winner gains from weight averaging (`--best-with "
            "ema=0.999`, which joins stage 2 on the same seeds), and the averaged variant won stage 2 on the mean "
            "over seeds (the stage-2 table below). **Superseded** by `{successor}`: the same training, evaluated "
            "and saved on a moving average of its weights; these runs are in "
            "`results/superseded/no-weight-average/`.",
            superseded=True,
        )
        for model in ("s8_5k", "s8_4k", "s8_3k")
    ),
    *(
        Step(
            f"{model} (fp32)",
            "The net and recipe that `{successor}` below keeps, trained in fp32 on an earlier 2-core CPU, before "
            "the weights of a run were kept.",
            "Mean final accuracy {mean:.2f} % over {n} seeds ({delta:+.2f} points against s6). **Superseded** by "
            "`{successor}`: the same net and recipe trained in bf16 (compared with fp32 on validation first), run "
            "again on this machine, which does not repeat the earlier CPU's runs bit for bit, with its weights "
            "committed; these runs are in `results/superseded/fp32/`.",
            superseded=True,
        )
        for model in ("s7_8k", "s7_4k", "s7_3k")
    ),
    *(
        Step(
            f"{model} (earlier cpu)",
            "The net and recipe that `{successor}` keeps, trained in fp32 on an earlier 2-core CPU, before "
            "the weights of a run were kept.",
            "Mean final accuracy {mean:.2f} % over {n} seeds ({delta:+.2f} points against s6's runs now). "
            "**Superseded** by `{successor}`: the same net, recipe and precision run again on this machine, which "
            "does not repeat the earlier CPU's runs bit for bit, so that its weights could be committed and checked "
            "by `verify.py`; these runs are in `results/superseded/earlier-cpu/`.",
            superseded=True,
        )
        for model in ("s6", "s7_10k")
    ),
    Step(
        "s6 (bf16 before validation)",
        "s6's recipe in bf16, applied to every net once s7_4k's recipe had scored the same in bf16 and fp32 on "
        "validation, before s6's own StepLR recipe had been compared so.",
        "Two seeds ran (mean final {mean:.2f} %) before the gap was noticed: the comparison must be of the same "
        "recipe. s6's own comparison on validation (`results/validation/precision/`) later found no difference, "
        "and s6 stays in the fp32 it was published in; these runs are in "
        "`results/superseded/bf16-before-validation/`.",
        superseded=True,
    ),
]


def validation_runs(model: str, folder: Path = SUPERSEDED / "hand-designed" / "validation") -> str:
    """The single validation runs behind the superseded s7_5k's schedule: schedule, lr, final accuracy."""
    parts = []
    for path in sorted(folder.glob(f"*/{model.partition(' ')[0]}-*.json")):
        run = read_json(path, RUN_KEYS)
        recipe, accs = run["config"]["recipe"], [e["val_acc"] for e in run["epochs"]]
        last3 = min(accs[-3:])
        parts.append(
            f"{recipe['schedule']} (lr {recipe['lr']}) reached {accs[-1]:.2f} % on validation, last 3 ≥ {last3:.2f} %"
        )
    return "; ".join(parts) or "no validation runs"


def study_link(path: Path) -> str:
    """A study as a link with its trial counts and best trial."""
    exported = read_json(path, ("trials", "best"))
    states = [t["state"] for t in exported["trials"]]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "pruned", "rejected", "fail") if s in states)
    link = f"[`{path.stem}`]({path.relative_to(HERE).as_posix()})"
    best, winner = exported["best"]["number"], (exported.get("winner") or {}).get("number")
    chose = f"best: trial {best}" if winner is None else f"stage-1 best: trial {best}; stage-2 winner: trial {winner}"
    return f"{link} ({counts}; {chose})"


def first_round(budget: int) -> str | None:
    """The net the first round's study chose for a budget, where a second-round winner holds it now."""
    if study_path(budget).parent != STUDIES_II:
        return None
    return holder_of(read_json(STUDIES / f"budget-{budget}.json", ("best",))["best"], budget)


def chosen(exported: dict) -> dict:
    """How a study chose its net: stage 2's winner by its mean over seeds, or stage 1's best by one seed."""
    winner = exported.get("winner")
    if winner:
        entry = exported["confirmation"][str(winner["number"])]
        n = len(entry["scores"])
        return {"chosen": "the stage-2 winner", "val_seeds": f"mean of {n} seeds", "val_score": f"{entry['mean']:.3f}"}
    return {"chosen": "the best trial", "val_seeds": "seed 0", "val_score": f"{exported['best']['score']:.2f}"}


def sgd_words(recipe: Recipe) -> str:
    """The optimiser and loss of a recipe in words: its momentum, and weight decay, smoothing, teacher if any."""
    if recipe.schedule == "onecycle" and recipe.cycle_momentum:
        words = ["SGD with OneCycle's cycled momentum"]
    elif recipe.momentum:
        words = [f"SGD with {'Nesterov ' if recipe.nesterov else ''}momentum {recipe.momentum:g}"]
    else:
        words = ["plain SGD (no momentum)"]
    if recipe.weight_decay:
        words.append(f"weight decay {recipe.weight_decay:g}")
    if recipe.label_smoothing:
        words.append(f"label smoothing {recipe.label_smoothing:g}")
    if teacher_record(recipe):
        words.append(f"{recipe.distill_weight:.0%} of the loss distilled from `{recipe.teacher}`")
    return ", ".join(words)


def replaced_first_rounds(searched: list[str]) -> list[str]:
    """The first round's searched nets that a second-round winner has replaced in every budget they held."""
    return [m for m in dict.fromkeys(first_round(b) for b in FRONTIER) if m and m not in searched]


def frontier_facts(model: str, first: bool = False) -> dict:
    """The budgets a searched net holds (`first`: held, until the second round), the studies that chose it, its
    design and recipe, flattened."""
    if first:
        budgets = [b for b in FRONTIER if first_round(b) == model]
        paths = [STUDIES / f"budget-{b}.json" for b in budgets]
    else:
        budgets = [b for b in FRONTIER if holder(b) == model]
        paths = [study_path(b) for b in budgets]
    recipe, net = RECIPES[model], get_model(model)
    return {
        **{k: v for k, v in asdict(recipe).items() if k != "augment"},
        **asdict(recipe.augment),
        "budgets": in_words(f"< {b:,}" for b in budgets) + " parameters",
        "studies": in_words(study_link(p) for p in paths),
        **chosen(read_json(paths[0], ("trials", "best"))),
        "layers": net.layers,
        "dropout": net.dropout,
        "holds": budgets,
        "sgd": sgd_words(recipe),
        "averaging": f" Evaluated and saved: a moving average of the weights (decay {recipe.ema})."
        if recipe.ema
        else "",
    }


def family(trials: list[dict]) -> str:
    """How often a study's trained trials drew each part of the wider family: where its sampler looked."""
    trained = [t for t in trials if t["state"] in ("complete", "pruned")]
    drawn = [
        sum(t["suggested"]["conv"] == "separable" for t in trained),
        sum(bool(t["suggested"]["residual"]) for t in trained),
        sum(bool(t["suggested"]["share"]) for t in trained),
        sum(t["recipe"].get("distill_weight", 0.0) > 0 for t in trained),
    ]
    return " / ".join(map(str, drawn))


def frontier_ii(runs: list[dict]) -> str:
    """The second round of studies: how far each has come, stage 2's per-seed scores, and validation against test."""
    paths = {b: STUDIES_II / f"budget-{b}.json" for b in FRONTIER}
    studies = {b: read_json(path, ("trials",)) for b, path in paths.items() if path.exists()}
    if not studies:
        return "_No frontier-ii study has been exported yet._"
    rows = [
        f"| study | trained trials (of {STUDY_TRIALS}) | complete / pruned | rejected over budget | failed "
        "| of the trained: separable / residual / shared / distilled | best stage-1 trials (score, seed 0) |",
        "|---|---|---|---|---|---|---|",
    ]
    stage2 = ["| study | trial | params | net | distilled | score per seed (0, then stage 2's) | mean | |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    gaps = ["| budget | net | validation: mean score over seeds | test: mean score over seeds | test − validation |",
            "|---|---|---|---|---|"]  # fmt: skip
    for budget, exported in studies.items():
        trials = exported["trials"]
        states = [t["state"] for t in trials]
        complete = sorted((t for t in trials if t["state"] == "complete"), key=lambda t: -t["score"])
        best = ", ".join(f"{t['number']} ({t['params']:,} params, {t['score']:.2f} %)" for t in complete[:3])
        link = f"[`budget-{budget}`](results/validation/frontier-ii/budget-{budget}.json)"
        rows.append(
            f"| {link} | {states.count('complete') + states.count('pruned')} | {states.count('complete')} / "
            f"{states.count('pruned')} | {states.count('rejected')} | {states.count('fail')} | {family(trials)} "
            f"| {best or '—'} |"
        )
        winner = (exported.get("winner") or {}).get("number")
        by_number = {t["number"]: t for t in trials}
        for number, entry in (exported.get("confirmation") or {}).items():
            t = by_number[int(number)]
            weight = t["recipe"].get("distill_weight", 0.0)
            scores = ", ".join(f"{v:.2f}" for v in entry["scores"].values())
            mark, taught = "**winner**" if int(number) == winner else "", f"{weight:.0%}" if weight else "no"
            asked = f" ({t['asked_for'].removeprefix('trial ')})" if t.get("stage_2") else ""  # a --best-with variant
            stage2.append(
                f"| `budget-{budget}` | {number}{asked} | {t['params']:,} | `{t['layers']}` | {taught} "
                f"| {scores} | {entry['mean']:.3f} % | {mark} |"
            )
        name = holder(budget) if winner is not None else None  # a winner is what makes this study choose
        published = [r for r in runs if r["model"] == name]
        if name and published:
            val = exported["confirmation"][str(winner)]
            test = statistics.mean(min(test_accs(r)[-3:]) for r in published)
            gaps.append(
                f"| < {budget:,} | `{name}` | {val['mean']:.3f} % ({len(val['scores'])}) | {test:.3f} % "
                f"({len(published)}) | {test - val['mean']:+.3f} |"
            )
    parts = ["\n".join(rows)]
    if len(stage2) > 2:
        head = "Stage 2 (validation; a score is the lowest accuracy of the last 3 epochs):"
        parts.append(head + "\n\n" + "\n".join(stage2))
    if len(gaps) > 2:
        parts.append("The winners on the test set (published seeds), against their validation scores:\n\n"
                     + "\n".join(gaps))  # fmt: skip
    return "\n\n".join(parts)


def in_words(items: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def successor(step: str, run: dict) -> str:
    """What replaced a superseded step: the registered net of the same name where it is the same net (a
    precision, an average or a machine changed), else the net that holds the run's budget now."""
    name = step.partition(" ")[0]
    if name in MODELS and count_parameters(get_model(name)) == run["params"]:
        return name
    return holder(run["budget"]) or "—"


def story(runs: list[dict], superseded: list[dict]) -> str:
    """The Target / Result / Analysis table, from the baseline to the smallest net, over every seed run."""
    s6 = summarize([r for r in runs if r["model"] == "s6"]).get("s6")
    searched = searched_nets()
    replaced = replaced_first_rounds(searched)
    steps = [
        *STORY,
        *(Step(f"{m} (first round)", FRONTIER_TARGET, FRONTIER_ANALYSIS, superseded=True) for m in replaced),
        *(Step(m, FRONTIER_TARGET, FRONTIER_ANALYSIS) for m in searched),
    ]
    superseded_or_replaced = superseded + [
        {**r, "model": f"{r['model']} (first round)"} for r in runs if r["model"] in replaced
    ]
    rows = ["| step | target | result | analysis |", "|---|---|---|---|"]
    on_gpu = load_runs(GPU)
    for step in steps:
        group = [r for r in (superseded_or_replaced if step.superseded else runs) if r["model"] == step.model]
        where = ""
        if not group and not step.superseded:  # a step not run on the CPU may have run on a lent GPU
            group = [r for r in on_gpu if r["model"] == step.model]
            where = f" on {group[0]['device']} (`results/gpu/`)" if group else ""
        if step.superseded and not group:
            continue  # a superseded design is told by its runs; its name may belong to a newer net now
        params = group[0]["params"] if group else count_parameters(get_model(step.model))
        facts: dict = {"params": f"{params:,}", "val_runs": validation_runs(step.model)}
        if step.superseded and group:
            facts["successor"] = successor(step.model, group[0])
        name, _, design = step.model.partition(" (")
        first = step.superseded and design == "first round)"
        if (name in searched and not step.superseded) or first:
            facts |= frontier_facts(name, first)
        if step.model == "baseline":
            linears = [m for m in get_model("baseline").modules() if isinstance(m, torch.nn.Linear)]
            facts["fc"] = sum(p.numel() for p in linears[0].parameters()) / params
        if group:
            s = summarize(group)[step.model]
            lowest = group[0]  # runs are sorted by seed
            facts |= {
                "n": len(group),
                "mean": s["final_acc_mean"],
                "train": lowest["epochs"][-1]["train_acc"],
                "test": test_accs(lowest)[-1],
                "ratio": params / s6["params"] if s6 else 0.0,
            }
            facts["gap_word"] = "below" if facts["train"] < facts["test"] else "above"
            if s6:
                facts["delta"] = s["final_acc_mean"] - s6["final_acc_mean"]
            facts["versus"] = (
                replaced_by(facts["holds"]) if first else versus(facts.get("holds", []), s, superseded, runs)
            )
            result = (
                f"{params:,} parameters; {s['seeds_at_target_last3']} of {len(group)} seeds hold ≥ {TARGET} % in each "
                f"of the last 3 epochs; final {mean_std(s)} (min {s['final_acc_min']:.2f} %){where}"
            )
        else:
            where = "results/superseded" if step.superseded else "results"
            result = f"{params:,} parameters; **not run here** (no `{where}/{step.model}-seed*.json`)"
        cells = [label(step.model, step.superseded), fill(step.target, facts), result, fill(step.analysis, facts)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def replaced_by(budgets: list[int]) -> str:
    """The closing words of a first-round net that a second round's winner replaced."""
    names = sorted({f"`{holder(b)}`" for b in budgets})
    winners = "winners" if len(names) > 1 else "winner"
    return (
        f"**Superseded** by {in_words(names)}, the second round's stage-2 {winners} below, chosen on the mean of "
        f"several validation seeds; its runs stay in `results/` under its name."
    )


def versus(budgets: list[int], s: dict, superseded: list[dict], runs: list[dict]) -> str:
    """How a searched net compares with the earlier designs of the budgets it holds, where there were any: the
    superseded ones, and the first round's net where a second-round winner holds a budget now."""
    olds = summarize([r for r in superseded if r["budget"] in budgets])
    olds |= summarize([r for r in runs if r["model"] in {first_round(b) for b in budgets}])
    if not olds:
        return "No earlier design of ours had this budget."
    before = "; ".join(
        f"{label(m)} ({o['params']:,} parameters) held on {o['seeds_at_target_last3']} of {len(o['seeds'])} seeds "
        f"(mean {o['final_acc_mean']:.2f} %)"
        for m, o in olds.items()
    )
    held = f"{s['seeds_at_target_last3']} of {len(s['seeds'])}"
    return f"The earlier designs of its budgets: {before}. This net holds on {held}."


def fill(template: str, facts: dict) -> str:
    """The template with its facts, or "—" while a fact it needs (a run, a study) is not there yet."""
    try:
        return template.format(**facts)
    except KeyError:
        return "—"


def loader_table(folder: Path) -> str:
    """bench.py: images/s of the on-device loader against the classic DataLoader, same model and path."""
    lines = []
    for path in sorted(folder.glob("bench-loaders-*.json")):
        b = read_json(path, ("device", "model", "batch_size", "median_images_per_s", "fast_over_classic"))
        m, goal = b["median_images_per_s"], LOADER_GOALS.get(path.stem.removeprefix("bench-loaders-"))
        verdict = f" (goal ≥ {goal:g}×: {'met' if b['fast_over_classic'] >= goal else '**missed**'})" if goal else ""
        lines.append(
            f"| {b['device']} | `{b['model']}` | {b['batch_size']} | {m['fast']:,.0f} | {m['classic']:,.0f} "
            f"| {b['fast_over_classic']:.2f}×{verdict} | median of {b['repeats']} × {b['timed_batches']} batches |"
        )
    if not lines:
        return "_No loader benchmark yet: run `python bench.py`._"
    head = "| device | model | batch | fast images/s | classic images/s | fast / classic | evidence |"
    return "\n".join([head, "|---|---|---|---|---|---|---|", *lines])


def step_table(folder: Path) -> str:
    """bench.py --compare: ms per training batch on the default path against the fp32 reference, per model."""
    lines, levers = [], []
    for path in sorted(folder.glob("bench-*.json")):
        b = read_json(path, ("device", "repeats", "timed_batches"))
        for model, r in b.get("compare", {}).items():
            m, goal = r["median_ms_per_batch"], SPEEDUP_GOALS.get(model)
            verdict = f" (goal ≥ {goal}×: {'met' if r['speedup'] >= goal else '**missed**'})" if goal else ""
            lines.append(
                f"| {b['device']} | `{model}` | {r['batch_size']} | {m['fp32']:.1f} | {m['auto']:.1f} "
                f"({r['default_precision']}) | {r['speedup']:.2f}×{verdict} "
                f"| median of {b['repeats']} × {b['timed_batches']} batches, alternating |"
            )
            if "levers_median_ms_per_batch" in r:
                cells = " | ".join(f"{ms:.1f}" for ms in r["levers_median_ms_per_batch"].values())
                levers.append((list(r["levers_median_ms_per_batch"]), f"| {b['device']} | `{model}` | {cells} |"))
    if not lines:
        return "_No step benchmark yet: run `python bench.py --compare`._"
    head = "| device | model | batch | fp32 reference, ms/batch | default path, ms/batch | speed-up | evidence |"
    table = "\n".join([head, "|---|---|---|---|---|---|---|", *lines])
    for names in dict.fromkeys(tuple(n) for n, _ in levers):  # a table per set of levers (CUDA has more)
        table += (
            "\n\nEach lever alone (`--levers`: the bare training step on one random batch, ms per batch):\n\n"
            + "| device | model | "
            + " | ".join(names)
            + " |\n|"
            + "---|" * (len(names) + 2)
            + "\n"
            + "\n".join(row for n, row in levers if tuple(n) == names)
        )
    return table


def precision_trials(folder: Path = PRECISION) -> dict[str, dict[str, dict[int, float]]]:
    """model -> precision -> seed -> validation score (lowest of the last 3 epochs) of the bf16-vs-fp32 runs."""
    trials: dict[str, dict[str, dict[int, float]]] = {}
    for path in sorted(folder.glob("*/*-val*.json")):
        run = read_json(path, RUN_KEYS)
        score = min(e["val_acc"] for e in run["epochs"][-3:])
        trials.setdefault(run["model"], {}).setdefault(run["config"]["precision"], {})[run["seed"]] = score
    return trials


def within_noise(scores: dict[str, dict[int, float]]) -> bool:
    """bf16 keeps accuracy: its mean score is no lower than fp32's by more than the larger seed-to-seed spread."""
    bf16, fp32 = (list(scores.get(p, {}).values()) for p in ("bf16", "fp32"))
    if min(len(bf16), len(fp32)) < 3:
        return False
    spread = max(statistics.stdev(bf16), statistics.stdev(fp32))
    return statistics.mean(bf16) >= statistics.mean(fp32) - spread


def precision_table(folder: Path = PRECISION) -> str:
    """The validation evidence behind training in bf16: the same recipe and seeds in both precisions."""
    rows = []
    for model, scores in precision_trials(folder).items():
        for precision in ("fp32", "bf16"):
            by_seed = scores.get(precision, {})
            if not by_seed:
                continue
            values = list(by_seed.values())
            spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
            rows.append(
                f"| `{model}` | {precision} | {', '.join(str(s) for s in by_seed)} | "
                f"{', '.join(f'{v:.2f}' for v in values)} | {statistics.mean(values):.2f}{spread} % |"
            )
        verdict = "unchanged within noise" if within_noise(scores) else "**not shown to be unchanged**"
        rows.append(f"| `{model}` | bf16 against fp32 | | | {verdict} |")
    if not rows:
        return "_No precision comparison on validation yet._"
    head = "| model | precision | seeds | validation score per seed | mean ± std |\n|---|---|---|---|---|"
    return "\n".join([head, *rows])


def jobs_table(folder: Path) -> str:
    """bench.py --jobs-compare: the wall time of several seeds with --jobs 2 against one after another."""
    rows = []
    for path in sorted(folder.glob("bench-jobs-*.json")):
        b = read_json(path, ("device", "model", "epochs", "seeds", "wall_s", "jobs_over_sequential", "commands"))
        ratio, wall = b["jobs_over_sequential"], b["wall_s"]
        verdict = "met" if ratio <= MAX_JOBS_RATIO else "**missed**"
        rows.append(
            f"| `{b['model']}` | {b['seeds']} seeds × {b['epochs']} epochs | {wall['sequential']:.0f} s "
            f"| {wall['jobs']:.0f} s | {ratio:.2f}× (goal ≤ {MAX_JOBS_RATIO}×: {verdict}) | `{b['commands']['jobs']}` |"
        )
    if not rows:
        return "_No --jobs benchmark yet: run `python bench.py --jobs-compare`._"
    head = (
        "| model | runs | one after another, 2 threads | `--jobs 2` (1 thread each) | ratio | command |\n"
        "|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def speed(folder: Path = HERE / "results") -> str:
    """The step and loader benchmarks (bench.py) and the wall time of full runs made alone, against their goals."""
    earlier = [{**r, "earlier": True} for r in load_runs(SUPERSEDED / "earlier-cpu")]  # alone-run times only
    tables = [step_table(folder), loader_table(folder), full_run_times(load_runs(folder) + earlier), jobs_table(folder)]
    return "\n\n".join([*tables, "Training in bf16, on the validation split:", precision_table()])


def full_run_times(runs: list[dict]) -> str:
    """Wall time of each published net's fastest full train.py run made alone, data loading included, against 5 min.

    A run marked `earlier` is a superseded one of the same net and recipe, made on an earlier CPU: it
    stands in, so marked, where no published run of the net was made alone.
    """
    rows = []
    for model in dict.fromkeys(r["model"] for r in runs):
        alone = [r for r in runs if r["model"] == model and r["device"] == ALONE]
        alone = [r for r in alone if not r.get("earlier")] or alone
        if not alone:
            continue
        run = min(alone, key=wall_time)
        verdict = "met" if wall_time(run) <= MAX_RUN_S else "**missed**"
        others = [wall_time(r) for r in runs if r["model"] == model and r is not run and not r.get("earlier")]
        median = f"{statistics.median(others) / 60:.1f} min" if others else "—"
        where = " on the earlier CPU (`results/superseded/earlier-cpu/`)" if run.get("earlier") else ""
        rows.append(
            f"| `{model}` | {run['params']:,} | {run['config']['batch_size']} | {wall_time(run) / 60:.1f} min "
            f"({verdict}){where} | `{run['command']}` | {median} |"
        )
    if not rows:
        return "_No full run made alone on the 2-core CPU yet._"
    head = (
        f"| model | params | batch | full 15-epoch run on {ALONE}, alone (≤ 5 min) | command "
        "| median of its other runs (sharing the CPU) |\n|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def alone_time(run: dict, goal: float | None) -> str:
    verdict = f" (goal ≤ {goal} s: {'met' if wall_time(run) <= goal else '**missed**'})" if goal else ""
    return f"{wall_time(run):.0f} s{verdict}"


def mean_std(s: dict) -> str:
    return f"{s['final_acc_mean']:.2f} ± {s['final_acc_std']:.2f} %"


def gpu_profile(path: Path = HERE / "results" / "bench-cuda.json") -> str:
    """What `bench.py --compare --profile` saw on the GPU: how much of a step's wall time the GPU computed."""
    if not path.exists():
        return ""
    lines = []
    for model, r in read_json(path, ("device", "compare"))["compare"].items():
        p = r.get("profile_default_path")
        if isinstance(p, dict):  # bench.py's CPU profiles, written before, hold the op list alone
            top = p["ops"][0]
            lines.append(
                f"Profile of `{model}`'s default path (`{path.name}`, under the profiler): the GPU computes "
                f"{100 * p['device_busy_share']:.0f} % of the {p['wall_ms_per_batch']:.1f} ms a batch takes; the "
                f"op with the most host time is `{top['op']}`, {top['ms_per_batch']:.2f} ms per batch."
            )
    return "\n\n".join(lines)


def gpu_runs(folder: Path = GPU, cpu_summary: dict[str, dict] | None = None) -> str:
    """The runs made on a GPU: per model, how many seeds hold the target, next to the CPU's, and the time alone."""
    runs = load_runs(folder)
    if not runs:
        return "_No run on a GPU yet: see `.ci/gpu`._"
    rows = []
    for model, s in summarize(runs).items():
        group = [r for r in runs if r["model"] == model]
        alone = [r for r in group if "--threads 1" not in r["command"]]  # --jobs runs each have one thread
        beside = [wall_time(r) for r in group if r not in alone]
        cpu = (cpu_summary or {}).get(model)
        cells = [
            f"`{model}`",
            group[0]["device"],
            str(len(group)),
            mean_std(s),
            f"{min(min(test_accs(r)[-3:]) for r in group):.2f} %",
            f"{s['seeds_at_target_last3']} of {len(group)}",
            ", ".join(alone_time(r, GPU_RUN_GOALS_S.get(model)) for r in alone) or "—",
            f"{statistics.median(beside):.0f} s" if beside else "—",
            f"{mean_std(cpu)} ({len(cpu['seeds'])} seeds)" if cpu else "—",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    head = (
        "| model | device | seeds | final test acc, mean ± std | lowest of any last-3 epoch | seeds holding "
        f"{TARGET} % | full run alone, data included | median run beside 7–15 others | on the CPU (`results/`) |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    return "\n\n".join(filter(None, ["\n".join([head, *rows]), gpu_profile()]))


def wall_time(run: dict) -> float:
    """Data loading and all epochs; not the few seconds Python takes to import torch."""
    return run["train_time_s"] + run.get("setup_time_s", 0)


def epoch_metrics(run: dict) -> list[dict]:
    """Per-epoch numbers without wall time: what must match between two runs of the same recipe and seed."""
    return [{k: v for k, v in e.items() if k != "time_s"} for e in run["epochs"]]


def notebook_run(folder: Path = HERE / "results") -> str:
    """What the committed notebook run reached, and whether train.py gives the same numbers."""
    lines = []
    for path in sorted(folder.glob("notebook-*.json")):
        nb = read_json(path, RUN_KEYS)
        accs = test_accs(nb)
        line = (
            f"The committed notebook run (`{nb['model']}`, seed {nb['seed']}, {len(accs)} epochs on {nb['device']}): "
            f"final test accuracy {accs[-1]:.2f} %, last 3 epochs ≥ {min(accs[-3:]):.2f} %"
        )
        name = f"{nb['model']}-seed{nb['seed']}.json"
        same_device = [
            (p, r)
            for p in (folder / name, folder / "gpu" / name)
            if p.exists() and (r := read_json(p, RUN_KEYS))
            if r["device"] == nb["device"]
        ]
        for path, cli in same_device:
            where = path.relative_to(folder).as_posix()
            if epoch_metrics(nb) == epoch_metrics(cli):
                line += f"; per-epoch metrics identical to `{where}` (train.py, same device)"
            elif nb["device"].startswith("cpu"):
                line += f"; per-epoch metrics **different from** `{where}` (train.py, same device)"
            else:  # cuDNN's fastest kernels are not deterministic: two CUDA runs part after a few steps
                line += (
                    f"; `{where}` (train.py on the same GPU, not bit-identical there without `--deterministic`) "
                    f"ended at {test_accs(cli)[-1]:.2f} %"
                )
        lines.append(line + ".")
    return "\n\n".join(lines) or "_The notebook has not been run in full yet._"


def plot_accuracy(
    runs: list[dict], summary: dict[str, dict], path: Path = HERE / "images" / "test-accuracy.png"
) -> None:
    """Test accuracy per epoch of each model: mean over its seeds, with the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.6))
    for model, s in summary.items():
        group = [test_accs(r) for r in runs if r["model"] == model]
        epochs, per_epoch = range(1, len(group[0]) + 1), list(zip(*group, strict=True))
        label = f"{model} ({s['params']:,} params), " + (f"mean of {len(group)} seeds" if group[1:] else "1 seed")
        line = ax.plot(epochs, [statistics.fmean(a) for a in per_epoch], "o-", ms=3, label=label)
        if len(group) > 1:
            ax.fill_between(
                epochs,
                [min(a) for a in per_epoch],
                [max(a) for a in per_epoch],
                color=line[0].get_color(),
                alpha=0.2,
                lw=0,
            )
    ax.axhline(TARGET, color="gray", ls="--", lw=1, label=f"target {TARGET} %")
    ax.set(
        xlabel="epoch",
        ylabel="test accuracy (%)",
        ylim=(97.5, 99.8),  # from 97.5 % the smallest net's second half is in view
        title="MNIST test accuracy per epoch (band: min to max over seeds)",
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)  # below: no curve hidden
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)


def render(
    readme: str, runs: list[dict], summary: dict[str, dict], verdicts: dict[int, dict], superseded: list[dict]
) -> str:
    note = (
        f"_Generated by `python report.py` from the {len(runs)} run files in `results/` (every seed that was run; "
        f"summary in `results/summary.json`). Target: ≥ {TARGET} % test accuracy in each of the last 3 epochs._\n\n"
    )
    readme = replace_block(readme, "goals", goal_table(summary, verdicts))
    readme = replace_block(readme, "models", models_table())
    readme = replace_block(readme, "rf", format_rf_table(receptive_field_table(get_model("s6")), markdown=True))
    smallest = min(searched_nets(), key=lambda m: count_parameters(get_model(m)), default=None)
    if smallest:
        rf_small = f"`{smallest}`:\n\n" + format_rf_table(receptive_field_table(get_model(smallest)), markdown=True)
        readme = replace_block(readme, "rf_small", rf_small)
    readme = replace_block(readme, "story", story(runs, superseded))
    readme = replace_block(readme, "superseded", summary_table(summarize(superseded)))
    readme = replace_block(readme, "speed", speed())
    readme = replace_block(readme, "notebook", notebook_run())
    readme = replace_block(readme, "gpu", gpu_runs(cpu_summary=summary))
    readme = replace_block(readme, "frontier_ii", frontier_ii(runs))
    per_run = "\n\n<details><summary>Every run</summary>\n\n" + results_table(runs) + "\n\n</details>"
    return replace_block(readme, "results", note + summary_table(summary) + per_run)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that README.md and summary.json are current")
    args = parser.parse_args(argv)
    readme_path, summary_path = HERE / "README.md", HERE / "results" / "summary.json"
    try:
        runs, superseded = load_runs(), load_superseded()
        old = readme_path.read_text()
        summary = summarize(runs)
        verdicts = goal_verdicts(summary)
        new = render(old, runs, summary, verdicts, superseded)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary_json = json.dumps({"models": summary, "goals": verdicts}, indent=1) + "\n"
    if args.check:
        stale = [p.name for p, text in ((readme_path, new), (summary_path, summary_json)) if read(p) != text]
        if stale:
            print(f"out of date with results/: {', '.join(stale)}; run python report.py", file=sys.stderr)
        return 1 if stale else 0
    readme_path.write_text(new)
    summary_path.write_text(summary_json)
    plot_accuracy(runs, summary)
    print(f"README.md, results/summary.json and images/test-accuracy.png updated from {len(runs)} runs")
    return 0


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


if __name__ == "__main__":
    sys.exit(main())
