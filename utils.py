"""Everything around the model: data, augmentation, train/test loops, checkpoints, plots.

Hyperparameters live at the top of this file, in one place, so that `train.py`, `bench.py` and
the notebook all train the same way.
"""

import contextlib
import copy
import hashlib
import itertools
import json
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import datasets, transforms
from tqdm import tqdm  # text bars: readable in a terminal, a log and a saved notebook alike

# ---------------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------------
MEAN, STD = 0.1307, 0.3081  # pixel mean / std over the 60k MNIST training images
TEST_BATCH_SIZE = 1000  # evaluation has no gradients: large batches are free speed
LOG_EVERY = 20  # batches between progress-bar updates (each one syncs with the device)
DATA_DIR = os.environ.get("MNIST_ROOT", "data")  # default folder holding MNIST/raw


@dataclass(frozen=True)
class Augment:
    """A random affine map per training image, as `RandomApply([RandomAffine(...)], p)` draws it."""

    degrees: float = 7.0  # rotation uniform in [-degrees, degrees]
    translate: float = 0.05  # shift uniform up to this fraction of the side, rounded to whole pixels
    scale: float = 0.0  # zoom uniform in [1 - scale, 1 + scale]
    p: float = 1.0  # probability that an image is transformed at all


@dataclass(frozen=True)
class Recipe:
    """How one model is trained: SGD, a learning-rate schedule, batch size, augmentation, loss, precision.

    `schedule="step"` is StepLR (lr multiplied by `gamma` every `step_size` epochs);
    `schedule="onecycle"` is OneCycleLR, stepped every batch: it warms up to `lr` over the first
    `pct_start` of training, then anneals (`anneal`: "cos" or "linear") to about 0 at the last batch.
    OneCycle also cycles the momentum between 0.95 and 0.85 (PyTorch's default), ignoring
    `momentum`, unless `cycle_momentum` is False. `momentum` may be 0 (plain SGD) and `nesterov`
    needs it above 0; `weight_decay` is SGD's L2
    term; `label_smoothing` spreads that share of each target over the other classes in the
    training loss (evaluation always scores the hard labels). `ema` > 0 evaluates and saves an
    exponential moving average of the weights with that decay (see `WeightAverage`) instead of
    the last weights; 0 means none. `teacher` names the run record of a bigger net of ours whose
    softened predictions the net also learns from (see `Loss`): `distill_weight` of the loss is
    that term, at `distill_temperature`. `precision="bf16"` trains
    under bfloat16 autocast where the device runs it fast and in float32 elsewhere (see
    `resolve_precision`); evaluation is always float32.
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
    ema: float = 0.0
    precision: str = "fp32"
    nesterov: bool = False
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    cycle_momentum: bool = True
    teacher: str = ""  # path of a train.py run record (results/...json) whose weights teach; "" for none
    distill_weight: float = 0.0
    distill_temperature: float = 4.0


def recipe_from_dict(d: dict) -> Recipe:
    """A recipe as `asdict` wrote it into a record; fields added since then take their defaults."""
    return Recipe(**{**d, "augment": Augment(**d["augment"])})


# The searched nets train in bf16 where the device has it: on validation, s7_4k's recipe scored the same
# in bf16 and in fp32 over 3 seeds each (results/validation/precision/), and the step runs faster.
# s6 and s7_10k keep the fp32 they were published in (s6's recipe has since scored the same in bf16 on
# validation; a switch would be a step with seeds of its own).
RECIPES: dict[str, Recipe] = {
    "baseline": Recipe(lr=0.01, step_size=15),
    "s6": Recipe(),
    "s7_10k": Recipe(),
    # Searched nets: the best trial of their sweep.py study (results/validation/budget-*.json).
    "s7_8k": Recipe(  # the values as the sampler drew them
        lr=0.08191189891187763,
        schedule="onecycle",
        pct_start=0.18244273321177729,
        anneal="linear",
        batch_size=64,
        augment=Augment(degrees=9.074733570659514, translate=0.1, scale=0.0051964377462808825, p=0.7782115984766502),
        ema=0.999,
        precision="bf16",
    ),
    "s7_4k": Recipe(  # the public reference's recipe (see sweep.REFERENCE), with weight averaging
        lr=0.1,
        schedule="onecycle",
        pct_start=2 / 15,
        anneal="linear",
        batch_size=64,
        augment=Augment(degrees=7.0, translate=0.1, scale=0.09, p=0.5),
        ema=0.999,
        precision="bf16",
    ),
    "s7_3k": Recipe(  # the values as the sampler drew them
        lr=0.0806903206686792,
        schedule="onecycle",
        pct_start=0.1616896678209217,
        anneal="linear",
        batch_size=64,
        augment=Augment(degrees=7.240599163103695, translate=0.1, scale=0.12050683502777204, p=0.6244441584797218),
        precision="bf16",
    ),
    # Frontier II: the stage-2 winner of results/validation/frontier-ii/budget-4000.json, trial 72 (trial 69 asked
    # again with --best-with ema=0.999). Its teacher there trained on the first 55,000 training images; here it
    # is the same s6 run (seed 0) on all 60,000.
    "s8_4k": Recipe(
        lr=0.050824166508096076,
        schedule="onecycle",
        pct_start=0.14063302383751047,
        batch_size=64,
        augment=Augment(degrees=6.194156916168043, translate=0.05, scale=0.10048648741790726, p=0.6878752456190466),
        precision="bf16",
        teacher="results/s6-seed0.json",
        distill_weight=0.8,
        ema=0.999,
    ),
    # Frontier II: the stage-2 winner of results/validation/frontier-ii/budget-8000.json (learns from labels only).
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
    # Frontier II: the stage-2 winner of results/validation/frontier-ii/budget-5000.json, trial 55 (trial 24 asked
    # again with --best-with ema=0.999): the public reference's net and plain SGD at batch 32, with a drawn
    # schedule and augmentation, half of the loss distilled, weights averaged.
    "s8_5k": Recipe(
        lr=0.1653189681080532,
        momentum=0.0,
        schedule="onecycle",
        pct_start=0.169739289374228,
        anneal="linear",
        batch_size=32,
        augment=Augment(degrees=9.460309620569456, translate=0.1, scale=0.08894477733924347, p=0.5054873427372076),
        precision="bf16",
        cycle_momentum=False,
        teacher="results/s6-seed0.json",
        distill_weight=0.5,
        ema=0.999,
    ),
    # Frontier II: the stage-2 winner of results/validation/frontier-ii/budget-3000.json, trial 61 (trial 54 asked
    # again with --best-with ema=0.999): separable convolutions after the first stage, Nesterov momentum without
    # OneCycle's cycling, label smoothing, half of the loss distilled, weights averaged.
    "s8_3k": Recipe(
        lr=0.04292232518546543,
        schedule="onecycle",
        pct_start=0.2134735698361244,
        augment=Augment(degrees=12.530335053529452, translate=0.1, scale=0.12619988836648893, p=0.7602179151158369),
        precision="bf16",
        nesterov=True,
        weight_decay=0.0005,
        label_smoothing=0.1,
        cycle_momentum=False,
        teacher="results/s6-seed0.json",
        distill_weight=0.5,
        ema=0.999,
    ),
}
SCHEDULES = ("step", "onecycle")
PRECISIONS = ("auto", "bf16", "fp32")  # auto: the recipe's, falling back to fp32 where bf16 is slow


class UserError(Exception):
    """A problem the user can fix (bad flag, missing data, damaged file): shown as one line."""


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (or its type's name), for a one-line error."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


# ---------------------------------------------------------------------------------------------
# Device and seeding
# ---------------------------------------------------------------------------------------------
def pick_device(name: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU; or the device asked for, if it exists here."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(n for n, ok in available.items() if ok)
    if not available.get(name, False):
        raise UserError(
            f"device '{name}' is not available here (available: {', '.join(n for n, ok in available.items() if ok)})"
        )
    return torch.device(name)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads > 1 else ''})"


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


def memory_format(precision: str) -> torch.memory_format:
    """bf16 convolutions ran fastest channels-last on the 2-core CPU (bench.py); fp32 keeps the default."""
    return torch.channels_last if precision == "bf16" else torch.contiguous_format


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS


# ---------------------------------------------------------------------------------------------
# MNIST files
# ---------------------------------------------------------------------------------------------
MNIST_FILES = {  # name -> (md5 of the canonical file, size in bytes)
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 47_040_016),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 60_008),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 7_840_016),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 10_008),
}


def _split_files(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def check_idx_file(path: Path) -> int:
    """Check an IDX file's header against its size (and the known checksum for canonical files).

    Returns the number of items. Catches truncated or damaged files with a message naming the
    file, instead of the reshape traceback torchvision would give.
    """
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise UserError(f"{path} is not an MNIST IDX file of bytes (bad header); replace it")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)] if len(data) >= header else []
    expected = header + math.prod(dims) if dims else None
    if expected != len(data):
        raise UserError(
            f"{path} is truncated or damaged: its header promises {expected} bytes, the file has {len(data)}"
        )
    canonical = MNIST_FILES.get(path.name)
    if canonical and len(data) == canonical[1] and hashlib.md5(data).hexdigest() != canonical[0]:
        raise UserError(f"{path} is damaged: its MD5 differs from the published one ({canonical[0]}); replace it")
    return dims[0]


def _download(root: Path) -> None:
    """Fetch MNIST into root; on failure, remove the empty folders the attempt created."""
    made = [p for p in (root, root / "MNIST", root / "MNIST" / "raw") if not p.exists()]
    try:
        for train in (True, False):
            datasets.MNIST(str(root), train=train, download=True)
    except Exception as err:  # offline, proxy, partial download: all mean "not here"
        for p in reversed(made):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise UserError(
            f"MNIST is not in {root / 'MNIST' / 'raw'} and could not be downloaded ({first_line(err, 120)}); "
            "pass --data-dir with a folder that holds MNIST/raw"
        ) from None


def load_mnist(root: str | os.PathLike, train: bool, download: bool = True) -> tuple[Tensor, Tensor]:
    """One MNIST split as (uint8 images N x 28 x 28, int64 labels), read by torchvision.

    The files are checked first, so a bad file gets a clear error rather than a traceback.
    """
    root = Path(root)
    raw = root / "MNIST" / "raw"
    names = _split_files(train)
    if not all((raw / n).is_file() for n in names):
        if not download:
            raise UserError(f"MNIST is not in {raw}; pass --data-dir with a folder that holds MNIST/raw")
        _download(root)
    n_images, n_labels = (check_idx_file(raw / n) for n in names)
    if n_images != n_labels:
        raise UserError(f"{raw / names[0]} has {n_images} images but {raw / names[1]} has {n_labels} labels")
    ds = datasets.MNIST(str(root), train=train, download=False)
    return ds.data, ds.targets


# ---------------------------------------------------------------------------------------------
# Augmentation and loaders
# ---------------------------------------------------------------------------------------------
def classic_transforms(augment: Augment | None) -> transforms.Compose:
    """The torchvision per-image pipeline (PIL -> tensor), as taught in the course."""
    steps = []
    if augment:
        affine = transforms.RandomAffine(
            augment.degrees,
            translate=(augment.translate, augment.translate),
            scale=(1 - augment.scale, 1 + augment.scale) if augment.scale else None,
            interpolation=transforms.InterpolationMode.BILINEAR,
        )
        steps = [transforms.RandomApply([affine], p=augment.p) if augment.p < 1 else affine]
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])


def random_affine(x: Tensor, generator: torch.Generator, aug: Augment = Augment()) -> Tensor:
    """Rotate and zoom each image of a (B, 1, H, W) batch about its centre, then shift it by whole pixels.

    Same distribution as `RandomApply([RandomAffine(degrees, translate=(t, t), scale=(1-s, 1+s))], p)`:
    angle uniform in [-degrees, degrees], shift round(uniform(-t*W, t*W)) pixels, zoom uniform in
    [1-s, 1+s], zero fill, bilinear sampling, and each image left as it is with probability 1-p.
    One `affine_grid` + `grid_sample` call for the whole batch, on x's device. Zoom and p draw their
    numbers only when used, so runs without them see the same random stream as before they existed.
    """
    b, _, h, w = x.shape
    u = torch.rand(b, 3, device=x.device, generator=generator) * 2 - 1
    angle = u[:, 0] * math.radians(aug.degrees)
    # Python numbers, not a tensor of (w, h): building one would copy to the GPU and wait for it every batch.
    tx = 2 * torch.round(u[:, 1] * aug.translate * w) / w  # whole pixels -> affine_grid's [-1, 1] units
    ty = 2 * torch.round(u[:, 2] * aug.translate * h) / h
    zoom = 1 + aug.scale * (torch.rand(b, device=x.device, generator=generator) * 2 - 1) if aug.scale else 1
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    # affine_grid maps output to input coordinates, so it takes the inverse of zoom-rotate-then-shift.
    theta = torch.stack(
        [
            torch.stack([cos, sin, -(cos * tx + sin * ty)], dim=1),
            torch.stack([-sin, cos, -(-sin * tx + cos * ty)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.p < 1:
        applied = torch.rand(b, device=x.device, generator=generator) < aug.p
        out = torch.where(applied[:, None, None, None], out, x)
    return out


class DeviceLoader:
    """A split held as one uint8 tensor on the device, served in shuffled, augmented batches.

    Shuffling is a `randperm` of indices, normalization and augmentation are whole-batch ops on
    the device: no per-image Python work. `generator` holds all of its randomness, so saving its
    state is enough to resume an epoch sequence exactly.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        device: torch.device,
        *,
        shuffle: bool,
        augment: Augment | None,
        seed: int = 0,
    ) -> None:
        self.images = images.to(device).unsqueeze(1)
        self.labels = labels.to(device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.mean = torch.tensor(MEAN, device=device)
        self.std = torch.tensor(STD, device=device)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.dataset = self.images  # len(loader.dataset) works as with a DataLoader

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n, device = len(self.labels), self.labels.device
        order = (
            torch.randperm(n, device=device, generator=self.generator)
            if self.shuffle
            else torch.arange(n, device=device)
        )
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx].float().div(255)  # the arithmetic of ToTensor ...
            if self.augment:
                x = random_affine(x, self.generator, self.augment)
            yield x.sub(self.mean).div(self.std), self.labels[idx]  # ... and of Normalize


