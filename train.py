"""Train one of the budgeted MNIST CNNs headlessly and record the run in results/.

    python train.py                        # s6, 15 epochs, its recipe -> results/s6-seed0.json
    python train.py --model s7_8k --seed 3 --data-dir ../shared/data
    python train.py --model s7_8k --resume # continue from results/s7_8k-seed0.pt

Same code path as the notebook: models from model.py, data and loops from utils.py. After each
epoch a checkpoint (weights, optimizer, scheduler, every RNG state) is written atomically, so a
killed run resumes to exactly the metrics and weights of an uninterrupted one.
"""

import argparse
import shlex
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from model import MODELS, count_parameters, get_model
from utils import (
    DATA_DIR,
    LOADERS,
    RECIPES,
    SCHEDULES,
    DataConfig,
    UserError,
    capture_rng,
    device_description,
    git_commit,
    load_checkpoint,
    make_loaders,
    make_optimizer,
    pick_device,
    print_summary,
    restore_rng,
    run_epoch,
    run_record,
    save_checkpoint,
    seed_everything,
    training_config,
    weight_average,
    writable_dir,
    write_json,
)


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


def resume_command(argv: list[str], seed: int) -> str:
    """The command line that continues this run: same flags, this one seed, --resume."""
    kept, skipping = [], False
    for arg in argv:
        if arg.startswith("-"):
            skipping = arg.split("=", 1)[0] in ("--seeds", "--seed", "--resume")
        if not skipping:
            kept.append(arg)
    return shlex.join(["python", "train.py", *kept, "--seed", str(seed), "--resume"])


def raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
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
    flags = ("lr", "momentum", "schedule", "batch_size", "ema")
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
    config = training_config(args.model, args.epochs, data, recipe)
    device = pick_device(args.device)
    out = writable_dir(args.out)
    name = run_name(args)
    ckpt_path = out / f"{name}.pt"
    results_path = out / f"{name}.json"

    saved = None
    if args.resume:
        resume_path = ckpt_path if args.resume == "auto" else Path(args.resume)
        saved = load_checkpoint(resume_path, args.model)
        check_same_config(saved["config"], config, resume_path)

    started = time.perf_counter()
    seed_everything(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_loader, eval_loader, split = make_loaders(data, device)
    model = get_model(args.model).to(device)
    optimizer, scheduler, per_batch = make_optimizer(model, recipe, args.epochs, len(train_loader))
    average = weight_average(model, recipe)

    params, budget = count_parameters(model), MODELS[args.model].budget
    print(f"model {args.model}: {params:,} parameters" + (f" (budget < {budget:,})" if budget else ""))
    print(
        f"device {device_description(device)}; {len(train_loader.dataset):,} training images, "
        f"evaluating on {split} ({len(eval_loader.dataset):,}); recipe {config['recipe']}"
    )
    print_summary(model)

    history, first_epoch = [], 1
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved["rng"], train_loader)
        if average:
            average.load_state_dict(saved["average"])
        history, first_epoch = saved["history"], saved["epoch"] + 1
        print(f"resumed from {resume_path} after epoch {saved['epoch']}")
    setup_time = time.perf_counter() - started

    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        for epoch in range(first_epoch, args.epochs + 1):
            row = run_epoch(
                model, device, train_loader, eval_loader, optimizer, scheduler, per_batch, epoch, split, average
            )
            history.append(row)
            save_checkpoint(
                {
                    "model_name": args.model,
                    "config": config,
                    "epoch": epoch,
                    "history": history,
                    "model": model.state_dict(),
                    "average": average.state_dict() if average else None,  # the evaluated weights, if any
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": capture_rng(train_loader),
                },
                ckpt_path,
            )
    except KeyboardInterrupt:
        done = history[-1]["epoch"] if history else 0
        where = f"the checkpoint after epoch {done} is {ckpt_path}" if done else "no epoch finished, nothing to resume"
        resume = resume_command(argv, args.seed)
        print(f"\ninterrupted: {where}" + (f"; resume with: {resume}" if done else ""), file=sys.stderr)
        return 130

    result = run_record(args.model, model, args.seed, device, command, commit, config, split, history)
    result.update(resumed_after_epoch=saved["epoch"] if saved else None, setup_time_s=setup_time)
    write_json(results_path, result)
    final = history[-1][f"{split}_acc"]
    print(
        f"final {split} accuracy {final:.2f}% after {args.epochs} epochs, {result['train_time_s']:.0f} s of training; "
        f"results in {results_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
