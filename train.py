"""Train one of the course's MNIST CNNs from the command line, exactly as the notebook does.

    python train.py                               # s9_20k, 15 epochs, its recipe -> runs/s9_20k-seed0.json
    python train.py --model s8_8k --seed 3        # another net and seed
    python train.py --model s8_8k --resume        # continue from runs/s8_8k-seed0.pt
    python train.py --seeds 0 1 2 3 4 --jobs 2    # five seeds, two side by side

Runs go to `runs/` (git-ignored); `--out results` publishes into the repository. After each epoch
a checkpoint (weights, optimizer, scheduler, every random state) is written atomically, so a
killed run resumes to exactly the metrics and weights of an uninterrupted one. The nets and their
recipes are `model.py` and `RECIPES` below; the lab's searched nets (`lab/nets.py`) train here too.
"""

import argparse
import hashlib
import json
import os
import random
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model import MODELS, count_parameters
from utils import (
    DATA_DIR,
    LOADERS,
    Augment,
    DataConfig,
    UserError,
    device_description,
    first_line,
    make_loaders,
    memory_format,
    pick_device,
    print_summary,
    seed_everything,
    test,
    train,
)

HERE = Path(__file__).resolve().parent
PRECISIONS = ("auto", "bf16", "fp32")  # auto: the recipe's, falling back to fp32 where bf16 is slow


# ---------------------------------------------------------------------------------------------
# Which net, which recipe
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """How a net is trained: SGD, a learning-rate schedule, batch size, augmentation, loss and precision.

    `schedule="step"` is StepLR (lr multiplied by `gamma` every `step_size` epochs);
    `schedule="onecycle"` is OneCycleLR, stepped every batch: it warms up to `lr` over the first
    `pct_start` of training, then anneals (`anneal`: "cos" or "linear") to about 0 at the last batch,
    and cycles the momentum between 0.95 and 0.85 unless `cycle_momentum` is False. `momentum` may be
    0 (plain SGD); `weight_decay` is SGD's L2 term; `label_smoothing` spreads that share of each
    target over the other classes (evaluation scores the hard labels). `precision="bf16"` trains
    under bfloat16 autocast where the device runs it fast (see `resolve_precision`); evaluation is float32.
    `optimizer` "adam" or "adamw" trains with Adam (L2 weight decay) or AdamW (decoupled) instead of
    SGD; OneCycle then cycles Adam's first beta as it would the momentum, and `momentum` is unused.
    """

    lr: float = 0.05
    momentum: float = 0.9
    schedule: str = "step"
    step_size: int = 6
    gamma: float = 0.1
    pct_start: float = 0.3
    anneal: str = "cos"
    batch_size: int = 128
    augment: Augment = field(default_factory=Augment)
    precision: str = "fp32"
    nesterov: bool = False
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    cycle_momentum: bool = True
    optimizer: str = "sgd"

    def extras(self, model: nn.Module, data: DataConfig, device: torch.device) -> tuple[None, Callable]:
        """What trains beside SGD: no weight average to evaluate, and the loss. The lab's recipes add more."""
        return None, classification_loss(self.label_smoothing)