@dataclass(frozen=True)
class DataConfig:
    root: str
    batch_size: int = 128
    loader: str = "fast"  # "fast" (DeviceLoader) or "classic" (torchvision DataLoader)
    subset: int | None = None  # train on the first N training images only
    val: int = 0  # hold out the last N training images and evaluate on them instead of the test set
    augment: Augment | None = Augment()  # None: no augmentation
    seed: int = 0
    download: bool = True


LOADERS = ("fast", "classic")


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


def split_indices(cfg: DataConfig, n_train: int) -> tuple[range, range | None]:
    """Training indices and (with --val) the held-out validation indices, never trained on."""
    if not 0 <= cfg.val < n_train:
        raise UserError(f"--val must be between 0 and {n_train - 1}, got {cfg.val}")
    train_end = n_train - cfg.val
    if cfg.subset is not None:
        if not 0 < cfg.subset <= train_end:
            raise UserError(f"--subset must be between 1 and {train_end}, got {cfg.subset}")
        train_end = cfg.subset
    return range(train_end), (range(n_train - cfg.val, n_train) if cfg.val else None)


def _rows(t: Tensor, r: range) -> Tensor:
    return t[r.start : r.stop]  # the splits are contiguous ranges: a view, no copy


def make_loaders(cfg: DataConfig, device: torch.device) -> tuple[object, object, str]:
    """(train loader, evaluation loader, name of the evaluation split: "test" or "val")."""
    train_x, train_y = load_mnist(cfg.root, train=True, download=cfg.download)
    train_idx, val_idx = split_indices(cfg, len(train_y))
    if val_idx is None:
        eval_x, eval_y = load_mnist(cfg.root, train=False, download=cfg.download)
        eval_idx, split = range(len(eval_y)), "test"
    else:
        eval_x, eval_y, eval_idx, split = train_x, train_y, val_idx, "val"

    if cfg.loader == "fast":
        train = DeviceLoader(
            _rows(train_x, train_idx),
            _rows(train_y, train_idx),
            cfg.batch_size,
            device,
            shuffle=True,
            augment=cfg.augment,
            seed=cfg.seed,
        )
        evaluate = DeviceLoader(
            _rows(eval_x, eval_idx), _rows(eval_y, eval_idx), TEST_BATCH_SIZE, device, shuffle=False, augment=None
        )
        return train, evaluate, split
    if cfg.loader != "classic":
        raise UserError(f"unknown loader '{cfg.loader}'; known: {', '.join(LOADERS)}")

    def dataset(train_split: bool, augment: Augment | None, idx: range) -> torch.utils.data.Dataset:
        ds = datasets.MNIST(cfg.root, train=train_split, transform=classic_transforms(augment))
        return torch.utils.data.Subset(ds, list(idx))

    workers = min(2, os.cpu_count() or 1)
    common = {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": False}
    train = torch.utils.data.DataLoader(
        dataset(True, cfg.augment, train_idx),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        **common,
    )
    evaluate = torch.utils.data.DataLoader(
        dataset(val_idx is not None, None, eval_idx), batch_size=TEST_BATCH_SIZE, shuffle=False, **common
    )
    return train, evaluate, split


# ---------------------------------------------------------------------------------------------
# Optimizer, train and test
# ---------------------------------------------------------------------------------------------
def make_optimizer(
    model: nn.Module, recipe: Recipe, epochs: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, bool]:
    """SGD + the recipe's schedule; the bool says whether to step the scheduler every batch."""
    if recipe.nesterov and not recipe.momentum > 0:
        raise UserError(f"Nesterov momentum needs a momentum above 0, got {recipe.momentum}")
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


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics.

    It smooths out the last epochs' noise: the averaged copy is what gets evaluated and saved,
    while training goes on with the live weights and never reads it. The decay ramps up as
    min(decay, (1 + n) / (10 + n)) over the first n updates, so early on the average follows the
    fast-changing weights instead of clinging to the random initial ones. The tensor pairs are
    listed once, so an update is one fused `lerp` over all of them (plus a copy of BatchNorm's
    batch counters), not a walk through two `state_dict`s every step.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values(), strict=True))
        self._floats = [list(t) for t in zip(*[p for p in pairs if p[0].is_floating_point()], strict=True)]
        self._counters = [list(t) for t in zip(*[p for p in pairs if not p[0].is_floating_point()], strict=True)]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the live model's current weights into the average (call after every optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(*self._floats, 1 - decay)
        if self._counters:
            torch._foreach_copy_(*self._counters)

    def state_dict(self) -> dict:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])  # copies into the listed tensors: the pairs stay valid
        self.updates = state["updates"]


