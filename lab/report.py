"""Regenerate the READMEs' tables, numbers and pictures from the files in results/: no number is typed.

    python -m lab.report          # README.md, lab/README.md, results/summary.json, images/*.png
    python -m lab.report --check  # exit 1 if any of them is out of date with results/

A README holds hand-written prose around generated parts: a block between `<!-- NAME:begin -->`
and `<!-- NAME:end -->` is a table or a summary; `<!-- v:NAME -->…<!-- /v -->` inside a sentence is
one number. Both are filled in from the run records; the sentences around them are written by hand.
"""

import contextlib
import functools
import io
import json
import os
import re
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path

from lab.nets import COURSE_LAYERS, SEARCHED, Style, multiply_adds, searched, trial_style
from lab.recipes import RECIPES as LAB_RECIPES
from lab.recipes import LabRecipe, recipe_from_dict
from lab.reference import SOURCES
from model import MODELS, count_parameters
from train import HERE, RECIPES, OneLineParser, atomic_write, spec
from utils import UserError, first_line, format_rf_table, print_summary, receptive_field_table

RESULTS = HERE / "results"
TARGET = 99.4  # % test accuracy in each of the last 3 epochs: the course's target, on every seed
# The course's budgets: the net that answers each (the first), the nets tried before it, and the public nets of
# the reference READMEs rebuilt (lab/reference.py). A net shows once it has runs.
COURSE = {
    20_000: ("s9_20k", "s6", "ref_19088"),
    10_000: ("s9_10k", "s7_10k"),
    8_000: ("s9_8k", "s8_8k", "ref_7946", "ref_7904"),
}
GOALS = {5_000: 5, 4_000: 4, 3_000: 4}  # the lab's budgets: seeds of 5 that must hold the target
FRONTIER = (8_000, 5_000, 4_000, 3_000)  # the budgets whose net and recipe a study chose
GPU = RESULTS / "gpu"  # runs made on a lent CUDA GPU (lab/gpu), kept apart from the CPU's
ALONE = "cpu (2 threads)"  # a run made alone on the 2-core CPU: the one whose time counts
STUDIES, STUDIES_II = RESULTS / "validation", RESULTS / "validation" / "frontier-ii"
COURSE_STUDIES, STUDIES_III = STUDIES / "course", STUDIES / "frontier-iii"  # lab.sweep --space course / frontier-iii
FIRST_TEACHER_III = STUDIES / "frontier-iii-first-teacher"  # the third round's studies begun with a weaker teacher
TEACHERS = STUDIES / "teachers"  # the teachers' member runs (--val 5000) and lab.teacher's scores of them
TEACHER_CHECKS = STUDIES / "teacher-check"  # one student on the same seeds, learning from each teacher in turn
PRECISION = STUDIES / "precision"  # the same recipe and seeds in bf16 and in fp32, on validation
# Superseded designs keep their runs in results/superseded/<folder>/ under the name they were run as; each is
# shown under a name of its own. Runs in earlier-cpu/ are the same designs run on an earlier CPU.
SUPERSEDED = {"hand-designed": "hand", "fp32": "fp32", "no-weight-average": "last", "bf16-before-validation": "bf16"}
EARLIER_CPU = RESULTS / "superseded" / "earlier-cpu"
# Public results we cite (one run each, from the reference READMEs in ../shared/reference): params, test %.
PUBLIC = {"000": (19_088, 99.52), "001": (10_474, 99.43), "002": (7_946, 99.44), "004": (7_904, 99.47)}
PUBLISHED = re.compile(r"^\w+-seed\d+\.json$")  # <model>-seed<k>.json: a full-data run on the test set
RUN_KEYS = ("model", "params", "budget", "seed", "device", "config", "eval_split", "train_time_s", "epochs")


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


def load_runs(folder: Path = RESULTS, rename: Callable[[str], str] = str) -> list[dict]:
    """The full 15-epoch test-set runs of a folder, by model and seed."""
    runs = [read_json(p, RUN_KEYS) for p in sorted(folder.glob("*.json")) if PUBLISHED.match(p.name)]
    runs = [{**r, "model": rename(r["model"])} for r in runs if len(r["epochs"]) == r["config"]["epochs"]]
    order = [*MODELS, *SEARCHED]
    return sorted(
        runs, key=lambda r: (order.index(r["model"]) if r["model"] in order else len(order), r["model"], r["seed"])
    )