# The course nets' recipes (the notebook writes s9_20k's out). s8_8k's and the s9 nets' numbers are as their
# searches drew them.
RECIPES: dict[str, Recipe] = {
    "baseline": Recipe(lr=0.01, step_size=15),
    "s6": Recipe(),
    "s7_10k": Recipe(),
    "s8_8k": Recipe(
        lr=0.05733916835054211,
        schedule="onecycle",
        pct_start=0.1169598410800335,
        anneal="linear",
        batch_size=32,
        augment=Augment(degrees=9.518529688063536, translate=0.1, scale=0.07142700676327748, p=0.5432039428501325),
        precision="bf16",
        weight_decay=0.0001,
        label_smoothing=0.05,
        cycle_momentum=False,
    ),
    # The stage-2 winner of results/validation/course/budget-20000.json (trial 16), the values as its search drew them.
    "s9_20k": Recipe(
        lr=0.06320569388421397,
        nesterov=True,
        augment=Augment(degrees=12.546757621086103, translate=0.05, scale=0.04686908980787819, p=0.7773774496407934),
    ),
    # The stage-2 winner of results/validation/course/budget-10000.json (trial 21), the values as its search drew them.
    "s9_10k": Recipe(
        lr=0.24018882303270606,
        momentum=0.8,
        schedule="onecycle",
        pct_start=0.10028838029214777,
        anneal="linear",
        augment=Augment(degrees=12.273666878154676, translate=0.05, scale=0.030314574605756414, p=0.5994298800414144),
        label_smoothing=0.05,
        cycle_momentum=False,
    ),
    # The stage-2 winner of results/validation/course/budget-8000.json (trial 26), the values as its search drew them.
    "s9_8k": Recipe(
        lr=0.21018841177821865,
        schedule="onecycle",
        pct_start=0.1897485769302532,
        augment=Augment(degrees=1.6477727507364197, translate=0.05, scale=0.06343593361301092, p=0.8989260375945748),
        weight_decay=0.0001,
        label_smoothing=0.05,
        cycle_momentum=False,
    ),
}
SCHEDULES = ("step", "onecycle")
OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(
    model: nn.Module, recipe: Recipe, epochs: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, bool]:
    """The recipe's optimizer (SGD unless it says Adam or AdamW) + its schedule; the bool says whether to step
    the scheduler every batch."""
    if recipe.optimizer not in OPTIMIZERS:
        raise UserError(f"unknown optimizer '{recipe.optimizer}'; known: {', '.join(OPTIMIZERS)}")
    if recipe.optimizer != "sgd":
        adam = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
        optimizer: torch.optim.Optimizer = adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    elif recipe.nesterov and not recipe.momentum > 0:
        raise UserError(f"Nesterov momentum needs a momentum above 0, got {recipe.momentum}")
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=recipe.weight_decay,
        )
    if recipe.schedule == "step":
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, recipe.step_size, recipe.gamma), False
    if recipe.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            recipe.lr,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=recipe.pct_start,
            anneal_strategy=recipe.anneal,
            cycle_momentum=recipe.cycle_momentum,
        )
        return optimizer, sched, True
    raise UserError(f"unknown schedule '{recipe.schedule}'; known: {', '.join(SCHEDULES)}")


def classification_loss(label_smoothing: float = 0.0) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """Cross-entropy against the labels: `loss(logits, images, labels)`, the form `train` calls a loss in."""
    return lambda logits, x, y: F.cross_entropy(logits, y, label_smoothing=label_smoothing)


@dataclass(frozen=True)
class Spec:
    build: Callable[[], nn.Module]
    budget: int | None  # strict upper bound on parameters; None: unbudgeted
    recipe: Recipe


def searched() -> dict[str, Spec]:
    """The lab's nets (the searched ones, the public ones rebuilt), when lab/ is here: the course needs none."""
    try:
        from lab.nets import SEARCHED
        from lab.recipes import RECIPES as LAB_RECIPES
        from lab.reference import REFERENCE
    except ImportError:
        return {}
    return {name: Spec(net, net.budget, LAB_RECIPES[name]) for name, net in {**SEARCHED, **REFERENCE}.items()}


def spec(name: str) -> Spec:
    """A net's class, budget and recipe, by the name its runs are recorded under."""
    if name in MODELS:
        return Spec(MODELS[name], MODELS[name].budget, RECIPES[name])
    found = searched().get(name)
    if found is None:
        raise UserError(f"unknown model '{name}'; known models: {', '.join([*MODELS, *searched()])}")
    return found