def weight_average(model: nn.Module, recipe: Recipe) -> WeightAverage | None:
    """The recipe's weight average of `model`, or None when it trains without one."""
    return WeightAverage(model, recipe.ema) if recipe.ema else None


@dataclass
class Loss:
    """A recipe's training loss: cross-entropy with label smoothing, plus distillation from a teacher.

    With a teacher: (1 - w) * cross-entropy + w * T^2 * KL(teacher || student), both softened by
    the temperature T (Hinton et al.'s scaling keeps the term's gradients comparable across T).
    The teacher sees the same augmented batch, in eval mode, without gradients.
    """

    label_smoothing: float = 0.0
    teacher: nn.Module | None = None
    weight: float = 0.0
    temperature: float = 4.0

    def __call__(self, logits: Tensor, x: Tensor, y: Tensor) -> Tensor:
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if self.teacher is None or not self.weight:
            return loss
        t = self.temperature
        with torch.no_grad():
            target = F.log_softmax(self.teacher(x).float() / t, dim=1)
        student = F.log_softmax(logits.float() / t, dim=1)
        kl = F.kl_div(student, target, reduction="batchmean", log_target=True)
        return (1 - self.weight) * loss + self.weight * t * t * kl


def load_teacher(recipe: Recipe, data: DataConfig, device: torch.device) -> nn.Module:
    """The recipe's teacher, after checking it trained on exactly the images the student may see.

    A teacher must have held out the same validation images as the student (for a study: never
    the validation images; for a published run: all 60,000 training images) and the same subset.
    No run trains on the test set, so none can leak it.
    """
    from model import get_model

    path = Path(recipe.teacher)
    try:
        record = json.loads(path.read_text())
        config, weights = record["config"], record["weights"]
        with torch.random.fork_rng(devices=[]):  # the student draws the same numbers with or without a teacher
            model = get_model(record["model"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"teacher {path} is not a run record of train.py with weights: {first_line(err)}") from None
    seen = (config.get("val", 0), config.get("subset"))
    if seen != (data.val, data.subset):
        raise UserError(
            f"teacher {path} trained with --val {seen[0]} --subset {seen[1]}, the student with --val {data.val} "
            f"--subset {data.subset}: a teacher must train on exactly the images its student may see"
        )
    load_weights(model, path.parent / weights["file"], weights["sha256"])
    return model.to(device).eval().requires_grad_(False)


def make_loss(recipe: Recipe, data: DataConfig, device: torch.device) -> Loss:
    if recipe.distill_weight and not recipe.teacher:
        raise UserError("a distillation weight needs a teacher (--teacher RECORD)")
    teacher = load_teacher(recipe, data, device) if recipe.teacher else None
    return Loss(recipe.label_smoothing, teacher, recipe.distill_weight, recipe.distill_temperature)


class NonFiniteLoss(UserError):
    pass


def train(
    model: nn.Module,
    device: torch.device,
    loader,
    optimizer: torch.optim.Optimizer,
    batch_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    epoch: int = 1,
    progress: bool = True,
    average: WeightAverage | None = None,
    precision: str = "fp32",
    loss_fn: Loss | None = None,
) -> dict[str, float]:
    """One epoch of training; returns mean loss and accuracy (%) over the epoch.

    Running sums stay on the device and are read only every LOG_EVERY batches, so the loop
    does not wait for the GPU after each step. A NaN/inf loss stops training with
    NonFiniteLoss naming the first bad batch. With precision "bf16" the forward pass runs
    under bfloat16 autocast (weights, gradients and the optimizer stay float32).
    """
    model.train()
    layout = memory_format(precision)
    loss_fn = loss_fn or Loss()

    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(loader, total=len(loader), disable=not progress, desc=f"Epoch {epoch} Train", dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True).contiguous(memory_format=layout), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
            loss = loss_fn(logits, x, y)
        loss.backward()
        optimizer.step()
        if batch_scheduler is not None:
            batch_scheduler.step()
        if average is not None:
            average.update()
        loss = loss.detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i, first_bad)
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if (i + 1) % LOG_EVERY == 0 or i + 1 == len(loader):
            if first_bad.item() >= 0:
                bar.close()
                raise NonFiniteLoss(
                    f"loss became NaN/inf in epoch {epoch}, batch {first_bad.item()}; "
                    "lower --lr (the last good checkpoint is kept)"
                )
            bar.set_description(
                f"Epoch {epoch} Train: Loss={loss.item():.4f} Batch_id={i} Accuracy={100 * correct.item() / seen:.2f}"
            )
    return {"loss": loss_sum.item() / seen, "acc": 100 * correct.item() / seen}