def load_superseded() -> list[dict]:
    """Every superseded design's runs, each under its own name (`s7_8k-hand`): a name never means two designs."""
    return [
        run
        for folder, suffix in SUPERSEDED.items()
        for run in load_runs(RESULTS / "superseded" / folder, lambda name, s=suffix: f"{name}-{s}")
    ]


def test_accs(run: dict) -> list[float]:
    return [e["test_acc"] for e in run["epochs"]]


def holds(run: dict) -> bool:
    """The course's target: at least 99.4 % in each of the last 3 epochs."""
    return min(test_accs(run)[-3:]) >= TARGET


def alone(run: dict) -> bool:
    """A run made with the machine to itself: 2 threads on the CPU; on a GPU, not one of several 1-thread seeds."""
    return run["device"] == ALONE or (not run["device"].startswith("cpu") and "--threads 1" not in run["command"])


def wall_time(run: dict) -> float:
    """Data loading and all epochs; not the few seconds Python takes to import torch."""
    return run["train_time_s"] + run.get("setup_time_s", 0)


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
            "held": sum(holds(r) for r in group),
            "final_mean": statistics.fmean(finals),
            "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "lowest_last3": min(min(test_accs(r)[-3:]) for r in group),
            "alone_s": min((wall_time(r) for r in group if alone(r)), default=None),
            "devices": sorted({r["device"] for r in group}),
        }
    return summary


def mean_std(s: dict) -> str:
    return f"{s['final_mean']:.2f} ± {s['final_std']:.2f} %"


def held(s: dict) -> str:
    return f"{s['held']} of {len(s['seeds'])}"


def verdict(s: dict | None, needed: int | None = None) -> str:
    """The course's verdict (every seed holds) or a lab goal's (`needed` of 5)."""
    if s is None:
        return "not run yet"
    n = len(s["seeds"])
    ok = s["held"] == n if needed is None else s["held"] >= needed and n >= 5
    return "held on every seed" if ok and needed is None else "met" if ok else "**missed**"


def minutes(seconds: float | None) -> str:
    return f"{seconds / 60:.1f} min" if seconds else "—"