# ---------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------
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
    p.add_argument(
        "--model",
        default="s9_20k",
        choices=[*MODELS, *searched()],
        metavar="NAME",
        help="s9_20k (default: the notebook's), s6, s7_10k, s8_8k, ...",
    )
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
        help="distil from the net of this run record (lab recipes); it must have held out the same --val images",
    )
    p.add_argument("--distill-weight", type=decay, help="share of the loss that is distillation, in [0, 1)")
    p.add_argument("--distill-temperature", type=positive_float, help="softening temperature (default: 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="several runs, one per seed (e.g. 0 1 2 3 4)")
    p.add_argument(
        "--data-dir",
        default=DATA_DIR,
        help="folder holding MNIST/raw; downloaded there when missing (default: $MNIST_ROOT or data/ beside train.py)",
    )
    p.add_argument("--out", default="runs", help="folder for the record, weights and checkpoint (publish: results)")
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


# ---------------------------------------------------------------------------------------------
# Precision and determinism
# ---------------------------------------------------------------------------------------------
def bf16_is_fast(device: torch.device) -> bool:
    """Whether the device has bfloat16 arithmetic in hardware (elsewhere bf16 is emulated, and slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(
            getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    return False


def resolve_precision(recipe: Recipe, device: torch.device, asked: str = "auto") -> str:
    """The precision a run trains in: "bf16" or "fp32".

    "auto" takes the recipe's and falls back to fp32 on a device without fast bf16 (the run
    records what it used); asking for bf16 outright on such a device is an error.
    """
    if asked not in PRECISIONS:
        raise UserError(f"unknown precision '{asked}'; known: {', '.join(PRECISIONS)}")
    fast = bf16_is_fast(device)
    if asked == "bf16" and not fast:
        raise UserError(f"--precision bf16: {device_description(device)} has no fast bfloat16; use fp32 or auto")
    wanted = recipe.precision if asked == "auto" else asked
    return "bf16" if wanted == "bf16" and fast else "fp32"


def configure_backends(device: torch.device, deterministic: bool = False) -> None:
    """cuDNN picks its fastest kernels per shape, unless the run asks for determinism.

    `deterministic` makes CUDA runs repeat bit for bit (and a resumed run match an uninterrupted
    one): deterministic cuDNN and cuBLAS kernels, and an error naming any op that has none. It
    changes nothing on the CPU, whose kernels are deterministic already.
    """
    if device.type == "cuda":
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic)


# ---------------------------------------------------------------------------------------------
# One run: prepare it, train its epochs
# ---------------------------------------------------------------------------------------------
def training_config(model: str, epochs: int, data: DataConfig, recipe: Recipe, precision: str) -> dict:
    """What defines a run, kept in its checkpoint and record: a resumed run must match it exactly.

    `precision` is what the run trains in (see `resolve_precision`), which can differ from the
    recipe's on a device without fast bf16.
    """
    return {
        "model": model,
        "epochs": epochs,
        "batch_size": data.batch_size,
        "seed": data.seed,
        "subset": data.subset,
        "val": data.val,
        "loader": data.loader,
        "augment": data.augment is not None,
        "recipe": asdict(recipe),
        "precision": precision,
    }


@dataclass
class Run:
    """One training run: its model, weight average, optimizer, schedule, data and history so far.

    Built by `prepare` and trained by `fit`, the path that `train.py` and the lab's sweep and bench
    take; the notebook writes the same steps out as a loop. `average` is a lab recipe's weight
    average (None for the course's); `loss` is called as `loss(logits, images, labels)`.
    """

    model: nn.Module
    average: nn.Module | None  # with .module, .update(), .state_dict(): see lab/engine.py
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_batch: bool  # OneCycle steps every batch, StepLR every epoch
    train_loader: object
    eval_loader: object
    split: str  # "test" or "val"
    device: torch.device
    precision: str  # what training runs in: "bf16" or "fp32"
    loss: Callable
    epochs: int
    history: list[dict] = field(default_factory=list)

    @property
    def evaluated(self) -> nn.Module:
        """The net whose accuracy is reported and saved: the weight average where the recipe keeps one."""
        return self.average.module if self.average else self.model

    def state_dict(self) -> dict:
        """Everything the next epoch depends on, for an exact resume."""
        return {
            "epoch": len(self.history),
            "history": self.history,
            "model": self.model.state_dict(),
            "average": self.average.state_dict() if self.average else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng(self.train_loader),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.average:
            self.average.load_state_dict(state["average"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"], self.train_loader)
        self.history = list(state["history"])


def prepare(
    build: Callable[[], nn.Module],
    recipe: Recipe,
    data: DataConfig,
    epochs: int,
    device: torch.device,
    precision: str = "auto",
    deterministic: bool = False,
) -> Run:
    """Seed, load the data, build the net, its optimizer and weight average: always in this order.

    The order fixes which random numbers each part draws, so the same seed gives the same run
    from every caller. `precision` is "auto" (the recipe's where the device runs it fast), "bf16"
    or "fp32" (see `resolve_precision`); `deterministic` see `configure_backends`.
    """
    trains_in = resolve_precision(recipe, device, precision)
    configure_backends(device, deterministic)
    seed_everything(data.seed)
    train_loader, eval_loader, split = make_loaders(data, device)
    model = build().to(device, memory_format=memory_format(trains_in))
    optimizer, scheduler, per_batch = make_optimizer(model, recipe, epochs, len(train_loader))
    average, loss = recipe.extras(model, data, device)
    return Run(
        model,
        average,
        optimizer,
        scheduler,
        per_batch,
        train_loader,
        eval_loader,
        split,
        device,
        trains_in,
        loss,
        epochs,
    )


def train_steps(run: Run, batches, epoch: int = 1, progress: bool = True, schedule: bool = True) -> dict[str, float]:
    """Train the run's net over `batches` with everything its recipe trains with (`schedule=False`: lr held)."""
    batch_scheduler = run.scheduler if run.per_batch and schedule else None
    return train(
        run.model,
        run.device,
        batches,
        run.optimizer,
        batch_scheduler,
        epoch,
        progress=progress,
        after_step=run.average.update if run.average else None,
        precision=run.precision,
        loss_fn=run.loss,
    )


def run_epoch(run: Run, verbose: bool = True, steps: Callable[..., dict] = train_steps) -> dict[str, float]:
    """Train the next epoch, evaluate (the weight average, if any), step an epoch-wise scheduler.

    Returns the history row of that epoch, already appended to `run.history`. `steps` trains the
    epoch's batches as `train_steps` does (the lab's CUDA-graph step takes its place).
    """
    start, epoch = time.perf_counter(), len(run.history) + 1
    lr = run.optimizer.param_groups[0]["lr"]
    tr = steps(run, run.train_loader, epoch, progress=verbose)
    ev = test(run.evaluated, run.device, run.eval_loader, run.split, verbose=verbose)
    if not run.per_batch:
        run.scheduler.step()
    row = {
        "epoch": epoch,
        "lr": lr,
        "train_loss": tr["loss"],
        "train_acc": tr["acc"],
        f"{run.split}_loss": ev["loss"],
        f"{run.split}_acc": ev["acc"],
        "time_s": time.perf_counter() - start,
    }
    run.history.append(row)
    return row


def fit(
    run: Run,
    on_epoch: Callable[[Run, dict], None] | None = None,
    verbose: bool = True,
    steps: Callable[..., dict] = train_steps,
) -> list[dict]:
    """Train the run's remaining epochs; after each, call `on_epoch(run, row)`.

    The callback is where callers differ: train.py checkpoints, lab/sweep.py reports to the pruner
    (and may stop the run by raising). Returns the whole history; the notebook writes the same loop out.
    """
    while len(run.history) < run.epochs:
        row = run_epoch(run, verbose, steps)
        if on_epoch is not None:
            on_epoch(run, row)
    return run.history


def capture_rng(loader) -> dict:
    """Every random state the next epoch draws from, as tensors and plain Python values."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": loader.generator.get_state(),  # shuffling (+ augmentation in DeviceLoader)
    }


def restore_rng(state: dict, loader) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    loader.generator.set_state(state["loader"])


# ---------------------------------------------------------------------------------------------
# Saving: checkpoints, weights and the run record, each written atomically
# ---------------------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write via a temporary file in the same folder, flushed to disk, then renamed over `path`.

    A crash at any moment leaves either the old file or the new one, never half a file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # open() gives the usual permissions
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def writable_dir(path: str | os.PathLike) -> Path:
    """Create the folder if needed and prove a file can be written there, before any work."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise UserError(f"cannot write to output folder '{out}': {err.strerror or err}") from None
    return out


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


CHECKPOINT_KEYS = {"model_name", "config", "epoch", "model", "optimizer", "scheduler", "history", "rng"}


def load_checkpoint(path: Path, model_name: str | None = None) -> dict:
    """Load a checkpoint safely (`weights_only=True`: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path} to resume from")
    try:
        with warnings.catch_warnings():  # e.g. "unexpected pickle protocol": the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"{path} is not a loadable checkpoint (damaged, or holds more than tensors): {first_line(err)}"
        ) from None
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        raise UserError(
            f"{path} is not a checkpoint of train.py (missing {sorted(CHECKPOINT_KEYS - set(state or {}))})"
        )
    if model_name is not None and state["model_name"] != model_name:
        raise UserError(
            f"{path} holds model '{state['model_name']}', not '{model_name}'; "
            f"pass --model {state['model_name']} or another checkpoint"
        )
    return state


WEIGHTS_SUFFIX = ".safetensors"  # results/<run>.safetensors: the evaluated net of a published run


def save_weights(model: nn.Module, path: str | os.PathLike) -> dict:
    """Save the net's weights alone (safetensors: no code runs on load), atomically; return file and SHA-256."""
    from safetensors.torch import save

    blob = save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    atomic_write(path, lambda f: f.write(blob))
    return {"file": Path(path).name, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}


CODE_FILES = ("*.py", "*.ipynb", "requirements*.txt")  # what decides a run's numbers, lab/ included


def git_commit() -> str:
    """The repository's HEAD, or $GIT_COMMIT, or 'unknown'; '+dirty' when tracked code differs from HEAD.

    Only code counts: pictures and records are outputs, which do not change what ran.
    """
    here = HERE
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_FILES],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # a copy of the tree without .git: its sender may say
        return os.environ.get("GIT_COMMIT", "unknown")
    return sha + ("+dirty" if dirty else "")


def provenance(tool: str, argv: list[str], device: torch.device) -> dict[str, object]:
    """What every record of a lab tool starts with: the command that made it, the commit, versions and device."""
    return {
        "command": shlex.join(["python", "-m", tool, *argv]),
        "git_commit": git_commit(),
        "versions": versions(),
        "device": device_description(device),
    }


def versions() -> dict[str, str]:
    import platform

    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}