@torch.no_grad()
def predict(model: nn.Module, device: torch.device, loader) -> tuple[Tensor, Tensor, Tensor]:
    """(per-sample loss, predicted class, true class) over a loader, on the CPU."""
    model.eval()
    losses, preds, targets = [], [], []
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        losses.append(F.cross_entropy(logits, y, reduction="none"))
        preds.append(logits.argmax(1))
        targets.append(y)
    return torch.cat(losses).cpu(), torch.cat(preds).cpu(), torch.cat(targets).cpu()


def test(model: nn.Module, device: torch.device, loader, split: str = "test", verbose: bool = True) -> dict[str, float]:
    """Mean loss and accuracy (%) on an evaluation split, printed the way the course logs do."""
    losses, preds, targets = predict(model, device, loader)
    correct, total = int((preds == targets).sum()), len(targets)
    stats = {"loss": losses.mean().item(), "acc": 100 * correct / total}
    if verbose:
        print(
            f"{split.capitalize()} set: Average loss: {stats['loss']:.4f}, "
            f"Accuracy: {correct}/{total} ({stats['acc']:.2f}%)"
        )
    return stats


@dataclass
class Run:
    """One training run: its model, weight average, optimizer, schedule, data and history so far.

    Built by `prepare` and trained by `fit`, the one path that `train.py`, `sweep.py`, `bench.py`
    and the notebook all take, so a speed-up, a recipe field or a fix reaches every caller.
    """

    model: nn.Module
    average: WeightAverage | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_batch: bool  # OneCycle steps every batch, StepLR every epoch
    train_loader: object
    eval_loader: object
    split: str  # "test" or "val"
    device: torch.device
    precision: str  # what training runs in: "bf16" or "fp32"
    loss: Loss
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
    average = weight_average(model, recipe)
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
        make_loss(recipe, data, device),
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
        average=run.average,
        precision=run.precision,
        loss_fn=run.loss,
    )