# ---------------------------------------------------------------------------------------------
# The course README
# ---------------------------------------------------------------------------------------------
def course_table(cpu: dict[str, dict], gpu: dict[str, dict], earlier: dict[str, dict]) -> str:
    """Per course budget: the net, its seeds on the CPU and the GPU, and a 15-epoch run's time on each
    (on the CPU, where no run of it was made alone here, that of the same design on an earlier CPU)."""
    rows = []
    nets = [(None, "baseline"), *((budget, net) for budget, nets in COURSE.items() for net in nets)]
    for budget, model in nets:
        s, g = cpu.get(model), gpu.get(model)
        if s and not s["alone_s"] and earlier.get(model, {}).get("alone_s"):  # the same design on an earlier CPU
            s = {**s, "alone_s": earlier[model]["alone_s"], "earlier": " (earlier CPU)"}
        if s is None and g is None:
            continue
        on_gpu = f"{held(g)} ({g['devices'][0]}), {g['final_mean']:.2f} %" if g else "—"
        gpu_time = f"{g['alone_s']:.0f} s" if g and g["alone_s"] else "—"
        cpu_cells = (
            f"{held(s)} | {mean_std(s)} | {s['lowest_last3']:.2f} % | {minutes(s['alone_s'])}{s.get('earlier', '')}"
            if s
            else "— | — | — | —"
        )
        current = next((n for n in COURSE.get(budget, (model,)) if n in cpu or n in gpu), model)
        rows.append(
            f"| {f'< {budget:,}' if budget else '—'} | {net_cell(model, current)} | {(s or g)['params']:,} "
            f"| {cpu_cells} | {on_gpu} "
            f"| {gpu_time} | {verdict(s) if budget else '—'} |"
        )
    head = (
        f"| budget | net | params | CPU seeds holding ≥ {TARGET} % in each of the last 3 epochs | final test acc "
        "| lowest last-3 epoch | 15 epochs on the CPU, alone | GPU seeds holding, mean | 15 epochs on the GPU "
        "| verdict (CPU) |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def net_cell(model: str, current: str) -> str:
    """A course table's net: the budget's own (`current`: its newest with runs), one tried before it, or a
    public net rebuilt."""
    if model in SOURCES:
        return f"`{model}` (public, {SOURCES[model]})"
    return f"`{model}`" if model == current else f"`{model}` (tried before)"


def model_summary(model) -> str:
    """torchsummary's table of a net, as the notebook prints it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_summary(model)
    return "```\n" + out.getvalue().strip() + "\n```"


def numbers(cpu: dict[str, dict], gpu: dict[str, dict]) -> dict[str, str]:
    """The numbers that stand inside hand-written sentences, by name."""
    values = {}
    for model, s in {**cpu, **{f"gpu_{m}": g for m, g in gpu.items()}}.items():
        values |= {
            f"{model}_params": f"{s['params']:,}",
            f"{model}_held": held(s),
            f"{model}_mean": f"{s['final_mean']:.2f} %",
            f"{model}_lowest": f"{s['lowest_last3']:.2f} %",
            f"{model}_time": minutes(s["alone_s"]) if not model.startswith("gpu_") else f"{s['alone_s'] or 0:.0f} s",
        }
    nb = notebook()
    if nb:
        accs = test_accs(nb)
        values |= {"notebook_device": nb["device"], "notebook_final": f"{accs[-1]:.2f} %"}
        values["notebook_last3"] = ", ".join(f"{a:.2f}" for a in accs[-3:]) + " %"
    for round_, folder in (("course", COURSE_STUDIES), ("iii", STUDIES_III)):
        for path in sorted(folder.glob("budget-*.json")):
            study = read_json(path, ("budget", "trials"))
            confirmed = study.get("confirmation") or {}
            if study.get("winner"):
                won = confirmed[str(study["winner"]["number"])]
                values[f"{round_}_{study['budget']}_worst"] = f"{won['worst']:.2f} %"
                values[f"{round_}_{study['budget']}_mean"] = f"{won['mean']:.3f} %"
            for trial in study["trials"]:  # the nets asked for by name beside the drawn ones: their stage 2
                scores = confirmed.get(str(trial["number"]))
                if trial.get("net") and scores:
                    values[f"{trial['net']}_val_worst"] = f"{scores['worst']:.2f} %"
                    values[f"{trial['net']}_val_mean"] = f"{scores['mean']:.3f} %"
    versus = read_json(RESULTS / "bench-versus-cpu.json", ("reference", "models"))
    values |= {f"{m}_speed": f"{r['faster_than_reference']:.2f}×" for m, r in versus["models"].items()}
    baseline = read_json(RESULTS / "gpu" / "baseline-seed0.json", RUN_KEYS)["config"]["recipe"]["augment"]
    values["baseline_augment"] = f"rotation up to ±{baseline['degrees']:g}°, shift up to {baseline['translate']:.0%}"
    return values


def notebook() -> dict | None:
    """The committed run of the notebook as it stands (lab/run_notebook.py --publish): of the < 20k net."""
    path = RESULTS / f"notebook-{COURSE[20_000][0]}-seed0.json"
    return read_json(path, ("model", "seed", "device", "epochs")) if path.exists() else None


def plot_params_accuracy(runs: list[dict], path: Path) -> None:
    """Parameters against final test accuracy: each seed a dot, the target line, the public results we cite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for model in dict.fromkeys(r["model"] for r in runs if r["model"] != "baseline"):
        group = [r for r in runs if r["model"] == model]
        ax.scatter([r["params"] for r in group], [test_accs(r)[-1] for r in group], s=14, alpha=0.7, label=model)
    ax.scatter(*zip(*PUBLIC.values(), strict=True), marker="*", s=120, color="black", label="public, one run each")
    ax.axhline(TARGET, color="gray", ls="--", lw=1, label=f"target {TARGET} %")
    low = min(test_accs(r)[-1] for r in runs if r["model"] != "baseline")
    ticks = [1_000, 2_000, 3_000, 5_000, 8_000, 10_000, 20_000]
    ax.set(xscale="log", xlabel="parameters", ylabel="final test accuracy (%)", ylim=(low - 0.05, 99.7))
    ax.set_xticks(ticks, [f"{t // 1000}k" for t in ticks])
    ax.set_title("MNIST after 15 epochs: every seed of every published net")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, metadata={"Software": None})
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


