"""Regenerate the README's numbers, tables and plots from the files in results/ (never type a number by hand).

python report.py          # rewrite the generated blocks of README.md and images/test-accuracy.png
python report.py --check  # exit 1 if README.md is out of date with results/
"""

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from model import MODELS, count_parameters, get_model
from utils import RECIPES, format_rf_table, receptive_field_table

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


GOALS = {"s6": Goal(5, mean_final=99.5), "s7_10k": Goal(5), "s7_8k": Goal(5), "s7_5k": Goal(4)}


def load_runs(folder: Path = HERE / "results") -> list[dict]:
    """Published runs, sorted by model (story order) and seed."""
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if PUBLISHED.match(p.name)]
    runs = [r for r in runs if r.get("eval_split") == "test" and len(r["epochs"]) == r["config"]["epochs"]]
    rank = {m: i for i, m in enumerate(MODELS)}
    return sorted(runs, key=lambda r: (rank.get(r["model"], len(rank)), r["model"], r["seed"]))


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
        if model in GOALS:
            summary[model]["goal"] = GOALS[model].describe()
            summary[model]["goal_verdict"] = goal_verdict(GOALS[model], summary[model])
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
        "of the last 3 epochs | first epoch ≥ 99.4 % (per seed) | mean train time | goal |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for model, s in summary.items():
        budget = f" (< {s['budget']:,})" if s["budget"] else ""
        n = len(s["seeds"])
        spread = f" ± {s['final_acc_std']:.2f}" if n > 1 else ""
        firsts = ", ".join(str(f) if f else "never" for f in s["first_epoch_at_target"])
        verdict = s.get("goal_verdict")
        goal = f"{s['goal']}: {'**missed**' if verdict == 'missed' else verdict}" if verdict else "—"
        rows.append(
            f"| `{model}` | {s['params']:,}{budget} | {n} | {s['final_acc_mean']:.2f}{spread} % "
            f"| {s['final_acc_min']:.2f} – {s['final_acc_max']:.2f} % | {s['seeds_at_target_last3']} of {n} "
            f"| {firsts} | {s['train_time_s_mean'] / 60:.1f} min | {goal} |"
        )
    return "\n".join([head, *rows]) if rows else "_No published runs yet._"


def replace_block(text: str, name: str, body: str) -> str:
    """Swap what stands between <!-- name:begin --> and <!-- name:end --> for body."""
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"error: README.md has no '<!-- {name}:begin -->' ... '<!-- {name}:end -->' block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def models_table() -> str:
    rows = [
        f"| `{name}` | {count_parameters(get_model(name)):,} | {f'< {spec.budget:,}' if spec.budget else '—'} "
        f"| {spec.about} |"
        for name, spec in MODELS.items()
    ]
    return "\n".join(["| name | parameters | budget | design |", "|---|---|---|---|", *rows])


STORY = {  # per step: what it set out to do, and what its result taught (numbers are filled in from results/)
    "baseline": (
        "Get the pipeline right with a big, plain CNN: convs 32-64-128-256, two max-pools, FC 4096 → 50 → 10.",
        "{params} parameters, {fc:.0%} of them in the first fully connected layer, no BatchNorm, no augmentation "
        "and no global pooling. The budgeted nets keep the 3x3 stacks and max-pool, and replace the FC head by a "
        "1x1 convolution to 10 maps plus global average pooling.",
    ),
    "s6": (
        "< 20,000 parameters, ≥ 99.4 % in each of the last 3 of 15 epochs. BatchNorm after every convolution, a "
        "max-pool followed by a 1x1 convolution that halves the channels, Dropout 0.05 on the small maps, a GAP "
        "head, ±7° / ±1 px augmentation, SGD (lr {lr}, momentum {momentum}) with StepLR (÷{div:.0f} every "
        "{step_size} epochs).",
        "Train accuracy ends {gap_word} test accuracy ({train:.2f} % vs {test:.2f} %): augmentation and Dropout "
        "keep the net from overfitting. Most of its {params} parameters sit in the 16→32 and 32→16 convolutions, "
        "so the next step narrows the channels with the same shape and recipe.",
    ),
    "s7_10k": (
        "< 10,000 parameters with the same shape and recipe: widths 10-20 / 10 / 16-16-20.",
        "With about half the parameters of s6, the final accuracy moves by {delta:+.2f} points against s6. "
        "Train accuracy ends {gap_word} test accuracy ({train:.2f} % vs {test:.2f} %).",
    ),
    "s7_8k": (
        "< 8,000 parameters: widths 8-16 / 8 / 16-16-16, Dropout 0.03 (less regularization for less capacity).",
        "Against s6 the final accuracy moves by {delta:+.2f} points with {ratio:.0%} of its parameters; train "
        "accuracy ends {gap_word} test accuracy ({train:.2f} % vs {test:.2f} %).",
    ),
    "s7_5k": (
        "< 5,000 parameters: widths 8-12 / 8 / 12-12-14, Dropout 0.02. The schedule was chosen on the validation "
        "split (`--val 5000`), before any test run: {val_runs}.",
        "On the validation split OneCycle (warm-up to lr 0.1, then annealing) reached a higher plateau than "
        "StepLR within 15 epochs, so it became the recipe. On the test set the final accuracy moves by "
        "{delta:+.2f} points against s6 with {ratio:.0%} of its parameters; train accuracy ends {gap_word} test "
        "accuracy ({train:.2f} % vs {test:.2f} %). The summary table above shows how many seeds hold the target.",
    ),
}


