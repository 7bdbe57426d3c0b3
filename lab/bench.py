"""Training speed, measured side by side in one process.

    python -m lab.bench                              # s6, fast vs classic loader -> runs/bench-loaders-<device>.json
    python -m lab.bench --compare --models s7_4k s6  # default path vs fp32 reference -> runs/bench-<device>.json
    python -m lab.bench --compare --levers           # ... and each speed lever on its own, on a random batch
    python -m lab.bench --jobs-compare --model s7_4k --epochs 2  # 5 seeds: --jobs 2 against one after another
    python -m lab.bench --versus s6 --models s7_10k s8_8k  # each net's epoch time against s6's, side by side
    python -m lab.bench --compare --out results      # publish: the README's tables read results/bench-*.json

Every timing trains the net through `train.prepare` and `utils.train`, as a real run does, for a
fixed number of batches after a warm-up taken from one running epoch. The variants alternate for
several repeats and the median of each is reported, so a noisy machine slows them all alike.

`--jobs-compare` is the exception: it times whole `train.py --seeds` commands in subprocesses,
the seeds one after another on 2 threads against `--jobs 2` (two 1-thread processes side by side).

`--versus REF` times each of `--models` and REF on their own recipes (batch size, precision) in turn,
and reports each one's training time per image, so per epoch, as a ratio to REF's: how much faster
it trains. Beside it stands the estimate a design can be judged by before it trains: multiply-adds
per image of the forward pass (`multiply_adds`), and their ratio to REF's.

`--compare` times, per model, the default path (the recipe's precision where the device runs it
fast: bf16 autocast and channels-last on a CPU with bf16 instructions) against the fp32 eager
path every run took before, which stays as `--precision fp32`. `--levers` adds the training step
alone on a random batch in each combination of precision, memory layout and `torch.compile`.
"""

import itertools
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from lab.nets import Net, multiply_adds, trial_style
from lab.recipes import recipe_from_dict
from model import MODELS
from train import (
    HERE,
    OneLineParser,
    Spec,
    positive_int,
    prepare,
    provenance,
    resolve_precision,
    searched,
    spec,
    train_steps,
    writable_dir,
    write_json,
)
from utils import DATA_DIR, LOADERS, DataConfig, UserError, device_description, first_line, pick_device

SEEDS = 5  # seeds of the --jobs comparison


@dataclass(frozen=True)
class Lever:
    """One way to run the bare training step."""

    bf16: bool = False  # autocast to bfloat16
    channels_last: bool = False
    compile: str | None = None  # torch.compile's mode; "reduce-overhead" replays CUDA graphs
    fused: bool = False  # SGD's fused CUDA kernel instead of its foreach one


LEVERS = {
    "fp32": Lever(),
    "fp32 channels-last": Lever(channels_last=True),
    "bf16": Lever(bf16=True),
    "bf16 channels-last": Lever(bf16=True, channels_last=True),
    "bf16 channels-last compiled": Lever(bf16=True, channels_last=True, compile="default"),
}
CUDA_LEVERS = {  # the CPU's, plus what only CUDA has
    **LEVERS,
    "fp32 fused SGD": Lever(fused=True),
    "fp32 CUDA graphs": Lever(compile="reduce-overhead"),
    "bf16 channels-last CUDA graphs": Lever(bf16=True, channels_last=True, compile="reduce-overhead"),
}


def levers_for(device: torch.device) -> dict[str, Lever]:
    return CUDA_LEVERS if device.type == "cuda" else LEVERS


class Batches:
    """The next n batches of a running epoch iterator, as something `train()` can consume."""

    def __init__(self, batches: Iterator, n: int) -> None:
        self.batches, self.n = batches, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator:
        return itertools.islice(self.batches, self.n)