# ---------------------------------------------------------------------------------------------
# The lab README
# ---------------------------------------------------------------------------------------------
def summary_table(summary: dict[str, dict]) -> str:
    rows = [
        f"| `{m}` | {s['params']:,} | {len(s['seeds'])} | {mean_std(s)} | {s['lowest_last3']:.2f} % | {held(s)} "
        f"| {minutes(s['alone_s'])} | {', '.join(s['devices'])} |"
        for m, s in summary.items()
    ]
    head = (
        f"| net | params | seeds | final test acc | lowest last-3 epoch | seeds holding {TARGET} % "
        "| 15 epochs alone on 2 threads | devices |\n|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows]) if rows else "_No runs._"


@functools.cache
def study(budget: int) -> tuple[Path, dict] | None:
    """The study that chose a budget's net: the latest round's whose stage 2 has a winner, else the first's."""
    for path in (f / f"budget-{budget}.json" for f in (STUDIES_III, STUDIES_II, STUDIES)):
        if path.exists():
            exported = read_json(path, ("trials", "best"))
            if exported.get("winner") or path.parent == STUDIES:
                return path, exported
    return None


def registered() -> dict[str, tuple[str, float, Style, LabRecipe]]:
    """Every net a study may have chosen, as (layers, dropout, style, recipe): the searched ones and the course's."""
    nets = {name: (n.layers, n.dropout, n.style, LAB_RECIPES[name]) for name, n in SEARCHED.items()}
    course = {
        name: (n.layers, n.dropout, n.style, recipe_from_dict(asdict(RECIPES[name])))
        for name, n in COURSE_LAYERS.items()
    }
    return nets | course


def holder(budget: int) -> str | None:
    """The registered net and recipe of the trial a budget's study chose (stage 2's winner, else its best)."""
    found = study(budget)
    if found is None:
        return None
    chosen = found[1].get("winner") or found[1]["best"]
    recipe = recipe_from_dict(chosen["recipe"])
    drawn = (chosen["layers"], chosen["suggested"]["dropout"], trial_style(chosen))
    for name, (layers, dropout, style, published) in registered().items():
        if (layers, dropout, style) == drawn and same_recipe(published, recipe):
            return name
    return None


def same_recipe(published: LabRecipe, chosen: LabRecipe) -> bool:
    """The same in every field but precision (decided apart, on validation) and the teacher's record: a
    published run's teacher is the study's teacher (same net, seed and recipe) trained on all 60,000 images."""
    if replace(published, precision=chosen.precision, teacher=chosen.teacher) != chosen:
        return False
    if not (published.teacher and chosen.teacher):
        return published.teacher == chosen.teacher
    return teacher_nets(published.teacher) == teacher_nets(chosen.teacher)


def teacher_nets(teacher: str) -> list[tuple]:
    """Each member of a teacher (records joined by commas) as the net, seed and recipe it was trained with."""
    members = [read_json(HERE / p, ("model", "seed", "config")) for p in teacher.split(",")]
    return [(m["model"], m["seed"], m["config"]["recipe"]) for m in members]


def goal_table(summary: dict[str, dict]) -> str:
    """The searched budgets: the net its study chose, and the verdict over its seeds."""
    rows = []
    for budget in FRONTIER:
        model = holder(budget)
        s = summary.get(model)
        need = GOALS.get(budget)
        goal = f"{need} of 5 seeds hold {TARGET} %" if need else f"every seed holds {TARGET} % (the course's)"
        cells = f"{held(s)} | {mean_std(s)}" if s else "— | —"
        rows.append(f"| < {budget:,} | `{model}` | {goal} | {cells} | {verdict(s, need)} |")
    head = "| budget | net | goal, 15 epochs | seeds holding | final test acc | verdict |\n|---|---|---|---|---|---|"
    return "\n".join([head, *rows])


def models_table() -> str:
    rows = []
    for name in registered():
        recipe = spec(name).recipe
        taught = (
            f"; {recipe.distill_weight:.0%} of the loss from `{recipe.teacher}`"
            if getattr(recipe, "teacher", "")
            else ""
        )
        net = SEARCHED.get(name) or COURSE_LAYERS[name]
        rows.append(f"| `{name}` | {count_parameters(net()):,} | < {net.budget:,} | {net.about}{taught} |")
    return "\n".join(["| name | parameters | budget | design |", "|---|---|---|---|", *rows])


def choice(exported: dict) -> str:
    """What a study chose: stage 2's winner with its mean, else its best trial on seed 0; none while it has
    no complete trial (a study just begun)."""
    chosen = exported.get("winner") or exported["best"]
    if chosen is None:
        return "none yet"
    entry = (exported.get("confirmation") or {}).get(str(chosen["number"]))
    score = f"{entry['mean']:.3f} % over {len(entry['scores'])} seeds" if entry else f"{chosen['score']:.2f} % (seed 0)"
    return f"{chosen['number']}, {score}, `{chosen['layers']}`"


def studies_table() -> str:
    """Each study: its trials, its stage 2's per-seed scores where it has one."""
    rows = ["| study | trained (complete / pruned) | rejected over budget | failed | chose: trial, mean score, net |",
            "|---|---|---|---|---|"]  # fmt: skip
    folders = (STUDIES, STUDIES_II, COURSE_STUDIES, FIRST_TEACHER_III, STUDIES_III)
    for path in (path for folder in folders for path in sorted(folder.glob("budget-*.json"))):
        exported = read_json(path, ("trials", "best"))
        states = [t["state"] for t in exported["trials"]]
        rows.append(
            f"| [`{path.relative_to(RESULTS).as_posix()}`](../{path.relative_to(HERE).as_posix()}) "
            f"| {states.count('complete') + states.count('pruned')} ({states.count('complete')} / "
            f"{states.count('pruned')}) | {states.count('rejected')} | {states.count('fail')} | {choice(exported)} |"
        )
    return "\n".join(rows)


def stage2_table(folder: Path) -> str:
    """Stage 2 of a round's studies: each finalist's score per seed, its worst and its mean (the paired
    comparisons have a table of their own)."""
    rows = ["| study | trial | params | net | score per seed | worst | mean |", "|---|---|---|---|---|---|---|"]
    for path in sorted(folder.glob("budget-*.json")):
        exported = read_json(path, ("trials",))
        by_number = {t["number"]: t for t in exported["trials"]}
        winner = (exported.get("winner") or {}).get("number")
        for number, entry in (exported.get("confirmation") or {}).items():
            t = by_number[int(number)]
            if "variant_of" in t:
                continue
            mark = " **winner**" if int(number) == winner else " (public)" if t.get("net") in SOURCES else ""
            scores = entry["scores"].values()
            rows.append(
                f"| `{path.stem}` | {number}{mark} | {t['params']:,} | `{t['layers']}` "
                f"| {', '.join(f'{v:.2f}' for v in scores)} | {min(scores):.2f} % | {entry['mean']:.3f} % |"
            )
    return "\n".join(rows)


def pairs_table(folder: Path) -> str:
    """Each paired comparison of a round's studies (`lab.sweep --best-with` on stage 2's winner): per seed the
    variant's score minus the winner's, on the seeds both have, their mean, and on how many seeds it did better."""
    rows = ["| study | variant | params | change per seed (points) | mean change | seeds better / worse / tied |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for path in sorted(folder.glob("budget-*.json")):
        exported = read_json(path, ("trials",))
        confirmed = exported.get("confirmation") or {}
        for t in exported["trials"]:
            base, mine = confirmed.get(str(t.get("variant_of"))), confirmed.get(str(t["number"]))
            if "variant_of" not in t or not base or not mine:
                continue
            seeds = [seed for seed in mine["scores"] if seed in base["scores"]]
            change = [mine["scores"][seed] - base["scores"][seed] for seed in seeds]
            counts = (sum(c > 1e-9 for c in change), sum(c < -1e-9 for c in change))
            rows.append(
                f"| `{path.stem}` | {t['asked_for']} | {t['params']:,} | {', '.join(f'{c:+.2f}' for c in change)} "
                f"| {statistics.mean(change):+.3f} | {counts[0]} / {counts[1]} / {len(change) - sum(counts)} |"
            )
    return "\n".join(rows) if len(rows) > 2 else "No paired comparison has run yet."


# The third round's levers as a study draws them (`frontier_space.py`): its name there, and what the table calls it.
LEVERS = {
    "kind": "convolutions after the first stage",
    "head": "head",
    "act": "activation",
    "norm": "norm",
    "act_first": "activation before the norm",
    "residual": "residual groups",
    "optimizer": "optimizer",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "brightness": "brightness jitter",
    "contrast": "contrast jitter",
    "distill_weight": "share of the loss from the teacher",
}


def levers_table(folder: Path) -> str:
    """Per study and lever: each value drawn by the drawn trials that ran all 15 epochs, as `value` n × best
    score among them. What each study picked, beside the stage 2 table that says which design won."""
    studies = {int(p.stem.removeprefix("budget-")): p for p in folder.glob("budget-*.json")}
    budgets = sorted(studies, reverse=True)
    drawn = [
        [t for t in read_json(studies[b], ("trials",))["trials"] if t["state"] == "complete" and searched(t)]
        for b in budgets
    ]
    rows = ["| lever | " + " | ".join(f"< {b:,}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for lever, name in LEVERS.items():
        cells = []
        for trials in drawn:
            by_value: dict[str, list[float]] = {}
            for t in trials:
                if lever in t["suggested"]:
                    by_value.setdefault(str(t["suggested"][lever]), []).append(t["score"])
            cells.append(", ".join(f"`{v}` {len(got)} × {max(got):.2f}" for v, got in sorted(by_value.items())) or "—")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def member_nets(records: Iterable[str]) -> list[str]:
    """The net of each teacher member's run record."""
    return [read_json(HERE / record, ("model",))["model"] for record in records]


def teachers_table() -> str:
    """Each scored teacher (`lab.teacher`): its members' validation accuracy and the whole's, and what one
    forward pass costs, since a distilling trial pays it on every batch."""
    rows = ["| teacher (its record) | members, each on validation | together on validation | multiply-adds per image |",
            "|---|---|---|---|"]  # fmt: skip
    for path in sorted(TEACHERS.glob("teacher-*.json"), key=lambda p: (p.stem.count("-and-"), p.stem)):
        scored = read_json(path, ("members", "val_acc"))
        models = member_nets(m["record"] for m in scored["members"])
        each = ", ".join(f"`{name}` {m['val_acc']:.2f} %" for name, m in zip(models, scored["members"], strict=True))
        cost = sum(multiply_adds(spec(name).build()) for name in models)
        where = Path(os.path.relpath(path, HERE / "lab")).as_posix()  # a link from lab/README.md
        link = f"[{len(models)} net{'s' if len(models) > 1 else ''}]({where})"
        rows.append(f"| {link} | {each} | {scored['val_acc']:.2f} % | {cost:,} |")
    return "\n".join(rows)


def teacher_checks_table() -> str:
    """The same student and seeds learning from each teacher: its last 3 validation epochs and their lowest."""
    rows = ["| student | seed | teacher | last 3 epochs on validation | score |", "|---|---|---|---|---|"]
    runs = [read_json(path, RUN_KEYS) for path in TEACHER_CHECKS.glob("*/*.json")]
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"], r["config"]["recipe"]["teacher"])):
        recipe = run["config"]["recipe"]
        teacher = " + ".join(f"`{net}`" for net in member_nets(recipe["teacher"].split(",")))
        last3 = [e["val_acc"] for e in run["epochs"][-3:]]
        rows.append(
            f"| `{run['model']}` | {run['seed']} | {teacher} ({recipe['distill_weight']:.0%} of the loss) "
            f"| {', '.join(f'{a:.2f}' for a in last3)} | {min(last3):.2f} % |"
        )
    return "\n".join(rows)


def bench_table(pattern: str, key: str, cells: Callable[[dict, dict], list[str]], head: list[str]) -> str:
    """One row per measured model of the bench files matching `pattern` (results/bench-*.json)."""
    rows = []
    for path in sorted(RESULTS.glob(pattern)):
        b = read_json(path, ("device",))
        for model, r in b.get(key, {}).items() if key else [(b.get("model"), b)]:
            rows.append("| " + " | ".join([b["device"], f"`{model}`", *cells(b, r)]) + " |")
    return "\n".join(["| " + " | ".join(["device", "model", *head]) + " |", "|---" * (len(head) + 2) + "|", *rows])


def speed_tables() -> str:
    step = bench_table(
        "bench-*.json",
        "compare",
        lambda b, r: [
            f"{r['median_ms_per_batch']['fp32']:.1f}",
            f"{r['median_ms_per_batch']['auto']:.1f} ({r['default_precision']})",
            f"{r['speedup']:.2f}×",
            f"median of {b['repeats']} × {b['timed_batches']} batches",
        ],
        ["fp32, ms/batch", "default path, ms/batch", "speed-up", "evidence"],
    )
    loaders = bench_table(
        "bench-loaders-*.json",
        "",
        lambda b, r: [
            f"{r['median_images_per_s']['fast']:,.0f}",
            f"{r['median_images_per_s']['classic']:,.0f}",
            f"{r['fast_over_classic']:.2f}×",
        ],
        ["on-device loader, images/s", "DataLoader, images/s", "ratio"],
    )
    jobs = bench_table(
        "bench-jobs-*.json",
        "",
        lambda b, r: [
            f"{r['wall_s']['sequential']:.0f} s",
            f"{r['wall_s']['jobs']:.0f} s",
            f"{r['jobs_over_sequential']:.2f}×",
        ],
        ["5 seeds one after another", "with --jobs 2", "ratio"],
    )
    versus = bench_table(
        "bench-versus-*.json",
        "models",
        lambda b, r: [
            str(r["batch_size"]),
            f"{r['median_ms_per_image']:.3f}",
            f"{r['faster_than_reference']:.2f}× ({b['reference']} = 1)",
            f"{r['multiply_adds']:,} ({r['multiply_adds_ratio']:.2f}× fewer)",
            f"median of {b['repeats']} × {b['timed_batches']} batches, taking turns",
        ],
        ["batch", "ms per image", "trains as fast as", "multiply-adds per image", "evidence"],
    )
    return "\n\n".join([versus, step, loaders, jobs])


def precision_trials() -> dict[str, dict[str, list[float]]]:
    """net -> precision -> validation scores (lowest of the last 3 epochs) of the bf16-against-fp32 runs."""
    trials: dict[str, dict[str, list[float]]] = {}
    for path in sorted(PRECISION.glob("*/*-val*.json")):
        run = read_json(path, RUN_KEYS)
        score = min(e["val_acc"] for e in run["epochs"][-3:])
        trials.setdefault(run["model"], {}).setdefault(run["config"]["precision"], []).append(score)
    return trials


def within_noise(scores: dict[str, list[float]]) -> bool:
    """bf16 keeps accuracy: its mean score is no lower than fp32's by more than the larger seed-to-seed spread."""
    bf16, fp32 = scores.get("bf16", []), scores.get("fp32", [])
    if min(len(bf16), len(fp32)) < 3:
        return False
    return statistics.mean(bf16) >= statistics.mean(fp32) - max(statistics.stdev(bf16), statistics.stdev(fp32))


def precision_table() -> str:
    """The validation evidence behind training in bf16: the same recipe and seeds in both precisions."""
    rows = ["| net | scores per seed, fp32 | bf16 | bf16 as good, within the seeds' spread |", "|---|---|---|---|"]
    for model, scores in precision_trials().items():
        cells = [", ".join(f"{v:.2f}" for v in scores.get(p, [])) for p in ("fp32", "bf16")]
        rows.append(f"| `{model}` | {' | '.join(cells)} | {'yes' if within_noise(scores) else '**no**'} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# Filling in the READMEs
# ---------------------------------------------------------------------------------------------
def replace_block(text: str, name: str, body: str) -> str:
    """Swap what stands between <!-- name:begin --> and <!-- name:end --> for body."""
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise UserError(f"a README has no '<!-- {name}:begin -->' ... '<!-- {name}:end -->' block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def fill_numbers(text: str, values: dict[str, str]) -> str:
    """Put each named number into its `<!-- v:NAME -->…<!-- /v -->` place; an unknown name is an error."""

    def value(match: re.Match) -> str:
        if match.group(1) not in values:
            raise UserError(f"no number named '{match.group(1)}' in the results (<!-- v:{match.group(1)} -->)")
        return f"<!-- v:{match.group(1)} -->{values[match.group(1)]}<!-- /v -->"

    return re.sub(r"<!-- v:(\w+) -->.*?<!-- /v -->", value, text)


def render_course(
    readme: str, cpu: dict[str, dict], gpu: dict[str, dict], earlier: dict[str, dict], values: dict[str, str]
) -> str:
    readme = replace_block(readme, "course", course_table(cpu, gpu, earlier))
    notebook_net = spec(COURSE[20_000][0]).build()
    readme = replace_block(readme, "summary", model_summary(notebook_net))
    readme = replace_block(readme, "rf", format_rf_table(receptive_field_table(notebook_net), markdown=True))
    return fill_numbers(readme, values)


def render_lab(
    readme: str,
    summary: dict[str, dict],
    gpu: dict[str, dict],
    earlier: dict[str, dict],
    superseded: list[dict],
    values: dict[str, str],
) -> str:
    blocks = {
        "goals": goal_table(summary),
        "results": summary_table(summary),
        "superseded": summary_table(summarize(superseded))
        + "\n\nThe same designs on an earlier CPU:\n\n"
        + summary_table(earlier),
        "models": models_table(),
        "studies": studies_table(),
        "stage2": stage2_table(STUDIES_II),
        "course_stage2": stage2_table(COURSE_STUDIES),
        "stage2_iii": stage2_table(STUDIES_III),
        "levers_iii": levers_table(STUDIES_III),
        "pairs_iii": pairs_table(STUDIES_III),
        "teachers": teachers_table(),
        "teacher_checks": teacher_checks_table(),
        "speed": speed_tables(),
        "precision": precision_table(),
        "gpu": summary_table(gpu),
        "rf_small": format_rf_table(receptive_field_table(spec(holder(3_000) or "s8_3k").build()), markdown=True),
    }
    for name, body in blocks.items():
        readme = replace_block(readme, name, body)
    return fill_numbers(readme, values)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the READMEs and summary are current")
    args = parser.parse_args(argv)
    course_path, lab_path, summary_path = HERE / "README.md", HERE / "lab" / "README.md", RESULTS / "summary.json"
    try:
        runs, gpu_runs, superseded = load_runs(), load_runs(GPU), load_superseded()
        cpu, gpu, earlier = summarize(runs), summarize(gpu_runs), summarize(load_runs(EARLIER_CPU))
        values = numbers(cpu, gpu)  # the named numbers of both READMEs' sentences
        new = {
            course_path: render_course(course_path.read_text(), cpu, gpu, earlier, values),
            lab_path: render_lab(lab_path.read_text(), cpu, gpu, earlier, superseded, values),
            summary_path: json.dumps({"cpu": cpu, "gpu": gpu}, indent=1) + "\n",
        }
    except (UserError, OSError) as err:
        print(f"error: {first_line(err) if isinstance(err, OSError) else err}", file=sys.stderr)
        return 2
    if args.check:
        stale = [p.relative_to(HERE).as_posix() for p, text in new.items() if read(p) != text]
        if stale:
            print(f"out of date with results/: {', '.join(stale)}; run python -m lab.report", file=sys.stderr)
        return 1 if stale else 0
    for path, text in new.items():
        atomic_write(path, lambda f, t=text: f.write(t.encode()))
    plot_params_accuracy(runs + gpu_runs, HERE / "images" / "params-accuracy.png")
    print(
        f"README.md, lab/README.md, results/summary.json and images/params-accuracy.png updated from {len(runs)} runs"
    )
    return 0


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


if __name__ == "__main__":
    sys.exit(main())