def validation_runs(model: str, folder: Path = HERE / "results" / "validation") -> str:
    """The validation runs behind a model's recipe: schedule, lr and final validation accuracy."""
    parts = []
    for path in sorted(folder.glob(f"*/{model}-*.json")):
        run = json.loads(path.read_text())
        recipe, accs = run["config"]["recipe"], [e["val_acc"] for e in run["epochs"]]
        last3 = min(accs[-3:])
        parts.append(
            f"{recipe['schedule']} (lr {recipe['lr']}) reached {accs[-1]:.2f} % on validation, last 3 ≥ {last3:.2f} %"
        )
    return "; ".join(parts) or "no validation runs"


def story(runs: list[dict]) -> str:
    """The Target / Result / Analysis table, baseline -> s6 -> s7_10k -> s7_8k, from the seed-0 runs."""
    first = {r["model"]: r for r in reversed(runs)}  # lowest seed of each model
    rows = ["| step | target | result | analysis |", "|---|---|---|---|"]
    for name, (target, analysis) in STORY.items():
        model = get_model(name)
        params = count_parameters(model)
        run = first.get(name)
        facts = {"params": f"{params:,}", "ratio": params / count_parameters(get_model("s6"))}
        if run is None:
            result = f"{params:,} parameters; **not run here** (no `results/{name}-seed*.json`)"
        else:
            accs = test_accs(run)
            first_hit = first_epoch_at_target(run)
            reached = f"first ≥ {TARGET} % at epoch {first_hit}" if first_hit else f"never ≥ {TARGET} %"
            result = (
                f"{params:,} parameters; seed {run['seed']}: {accs[-1]:.2f} % after {len(accs)} epochs, last 3 ≥ "
                f"{min(accs[-3:]):.2f} %, {reached}: "
                f"target {'met' if target_met(run) else '**missed**'}"
            )
            train, test = run["epochs"][-1]["train_acc"], accs[-1]
            facts.update(train=train, test=test, gap_word="below" if train < test else "above")
            if "s6" in first:
                facts["delta"] = test - test_accs(first["s6"])[-1]
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        facts["fc"] = sum(p.numel() for p in linears[0].parameters()) / params if linears else 0.0
        recipe = RECIPES[name]
        target = target.format(
            lr=recipe.lr,
            momentum=recipe.momentum,
            div=1 / recipe.gamma,
            step_size=recipe.step_size,
            val_runs=validation_runs(name),
        )
        try:
            analysis = analysis.format(**facts)
        except KeyError:  # needs a run (or the s6 run) that is not there yet
            analysis = "—"
        rows.append(f"| `{name}` | {target} | {result} | {analysis} |")
    return "\n".join(rows)


