"""Train one of the budgeted MNIST CNNs headlessly and record the run in results/.

    python train.py                        # s6, 15 epochs, its recipe -> results/s6-seed0.json
    python train.py --model s7_8k --seed 3 --data-dir ../shared/data
    python train.py --model s7_8k --resume # continue from results/s7_8k-seed0.pt
    python train.py --deterministic        # on a GPU: deterministic kernels, runs repeat bit for bit

Same code path as the notebook: models from model.py, data and loops from utils.py. After each
epoch a checkpoint (weights, optimizer, scheduler, every RNG state) is written atomically, so a
killed run resumes to exactly the metrics and weights of an uninterrupted one.
"""

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from model import MODELS, count_parameters, get_model
from utils import (
    DATA_DIR,
    LOADERS,
    PRECISIONS,
    RECIPES,
    SCHEDULES,
    WEIGHTS_SUFFIX,
    DataConfig,
    Run,
    UserError,
    device_description,
    first_line,
    fit,
    git_commit,
    load_checkpoint,
    pick_device,
    prepare,
    print_summary,
    resolve_precision,
    run_record,
    save_checkpoint,
    save_weights,
    training_config,
    writable_dir,
    write_json,
)

HERE = Path(__file__).parent


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag gets one line on stderr instead of the usage block."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got '{text}'")
    return value