def path_timer(net: Spec, data: DataConfig, device: torch.device, precision: str, warmup: int) -> Callable:
    """A function that trains `n` more batches of one prepared run of `net` and returns seconds per batch."""
    run = prepare(net.build, net.recipe, data, 1, device, precision)
    batches = iter_forever(run.train_loader)

    def step(n: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_steps(run, Batches(batches, n), progress=False, schedule=False)
        return (time.perf_counter() - start) / n  # train() ends by reading its sums: a device sync

    step(warmup)
    return step


def iter_forever(loader) -> Iterator:
    """Batches of epoch after epoch, so a timing never runs off the end of one."""
    while True:
        yield from loader


def lever_timer(model: str, batch_size: int, device: torch.device, lever: Lever, warmup: int) -> Callable:
    """The bare training step of `model` on one random batch, with one combination of the levers."""
    layout = torch.channels_last if lever.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    net = spec(model).build().to(device, memory_format=layout)
    forward = torch.compile(net, mode=lever.compile) if lever.compile else net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, fused=lever.fused or None)
    x = torch.randn(batch_size, 1, 28, 28, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=lever.bf16):
                loss = F.cross_entropy(forward(x), y)
            loss.backward()
            optimizer.step()
        loss.item()
        return (time.perf_counter() - start) / n

    step(warmup)
    return step


def profile(timer: Callable, batches: int, top: int = 12) -> dict:
    """Where the default path's time goes: the operators with the most self time over `batches` batches.

    On a GPU it also gives each operator's kernel time and the share of the wall time the GPU was
    busy at all: far below 1 means the GPU waits for Python and kernel launches.
    """
    from torch.profiler import profile as torch_profile

    with torch_profile() as prof:
        per_batch = timer(batches)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    device_us = [getattr(e, "self_device_time_total", 0) for e in events]
    rows = [
        {
            "op": e.key,
            "ms_per_batch": e.self_cpu_time_total / 1000 / batches,
            "share": e.self_cpu_time_total / total,
            "device_ms_per_batch": us / 1000 / batches,
        }
        for e, us in list(zip(events, device_us, strict=True))[:top]
    ]
    busy = sum(device_us) / 1e6 / (per_batch * batches)
    return {"ops": rows, "wall_ms_per_batch": 1000 * per_batch, "device_busy_share": busy}


def alternate(timers: dict[str, Callable], batches: int, repeats: int, label: str) -> dict[str, list[float]]:
    """Seconds per batch of each timer, taking turns `repeats` times."""
    times: dict[str, list[float]] = {name: [] for name in timers}
    for repeat, (name, timer) in itertools.product(range(repeats), timers.items()):
        times[name].append(timer(batches))
        print(f"{label} repeat {repeat + 1}/{repeats}  {name:28s} {1000 * times[name][-1]:8.2f} ms/batch", flush=True)
    return times


def compare(args, device: torch.device) -> dict:
    """Per model: the default path against the fp32 reference (and, with --levers, the bare levers)."""
    results = {}
    for model in args.models:
        net = spec(model)
        recipe = net.recipe
        data = DataConfig(args.data_dir, recipe.batch_size, augment=recipe.augment)
        paths = {p: path_timer(net, data, device, p, args.warmup) for p in ("fp32", "auto")}
        times = alternate(paths, args.batches, args.repeats, model)
        median = {p: statistics.median(t) for p, t in times.items()}
        entry = {
            "batch_size": recipe.batch_size,
            "default_precision": resolve_precision(recipe, device),
            "ms_per_batch": {p: [1000 * s for s in t] for p, t in times.items()},
            "median_ms_per_batch": {p: 1000 * m for p, m in median.items()},
            "speedup": median["fp32"] / median["auto"],
        }
        if args.profile:
            entry["profile_default_path"] = profile(paths["auto"], args.batches)
        if args.levers:
            timers = {
                name: lever_timer(model, recipe.batch_size, device, lever, args.warmup)
                for name, lever in levers_for(device).items()
            }
            lever_times = alternate(timers, args.batches, args.repeats, f"{model} step")
            entry["levers_median_ms_per_batch"] = {k: 1000 * statistics.median(v) for k, v in lever_times.items()}
        results[model] = entry
    return results