def run_epoch(run: Run, verbose: bool = True) -> dict[str, float]:
    """Train the next epoch, evaluate (the weight average, if any), step an epoch-wise scheduler.

    Returns the history row of that epoch, already appended to `run.history`.
    """
    start, epoch = time.perf_counter(), len(run.history) + 1
    lr = run.optimizer.param_groups[0]["lr"]
    tr = train_steps(run, run.train_loader, epoch, progress=verbose)
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


def fit(run: Run, on_epoch: Callable[[Run, dict], None] | None = None, verbose: bool = True) -> list[dict]:
    """Train the run's remaining epochs; after each, call `on_epoch(run, row)`.

    The callback is where callers differ: train.py checkpoints, sweep.py reports to the pruner
    (and may stop the run by raising), the notebook prints a line. Returns the whole history.
    """
    while len(run.history) < run.epochs:
        row = run_epoch(run, verbose)
        if on_epoch is not None:
            on_epoch(run, row)
    return run.history


# ---------------------------------------------------------------------------------------------
# Randomness and checkpoints
# ---------------------------------------------------------------------------------------------
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


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write via a temporary file in the same folder, flushed to disk, then renamed over `path`.

    A crash at any moment leaves either the old file or the new one, never half a file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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


def load_weights(model: nn.Module, path: str | os.PathLike, sha256: str | None = None) -> nn.Module:
    """Load weights saved by `save_weights` into `model`, after checking the file's SHA-256 if given."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read weights {path}: {err.strerror or err}") from None
    if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
        raise UserError(f"{path} has changed: its SHA-256 differs from the one its run recorded")
    try:
        model.load_state_dict(load(blob))
    except (SafetensorError, RuntimeError, ValueError) as err:
        raise UserError(f"{path} does not hold this net's weights: {first_line(err)}") from None
    return model


# ---------------------------------------------------------------------------------------------
# Model inspection
# ---------------------------------------------------------------------------------------------
def print_summary(model: nn.Module, input_size: tuple[int, int, int] = (1, 28, 28)) -> None:
    """torchsummary's table, run on a CPU copy so it moves no weights, BN statistics or RNG."""
    from torchsummary import summary

    with torch.random.fork_rng(devices=[]):
        summary(copy.deepcopy(model).cpu(), input_size, device="cpu")


