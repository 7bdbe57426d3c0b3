"""Training throughput of the two data paths, measured in one process.

    python bench.py                    # s6, batch 128 -> results/bench-<device>.json

Each loader trains the same model for a fixed number of batches after a warm-up, taken from one
running epoch (as in training, so DataLoader worker start-up is not what is timed); the loaders
alternate for several repeats and the median images/s of each is reported with the ratio.
"""

import itertools
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import replace

import torch

from model import MODELS, get_model
from train import OneLineParser, positive_int
from utils import (
    DATA_DIR,
    LOADERS,
    RECIPES,
    DataConfig,
    UserError,
    device_description,
    git_commit,
    make_loaders,
    make_optimizer,
    pick_device,
    seed_everything,
    train,
    versions,
    writable_dir,
    write_json,
)


class Batches:
    """The next n batches of a running epoch iterator, as something `train()` can consume."""

    def __init__(self, batches: Iterator, n: int) -> None:
        self.batches, self.n = batches, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator:
        return itertools.islice(self.batches, self.n)


def images_per_second(loader, model_name: str, device: torch.device, warmup: int, batches: int) -> float:
    model = get_model(model_name).to(device)
    optimizer, _, _ = make_optimizer(model, RECIPES[model_name], 1, len(loader))
    running = iter(loader)
    train(model, device, Batches(running, warmup), optimizer, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train(model, device, Batches(running, batches), optimizer, progress=False)  # ends with a device sync
    return batches * loader.batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = OneLineParser(description="Images/s of the fast and classic loaders.")
    p.add_argument("--model", default="s6", choices=list(MODELS))
    p.add_argument("--batch-size", type=positive_int, help="default: the model's recipe")
    p.add_argument("--warmup", type=positive_int, default=10, help="batches before timing starts")
    p.add_argument("--batches", type=positive_int, default=80, help="timed batches per repeat")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--data-dir", default=DATA_DIR, help="folder holding MNIST/raw (default: $MNIST_ROOT or ./data)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--out", default="results")
    args = p.parse_args(argv)
    try:
        device = pick_device(args.device)
        out = writable_dir(args.out)
        seed_everything(0)
        recipe = RECIPES[args.model]
        args.batch_size = args.batch_size or recipe.batch_size
        data = DataConfig(root=args.data_dir, batch_size=args.batch_size, augment=recipe.augment)
        loaders = {kind: make_loaders(replace(data, loader=kind), device)[0] for kind in LOADERS}
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    rates: dict[str, list[float]] = {kind: [] for kind in LOADERS}
    for repeat, kind in itertools.product(range(args.repeats), LOADERS):
        rates[kind].append(images_per_second(loaders[kind], args.model, device, args.warmup, args.batches))
        print(f"repeat {repeat + 1}/{args.repeats}  {kind:8s} {rates[kind][-1]:8.0f} images/s")
    median = {kind: statistics.median(r) for kind, r in rates.items()}
    ratio = median["fast"] / median["classic"]
    print(
        f"median: fast {median['fast']:.0f} images/s, classic {median['classic']:.0f} images/s, "
        f"fast/classic = {ratio:.2f}x on {device_description(device)}"
    )

    result = {
        "command": shlex.join(["python", "bench.py", *argv]), "git_commit": git_commit(), "versions": versions(),
        "device": device_description(device), "model": args.model, "batch_size": args.batch_size,
        "warmup_batches": args.warmup, "timed_batches": args.batches, "repeats": args.repeats,
        "images_per_s": rates, "median_images_per_s": median, "fast_over_classic": ratio,
    }  # fmt: skip
    path = out / f"bench-{device.type}.json"
    write_json(path, result)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
