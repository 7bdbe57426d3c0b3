"""Check every published number from the committed weights, in seconds, without training.

    python verify.py                                  # every run under results/, from wherever it is started
    python verify.py --runs 'results/s6-seed*.json'   # some of them

For each run record it loads the weights saved beside it (`<run>.safetensors`), checks their
SHA-256 against the record, evaluates them on the record's split (the test set, or the held-out
validation images of a `--val` run) and compares the number of correct images with the record's
final accuracy. On the kind of device the run was recorded on the count must be equal exactly.
A run recorded on a GPU and checked on a CPU (or the other way round) runs other kernels, whose
rounding may flip a borderline image, so there it may differ by up to GPU_TOLERANCE images, and
the line says so. Records without weights (runs made before weights were saved, now superseded,
and the notebook's run record) are counted as skipped. Exit status: 0 when every checked run
reproduced, 1 on any mismatch, missing or changed file, 2 on bad flags or data.
"""

import glob
import json
import sys
from pathlib import Path

import torch

from model import count_parameters
from train import HERE, OneLineParser, spec
from utils import (
    DATA_DIR,
    DataConfig,
    UserError,
    device_description,
    load_weights,
    make_loaders,
    memory_format,
    pick_device,
    predict,
)

RUNS = "results/**/*-seed*.json"  # every run record, published, superseded or on validation
GPU_TOLERANCE = 5  # images: the most a run may differ by when checked on another kind of device


class Mismatch(Exception):
    """A run that does not reproduce: one line saying what differs."""


def read_record(path: Path) -> dict | None:
    """The run record at `path`, or None when the file is not one of train.py's records."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Mismatch(f"cannot read the record: {err}") from None
    keys = {"model", "params", "config", "epochs", "eval_split", "device"}
    return record if isinstance(record, dict) and keys <= record.keys() else None


def correct_images(
    model: torch.nn.Module, record: dict, data_dir: str, device: torch.device, cache: dict
) -> tuple[int, int]:
    """How many images of the record's evaluation split the model gets right, and how many there are."""
    val = record["config"].get("val", 0)  # 0: the test set; N: the last N training images
    if val not in cache:
        cache[val] = make_loaders(DataConfig(data_dir, val=val), device)[1]
    _, preds, targets = predict(model, device, cache[val])
    return int((preds == targets).sum()), len(targets)


def check(path: Path, record: dict, data_dir: str, device: torch.device, cache: dict) -> str:
    """Reproduce one run from its weights; return what matched, or raise Mismatch with what did not."""
    name = record["model"]
    try:
        model = spec(name).build()
    except UserError as err:
        raise Mismatch(str(err)) from None
    weights = record["weights"]
    if count_parameters(model) != record["params"]:
        raise Mismatch(f"{name} has {count_parameters(model):,} parameters now, the record {record['params']:,}")
    layout = memory_format(record["config"].get("precision", "fp32"))  # as it was evaluated while training
    try:
        load_weights(model, path.parent / weights["file"], weights["sha256"])
    except UserError as err:
        raise Mismatch(str(err)) from None
    model = model.to(device, memory_format=layout)
    correct, total = correct_images(model, record, data_dir, device, cache)
    recorded_acc = record["epochs"][-1][f"{record['eval_split']}_acc"]
    recorded = round(recorded_acc * total / 100)
    same_kind = record["device"].split(" ")[0] == device.type or (
        device.type == "cuda" and not record["device"].startswith(("cpu", "mps"))
    )
    allowed = 0 if same_kind else GPU_TOLERANCE
    line = (
        f"{correct:,}/{total:,} correct ({100 * correct / total:.2f} %), recorded {recorded:,} ({recorded_acc:.2f} %)"
    )
    if abs(correct - recorded) > allowed:
        raise Mismatch(line + (f", more than the {allowed} images allowed across devices" if allowed else ""))
    if not same_kind:
        return f"{line}: within {GPU_TOLERANCE} images (recorded on {record['device']}, checked on {device.type})"
    return line + ": exact"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(description="Reproduce every published number from the committed weights.")
    p.add_argument("--runs", help=f"glob of run records (default: the repository's {RUNS})")
    p.add_argument(
        "--data-dir",
        default=DATA_DIR,
        help="folder holding MNIST/raw; downloaded there when missing (default: $MNIST_ROOT or data/ beside verify.py)",
    )
    p.add_argument("--device", default="cpu", choices=["auto", "cuda", "mps", "cpu"])
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        device = pick_device(args.device)
        test_set = make_loaders(DataConfig(args.data_dir), device)[1]  # no MNIST, none to download: say so up front
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pattern = args.runs or str(HERE / RUNS)
    paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    if not paths:
        print(f"error: no run records match --runs '{pattern}'", file=sys.stderr)
        return 2

    reproduced, skipped, failed, cache = 0, [], 0, {0: test_set}  # by --val: 0 is the test set
    for path in paths:
        try:
            record = read_record(path)
            if record is None:
                continue
            if "weights" not in record:
                skipped.append(path)
                continue
            print(f"{path}: {check(path, record, args.data_dir, device, cache)}")
            reproduced += 1
        except Mismatch as err:
            print(f"{path}: MISMATCH: {err}")
            failed += 1
    print(
        f"{reproduced} runs reproduced on {device_description(device)}"
        + (f", {failed} did not" if failed else "")
        + (f"; {len(skipped)} skipped (no weights saved with them)" if skipped else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