@dataclass
class RFRow:
    layer: str
    size: int  # output side (px)
    channels: int
    rf: int  # receptive field of one output unit, in input pixels
    jump: int  # input pixels between neighbouring output units
    params: int  # of the layer and of the BatchNorm that follows it


def _describe(layer: nn.Module, channels: int) -> str:
    if isinstance(layer, nn.Conv2d):
        k = layer.kernel_size[0]
        pad = f", pad {layer.padding[0]}" if layer.padding[0] else ""
        depthwise = " depthwise" if layer.groups > 1 else ""
        return f"conv {k}x{k}{depthwise}{pad}, {layer.in_channels}->{layer.out_channels}"
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"{'max' if isinstance(layer, nn.MaxPool2d) else 'avg'}-pool {layer.kernel_size}x{layer.kernel_size}"
    if isinstance(layer, nn.Linear):
        return f"linear {layer.in_features}->{layer.out_features}"
    return f"global avg-pool ({channels} maps)"


def _applied_layers(module: nn.Module) -> Iterator[nn.Module]:
    """The leaf layers in the order data passes through them: a block shared `times` times, that often."""
    children = list(module.children())
    if not children:
        yield module
    for _ in range(getattr(module, "times", 1)):
        for child in children:
            yield from _applied_layers(child)