def design(name: str) -> Spec:
    """A registered net by its name, or a trial of a study export named `PATH.json:NUMBER`, with its recipe:
    so that a finalist's speed can be checked before it has a name."""
    path, sep, number = name.rpartition(":")
    if not (sep and path.endswith(".json")):
        return spec(name)
    try:
        study = json.loads(Path(path).read_text())
        trial = next(t for t in study["trials"] if str(t["number"]) == number)
        recipe = recipe_from_dict(trial["recipe"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as err:
        raise UserError(f"{name} is not a trial of a study export: {first_line(err) or 'no such trial'}") from None
    if "net" in trial:
        return replace(spec(trial["net"]), recipe=recipe)
    try:
        style = trial_style(trial)
        build = partial(Net, trial["layers"], trial["suggested"]["dropout"], style=style)
        build()  # a trial that drew a lever pruned since fails here, not in the middle of a timing
    except ValueError as err:
        raise UserError(
            f"{name} does not build in the family today: {first_line(err)} (lab/frontier_space.py PRUNED_AT does)"
        ) from None
    return Spec(build, study["budget"], recipe)


def versus(args, device: torch.device) -> dict:
    """Each model's training time per image against the reference's, on their own recipes, taking turns."""
    nets = {name: design(name) for name in dict.fromkeys([args.versus, *args.models])}  # each study read once
    batch = {name: net.recipe.batch_size for name, net in nets.items()}
    timers = {
        name: path_timer(net, DataConfig(args.data_dir, batch[name], augment=net.recipe.augment), device, "auto",
                         args.warmup)
        for name, net in nets.items()
    }  # fmt: skip
    times = alternate(timers, args.batches, args.repeats, "versus")
    per_image = {name: statistics.median(t) / batch[name] for name, t in times.items()}
    macs = {name: multiply_adds(net.build()) for name, net in nets.items()}
    return {
        "reference": args.versus,
        "models": {
            name: {
                "batch_size": batch[name],
                "median_ms_per_image": 1000 * per_image[name],
                "faster_than_reference": per_image[args.versus] / per_image[name],
                "multiply_adds": macs[name],
                "multiply_adds_ratio": macs[args.versus] / macs[name],
            }
            for name in nets
        },
    }


def loaders(args, device: torch.device) -> dict:
    """Images/s of the fast (on-device) and the classic (torchvision DataLoader) loader, same model and path."""
    net = spec(args.model)
    recipe = net.recipe
    batch_size = args.batch_size or recipe.batch_size
    data = DataConfig(args.data_dir, batch_size, augment=recipe.augment)
    timers = {kind: path_timer(net, replace(data, loader=kind), device, "auto", args.warmup) for kind in LOADERS}
    times = alternate(timers, args.batches, args.repeats, args.model)
    rates = {kind: [batch_size / s for s in t] for kind, t in times.items()}
    median = {kind: statistics.median(r) for kind, r in rates.items()}
    return {
        "model": args.model,
        "batch_size": batch_size,
        "images_per_s": rates,
        "median_images_per_s": median,
        "fast_over_classic": median["fast"] / median["classic"],
    }


def jobs_compare(args, out: Path) -> dict:
    """Wall time of `train.py --seeds ...` one after another on 2 threads, and with --jobs 2."""
    seeds = [str(seed) for seed in range(SEEDS)]
    common = ["--model", args.model, "--epochs", str(args.epochs), "--data-dir", args.data_dir, "--seeds", *seeds]
    ways = {"sequential": ["--threads", "2"], "jobs": ["--jobs", "2"]}
    seconds = {}
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        for way, flags in ways.items():
            command = [sys.executable, str(HERE / "train.py"), *common, *flags, "--out", str(Path(scratch) / way)]
            start = time.perf_counter()
            proc = subprocess.run(command, cwd=Path(__file__).parent, capture_output=True, text=True)
            seconds[way] = time.perf_counter() - start
            if proc.returncode:
                raise UserError(f"train.py {' '.join(flags)} failed: {(proc.stderr or proc.stdout).strip()[-200:]}")
            print(f"{way:10s} {seconds[way]:7.1f} s  ({' '.join(flags)})", flush=True)
    return {
        "model": args.model,
        "epochs": args.epochs,
        "seeds": SEEDS,
        "commands": {way: shlex.join(["python", "train.py", *common, *flags]) for way, flags in ways.items()},
        "wall_s": seconds,
        "jobs_over_sequential": seconds["jobs"] / seconds["sequential"],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = OneLineParser(description="Training speed, measured side by side in one process.")
    p.add_argument("--compare", action="store_true", help="default path against the fp32 reference, per model")
    p.add_argument(
        "--models",
        nargs="+",
        help="with --compare: names (default: every budgeted net); with --versus also trials as STUDY.json:NUMBER",
    )
    p.add_argument("--versus", metavar="REF", choices=[*MODELS, *searched()], help="each of --models against REF")
    p.add_argument("--levers", action="store_true", help="with --compare: also each speed lever on its own")
    p.add_argument("--profile", action="store_true", help="with --compare: where the default path's time goes")
    p.add_argument("--jobs-compare", action="store_true", help=f"{SEEDS} seeds of --model: --jobs 2 against one by one")
    p.add_argument("--epochs", type=positive_int, default=2, help="with --jobs-compare: epochs per seed")
    p.add_argument("--model", default="s6", choices=[*MODELS, *searched()], help="the loader comparison's model")
    p.add_argument("--batch-size", type=positive_int, help="the loader comparison's batch (default: the recipe's)")
    p.add_argument("--warmup", type=positive_int, default=10, help="batches before timing starts")
    p.add_argument("--batches", type=positive_int, default=80, help="timed batches per repeat")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--data-dir", default=DATA_DIR, help="folder holding MNIST/raw (default: $MNIST_ROOT or ./data)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--out", default="runs", help="folder for the JSON (default: runs/; publish: results)")
    args = p.parse_args(argv)
    known = [*MODELS, *searched()]
    unknown = [m for m in args.models or [] if m not in known and not (args.versus and ".json:" in m)]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.models = args.models or [name for name in [*MODELS, *searched()] if spec(name).budget]
    try:
        device = pick_device(args.device)
        out = writable_dir(args.out)
        if args.versus:
            result = versus(args, device)
        elif args.jobs_compare:
            result = jobs_compare(args, out)
        else:
            result = {"compare": compare(args, device)} if args.compare else loaders(args, device)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    header = {
        **provenance("lab.bench", argv, device),
        "warmup_batches": args.warmup,
        "timed_batches": args.batches,
        "repeats": args.repeats,
    }
    if args.versus:
        for name, r in result["models"].items():
            print(
                f"{name:10s} batch {r['batch_size']:3d}: {r['median_ms_per_image']:.3f} ms per image, "
                f"{r['faster_than_reference']:.2f}× as fast as {args.versus} ({r['multiply_adds']:,} multiply-adds "
                f"per image, {r['multiply_adds_ratio']:.2f}× fewer)"
            )
        path = out / f"bench-versus-{device.type}.json"
    elif args.compare:
        for model, r in result["compare"].items():
            m = r["median_ms_per_batch"]
            print(
                f"{model:8s} batch {r['batch_size']:3d}: fp32 reference {m['fp32']:6.2f} ms, "
                f"default ({r['default_precision']}) {m['auto']:6.2f} ms per batch: {r['speedup']:.2f}×"
            )
        threads = f"-{args.threads}thread" if args.threads else ""  # one file per thread count measured
        path = out / f"bench-{device.type}{threads}.json"
    elif args.jobs_compare:
        print(
            f"{SEEDS} seeds of {args.model}: --jobs 2 takes {result['jobs_over_sequential']:.2f}× the sequential time"
        )
        path = out / f"bench-jobs-{device.type}.json"
    else:
        m = result["median_images_per_s"]
        print(
            f"median: fast {m['fast']:.0f} images/s, classic {m['classic']:.0f} images/s, "
            f"fast/classic = {result['fast_over_classic']:.2f}x on {device_description(device)}"
        )
        path = out / f"bench-loaders-{device.type}.json"
    write_json(path, {**header, **result})
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