def run_record(
    model_name: str,
    model: nn.Module,
    seed: int,
    device: torch.device,
    command: str,
    commit: str,
    config: dict,
    split: str,
    history: list[dict],
) -> dict:
    """What a run's JSON file holds: enough to tell exactly what ran, where, and how it went."""
    return {
        "model": model_name,
        "params": count_parameters(model),
        "budget": spec(model_name).budget,
        "seed": seed,
        "command": command,
        "git_commit": commit,
        "versions": versions(),
        "device": device_description(device),
        "config": config,
        "eval_split": split,
        "train_time_s": sum(h["time_s"] for h in history),
        "epochs": history,
    }


def write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
def run_name(args: argparse.Namespace) -> str:
    """<model>-seed<k>; runs on other data regimes get a suffix so they never overwrite it."""
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


def repo_path(path: str) -> str:
    """A file named on the command line, as a record keeps it: relative to the repository when inside it.
    Several files joined by commas (a teacher of several nets) are each kept so."""

    def one(name: str) -> str:
        resolved = Path(name).resolve()
        return resolved.relative_to(HERE).as_posix() if resolved.is_relative_to(HERE) else str(resolved)

    return ",".join(one(name) for name in path.split(",") if name)


def with_flags(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    """The recipe with the fields the flags set; a weight average or a teacher makes it a lab recipe.

    A teacher is recorded by its path in the repository, so the record means the same file wherever
    the run was started from.
    """
    flags = ("lr", "momentum", "schedule", "batch_size", "ema", "teacher", "distill_weight", "distill_temperature")
    changes = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    if changes.get("teacher"):
        changes["teacher"] = repo_path(changes["teacher"])
    lab_only = sorted(k for k in changes if not hasattr(recipe, k))
    if lab_only:  # a weight average or a teacher for a course net: the lab's recipe has the fields
        try:
            from lab.recipes import recipe_from_dict
        except ImportError:
            raise UserError(f"--{lab_only[0].replace('_', '-')}: a lever of the lab, and lab/ is not here") from None
        recipe = recipe_from_dict(asdict(recipe))
    return replace(recipe, **changes)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    command, commit, net = shlex.join(["python", "train.py", *argv]), git_commit(), spec(args.model)
    recipe = with_flags(net.recipe, args)
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
    run = prepare(net.build, recipe, data, args.epochs, device, precision, args.deterministic)
    params, budget = count_parameters(run.model), net.budget
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