def speed(folder: Path = HERE / "results") -> str:
    """Loader benchmark (bench.py) and the wall time of the full s7_8k run, against their targets."""
    lines = []
    for path in sorted(folder.glob("bench-*.json")):
        b = json.loads(path.read_text())
        m = b["median_images_per_s"]
        target = " (target ≥ 1.3×: " + ("met" if b["fast_over_classic"] >= 1.3 else "**missed**") + ")"
        lines.append(
            f"| {b['device']} | `{b['model']}` | {b['batch_size']} | {m['fast']:,.0f} | {m['classic']:,.0f} "
            f"| {b['fast_over_classic']:.2f}×{target if path.stem == 'bench-cpu' else ''} "
            f"| median of {b['repeats']} × {b['timed_batches']} batches |"
        )
    table = "_No benchmark yet: run `python bench.py`._"
    if lines:
        head = "| device | model | batch | fast images/s | classic images/s | fast / classic | evidence |"
        table = "\n".join([head, "|---|---|---|---|---|---|---|", *lines])
    runs = [r for r in load_runs(folder) if r["model"] == "s7_8k"]
    if runs:
        total = {r["seed"]: r["train_time_s"] + r.get("setup_time_s", 0) for r in runs}
        fastest = min(runs, key=lambda r: total[r["seed"]])
        verdict = "met" if total[fastest["seed"]] <= 300 else "**missed**"
        table += (
            f"\n\nA full 15-epoch `s7_8k` run through `train.py` (data loading and all 15 epochs; not the few "
            f"seconds Python takes to import torch): "
            f"{total[fastest['seed']] / 60:.1f} min on {fastest['device']} (`{fastest['command']}`; target ≤ 5 min: "
            f"{verdict}). That is the fastest of the {len(runs)} `s7_8k` runs; their median is "
            f"{statistics.median(total.values()) / 60:.1f} min, as some ran while the machine did other work."
        )
    return table


def epoch_metrics(run: dict) -> list[dict]:
    """Per-epoch numbers without wall time: what must match between two runs of the same recipe and seed."""
    return [{k: v for k, v in e.items() if k != "time_s"} for e in run["epochs"]]


def notebook_run(folder: Path = HERE / "results") -> str:
    """What the committed notebook run reached, and whether train.py gives the same numbers."""
    lines = []
    for path in sorted(folder.glob("notebook-*.json")):
        nb = json.loads(path.read_text())
        accs = test_accs(nb)
        line = (
            f"The committed notebook run (`{nb['model']}`, seed {nb['seed']}, {len(accs)} epochs on {nb['device']}): "
            f"final test accuracy {accs[-1]:.2f} %, last 3 epochs ≥ {min(accs[-3:]):.2f} %"
        )
        cli = folder / f"{nb['model']}-seed{nb['seed']}.json"
        if cli.exists():
            same = epoch_metrics(nb) == epoch_metrics(json.loads(cli.read_text()))
            line += f"; per-epoch metrics {'identical to' if same else '**different from**'} `{cli.name}` (train.py)"
        lines.append(line + ".")
    return "\n\n".join(lines) or "_The notebook has not been run in full yet._"


def plot_accuracy(
    runs: list[dict], summary: dict[str, dict], path: Path = HERE / "images" / "test-accuracy.png"
) -> None:
    """Test accuracy per epoch of each model: mean over its seeds, with the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
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
        ylim=(98.0, 99.8),
        title="MNIST test accuracy per epoch (band: min to max over seeds)",
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)


def render(readme: str, runs: list[dict], summary: dict[str, dict]) -> str:
    note = (
        f"_Generated by `python report.py` from the {len(runs)} run files in `results/` (every seed that was run; "
        f"summary in `results/summary.json`). Target: ≥ {TARGET} % test accuracy in each of the last 3 epochs._\n\n"
    )
    readme = replace_block(readme, "models", models_table())
    readme = replace_block(readme, "rf", format_rf_table(receptive_field_table(get_model("s6")), markdown=True))
    readme = replace_block(readme, "story", story(runs))
    readme = replace_block(readme, "speed", speed())
    readme = replace_block(readme, "notebook", notebook_run())
    per_run = "\n\n<details><summary>Every run</summary>\n\n" + results_table(runs) + "\n\n</details>"
    return replace_block(readme, "results", note + summary_table(summary) + per_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that README.md and summary.json are current")
    args = parser.parse_args(argv)
    runs = load_runs()
    readme_path, summary_path = HERE / "README.md", HERE / "results" / "summary.json"
    old = readme_path.read_text()
    summary = summarize(runs)
    new, summary_json = render(old, runs, summary), json.dumps(summary, indent=1) + "\n"
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