def receptive_field_table(model: nn.Module, size: int = 28, channels: int = 1) -> list[RFRow]:
    """Walk a sequential model and track, per layer, output size, receptive field and jump.

    n_out = (n_in + 2p - k) // s + 1,  rf_out = rf_in + (k - 1) * jump_in,  jump_out = jump_in * s.
    Global pooling and fully connected layers take in the whole map. BatchNorm parameters are
    added to the layer before them, and a block applied several times with shared weights (a
    `Repeat`) counts them at its first application only, so the column sums to the model's
    parameter count. A residual shortcut changes neither: the sum sees what its longer path sees.
    """
    rows: list[RFRow] = []
    rf, jump = 1, 1
    counted: set[int] = set()
    for layer in _applied_layers(model):
        params = 0 if id(layer) in counted else sum(p.numel() for p in layer.parameters())
        counted.add(id(layer))
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = (v[0] if isinstance(v, tuple) else v for v in (layer.kernel_size, layer.stride, layer.padding))
            size, rf, jump = (size + 2 * p - k) // s + 1, rf + (k - 1) * jump, jump * s
            channels = layer.out_channels if isinstance(layer, nn.Conv2d) else channels
        elif isinstance(layer, (nn.AdaptiveAvgPool2d, nn.Linear)):
            size, rf, jump = 1, rf + (size - 1) * jump, jump * size
            channels = layer.out_features if isinstance(layer, nn.Linear) else channels
        else:
            if params and rows:
                rows[-1].params += params
            continue
        rows.append(RFRow(_describe(layer, channels), size, channels, rf, jump, params))
    return rows


def format_rf_table(rows: list[RFRow], markdown: bool = False) -> str:
    """The table as aligned text (for print) or as Markdown (for the README)."""
    head = ("#", "layer", "output", "channels", "RF", "jump", "params")
    cells = [head] + [
        (str(i), r.layer, f"{r.size}x{r.size}", str(r.channels), str(r.rf), str(r.jump), f"{r.params:,}")
        for i, r in enumerate(rows, 1)
    ]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join([lines[0], "|" + "---|" * len(head), *lines[1:]])
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join(
        "  ".join(c[i].ljust(widths[i]) if i == 1 else c[i].rjust(widths[i]) for i in range(len(head))) for c in cells
    )