def number(text: str) -> float:
    """The float `text` spells, or NaN, which every range check below rejects."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def positive_float(text: str) -> float:
    value = number(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got '{text}'")
    return value


def decay(text: str) -> float:
    value = number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got '{text}'")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = OneLineParser(description="Train a parameter-budgeted CNN on MNIST.")
    p.add_argument("--model", default="s6", choices=list(MODELS), help="registry name (default: s6)")
    p.add_argument("--epochs", type=positive_int, default=15)
    p.add_argument("--batch-size", type=positive_int, help="default: the model's recipe")
    p.add_argument(
        "--lr", type=positive_float, help="learning rate (peak lr for onecycle); default: the model's recipe"
    )
    p.add_argument("--momentum", type=float, help="SGD momentum; default: the model's recipe")
    p.add_argument("--schedule", choices=SCHEDULES, help="lr schedule; default: the model's recipe")
    p.add_argument(
        "--ema",
        type=decay,
        help="evaluate and save a moving average of the weights with this decay, 0 for none; default: the recipe's",
    )
    p.add_argument(
        "--teacher",
        metavar="RECORD",
        help="distil from the net of this run record (results/...json); it must have held out the same --val images",
    )
    p.add_argument("--distill-weight", type=decay, help="share of the loss that is distillation, in [0, 1)")
    p.add_argument("--distill-temperature", type=positive_float, help="softening temperature (default: 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="several runs, one per seed (e.g. 0 1 2 3 4)")
    p.add_argument(
        "--data-dir",
        default=DATA_DIR,
        help="folder holding MNIST/raw; downloaded there when missing and online (default: $MNIST_ROOT or ./data)",
    )
    p.add_argument("--out", default="results", help="folder for the results JSON and the checkpoint")
    p.add_argument("--subset", type=positive_int, help="train on the first N training images only (smoke runs)")
    p.add_argument(
        "--val",
        type=int,
        default=0,
        help="hold out the last N training images and evaluate on them, not on the test set",
    )
    p.add_argument(
        "--loader",
        default="fast",
        choices=LOADERS,
        help="fast: MNIST as a tensor on the device; classic: torchvision DataLoader",
    )
    p.add_argument("--no-augment", action="store_true", help="train without the recipe's random affine augmentation")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads for torch (default: torch's choice); the same count reproduces a CPU run exactly",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="what training computes in: auto (the recipe's, fp32 where the device has no fast bf16), bf16 or fp32",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="CUDA: deterministic kernels only, so runs repeat and resume bit for bit; slower (CPU runs always do)",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="with --seeds: run this many seeds side by side, each a 1-thread process (log in --out/<run>.log)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CHECKPOINT",
        help="continue from the run's last checkpoint in --out (or from CHECKPOINT)",
    )
    return p.parse_args(argv)


def run_name(args: argparse.Namespace) -> str:
    """results/<model>-seed<k>; runs on other data regimes get a suffix so they never overwrite it."""
    suffix = (f"-val{args.val}" if args.val else "") + (f"-subset{args.subset}" if args.subset else "")
    return f"{args.model}-seed{args.seed}{suffix}"


def check_same_config(saved: dict, current: dict, path: Path) -> None:
    diffs = [f"{k}={saved.get(k)!r} (now {current[k]!r})" for k in current if saved.get(k) != current[k]]
    if diffs:
        raise UserError(f"{path} was trained with other settings: {', '.join(diffs)}; resume with the original flags")


def without(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """argv less the named flags and their values."""
    kept, skipping = [], False
    for arg in argv:
        if arg.startswith("-"):
            skipping = arg.split("=", 1)[0] in flags
        if not skipping:
            kept.append(arg)
    return kept


def resume_command(argv: list[str], seed: int) -> str:
    """The command line that continues this run: same flags, this one seed, --resume."""
    kept = without(argv, ("--seeds", "--seed", "--jobs", "--resume"))
    return shlex.join(["python", "train.py", *kept, "--seed", str(seed), "--resume"])


def seed_command(argv: list[str], seed: int) -> list[str]:
    """The command of one seed of a --jobs run: exactly what a user would type to run it alone on 1 thread."""
    return [*without(argv, ("--seeds", "--seed", "--jobs", "--threads")), "--seed", str(seed), "--threads", "1"]


def run_jobs(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the seeds as 1-thread processes, `--jobs` at a time; each writes the record it would write alone."""
    out = writable_dir(args.out)
    pending, running, failed = list(args.seeds), {}, []
    while pending or running:
        while pending and len(running) < args.jobs:
            seed = pending.pop(0)
            log_path = out / f"{run_name(argparse.Namespace(**{**vars(args), 'seed': seed}))}.log"
            log = open(log_path, "w")  # noqa: SIM115 (closed when the process ends)
            flags = seed_command(argv, seed)
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "train.py"), *flags],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            running[proc] = (seed, log, log_path)
            print(f"seed {seed}: started ({shlex.join(['python', 'train.py', *flags])})")
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            seed, log, log_path = running.pop(proc)
            log.close()
            last = (log_path.read_text().strip().splitlines() or ["(no output)"])[-1]
            print(f"seed {seed}: {last}" if proc.returncode == 0 else f"seed {seed} failed: {last} (log: {log_path})")
            if proc.returncode:
                failed.append(proc.returncode)
    return max(failed, default=0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.jobs > 1 and args.seeds:
        try:
            return run_jobs(args, argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # the seeds got the signal too: each saved its checkpoint
            return 130
    if args.threads:
        torch.set_num_threads(args.threads)
    for seed in args.seeds or [args.seed]:
        try:
            status = run(argparse.Namespace(**{**vars(args), "seed": seed}), argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if status:
            return status
    return 0


def run(args: argparse.Namespace, argv: list[str]) -> int:
    command, commit = shlex.join(["python", "train.py", *argv]), git_commit()
    flags = ("lr", "momentum", "schedule", "batch_size", "ema", "teacher", "distill_weight", "distill_temperature")
    recipe = replace(RECIPES[args.model], **{k: getattr(args, k) for k in flags if getattr(args, k) is not None})
    data = DataConfig(
        root=args.data_dir,
        batch_size=recipe.batch_size,
        loader=args.loader,
        subset=args.subset,
        val=args.val,
        augment=None if args.no_augment else recipe.augment,
        seed=args.seed,
    )
    device = pick_device(args.device)
    precision = resolve_precision(recipe, device, args.precision)
    config = training_config(args.model, args.epochs, data, recipe, precision)
    out = writable_dir(args.out)
    name = run_name(args)
    ckpt_path = out / f"{name}.pt"

    saved = None
    if args.resume:
        resume_path = ckpt_path if args.resume == "auto" else Path(args.resume)
        saved = load_checkpoint(resume_path, args.model)
        check_same_config(saved["config"], config, resume_path)

    started = time.perf_counter()
    run = prepare(lambda: get_model(args.model), recipe, data, args.epochs, device, precision, args.deterministic)
    params, budget = count_parameters(run.model), MODELS[args.model].budget
    print(f"model {args.model}: {params:,} parameters" + (f" (budget < {budget:,})" if budget else ""))
    print(
        f"device {device_description(device)}, training in {precision}; {len(run.train_loader.dataset):,} training "
        f"images, evaluating on {run.split} ({len(run.eval_loader.dataset):,}); recipe {config['recipe']}"
    )
    print_summary(run.model)
    if saved:
        run.load_state_dict(saved)
        print(f"resumed from {resume_path} after epoch {saved['epoch']}")
    setup_time = time.perf_counter() - started

    def checkpoint(run: Run, row: dict) -> None:
        save_checkpoint({"model_name": args.model, "config": config, **run.state_dict()}, ckpt_path)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops like Ctrl-C
    try:
        history = fit(run, on_epoch=checkpoint)
    except KeyboardInterrupt:
        done = len(run.history)
        where = f"the checkpoint after epoch {done} is {ckpt_path}" if done else "no epoch finished, nothing to resume"
        resume = resume_command(argv, args.seed)
        print(f"\ninterrupted: {where}" + (f"; resume with: {resume}" if done else ""), file=sys.stderr)
        return 130
    except RuntimeError as err:
        if args.deterministic and "deterministic" in str(err):
            raise UserError(f"--deterministic: {first_line(err)}") from None
        raise

    result = run_record(args.model, run.model, args.seed, device, command, commit, config, run.split, history)
    result.update(
        resumed_after_epoch=saved["epoch"] if saved else None, setup_time_s=setup_time, deterministic=args.deterministic
    )
    result["weights"] = save_weights(run.evaluated, out / f"{name}{WEIGHTS_SUFFIX}")
    write_json(out / f"{name}.json", result)
    final = history[-1][f"{run.split}_acc"]
    print(
        f"final {run.split} accuracy {final:.2f}% after {args.epochs} epochs, {result['train_time_s']:.0f} s of "
        f"training; results in {out / name}.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