# ---------------------------------------------------------------------------------------------
# Run metadata
# ---------------------------------------------------------------------------------------------
CODE_FILES = ("*.py", "*.ipynb", "requirements*.txt")  # what decides a run's numbers


def git_commit() -> str:
    """The repository's HEAD, or $GIT_COMMIT, or 'unknown'; '+dirty' when tracked code differs from HEAD.

    Only code counts: a notebook run rewrites the tracked images while it runs, which does not
    change what ran.
    """
    import subprocess

    here = Path(__file__).parent
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
    """What a results/*.json file holds: enough to tell exactly what ran, where, and how it went."""
    from model import MODELS, count_parameters

    return {
        "model": model_name,
        "params": count_parameters(model),
        "budget": MODELS[model_name].budget,
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
# Plots (each returns its figure, and saves a PNG when given a path)
# ---------------------------------------------------------------------------------------------
def _finish(fig, path: str | os.PathLike | None):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _digit_grid(images: Tensor, titles: list[str], cols: int, suptitle: str, colors: list[str] | None = None):
    import matplotlib.pyplot as plt

    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.55 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.flat, images, strict=False)):
        ax.imshow(img.squeeze().cpu().numpy(), cmap="gray_r")
        ax.set_title(titles[i], fontsize=9, color=(colors or ["black"] * len(titles))[i])
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def plot_samples(
    images: Tensor,
    labels: Tensor,
    path: str | os.PathLike | None = None,
    n: int = 24,
    title: str = "Training samples (augmented) with their labels",
):
    """A grid of the first n images (raw or normalized) with their labels."""
    return _finish(_digit_grid(images[:n], [f"label {int(v)}" for v in labels[:n]], 8, title), path)


def plot_misclassified(
    images: Tensor,
    preds: Tensor,
    targets: Tensor,
    path: str | os.PathLike | None = None,
    n: int = 24,
    title: str = "Misclassified test images",
):
    """The first n test images the model got wrong: true label and prediction above each."""
    wrong = (preds != targets).nonzero().flatten()[:n]
    titles = [f"true {int(targets[i])} / pred {int(preds[i])}" for i in wrong]
    return _finish(
        _digit_grid(
            images[wrong],
            titles,
            6,
            f"{title} ({int((preds != targets).sum())} in all)",
            colors=["firebrick"] * len(titles),
        ),
        path,
    )


def plot_curves(history: list[dict], path: str | os.PathLike | None = None, title: str = "", target: float = 99.4):
    """Loss and accuracy per epoch, train against the evaluation split, with the target line."""
    import matplotlib.pyplot as plt

    split = "val" if "val_acc" in history[0] else "test"
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], "s-", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="Loss")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [h[f"{split}_acc"] for h in history], "s-", label=split)
    ax_acc.axhline(target, color="gray", ls="--", lw=1, label=f"target {target}%")
    low = min(min(h["train_acc"], h[f"{split}_acc"]) for h in history[len(history) // 3 :])
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy", ylim=(max(low - 0.3, 90), 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def plot_confusion(preds: Tensor, targets: Tensor, path: str | os.PathLike | None = None, title: str = ""):
    """Counts of true (rows) against predicted (columns) class; colour marks the errors only."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cm = torch.zeros(10, 10, dtype=torch.long)
    cm.index_put_((targets, preds), torch.ones_like(targets), accumulate=True)
    off = cm.clone().fill_diagonal_(0)
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    im = ax.imshow(off.numpy(), cmap="Reds")
    for (t, p), v in zip(itertools.product(range(10), range(10)), cm.flatten().tolist(), strict=True):
        if v or t == p:  # empty cells stay blank, so the errors stand out
            shade = "gray" if t == p else ("white" if v > off.max() / 2 else "black")
            ax.text(p, t, str(v), ha="center", va="center", fontsize=8, color=shade)
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted class",
        ylabel="true class",
        title=title or f"Confusion matrix ({int(off.sum())} errors of {int(cm.sum())})",
    )
    fig.colorbar(im, ax=ax, label="misclassified count", ticks=MaxNLocator(integer=True))
    fig.tight_layout()
    return _finish(fig, path)
