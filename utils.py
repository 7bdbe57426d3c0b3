"""The course's helpers: MNIST and its augmentation, the train and test loops, the model's summary and
receptive field, and plots. With `model.py` it is all the notebook needs: upload the two to Colab.

The data settings sit at the top; each net's training recipe is in `train.py`, and the notebook writes
the < 20k net's out where a student sees it.
"""

import contextlib
import copy
import hashlib
import itertools
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import datasets, transforms
from tqdm import tqdm  # text bars: readable in a terminal, a log and a saved notebook alike

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
MEAN, STD = 0.1307, 0.3081  # pixel mean / std over the 60k MNIST training images
TEST_BATCH_SIZE = 1000  # evaluation has no gradients: large batches are free speed
LOG_EVERY = 20  # batches between progress-bar updates (each one syncs with the device)
DATA_DIR = os.environ.get("MNIST_ROOT", str(Path(__file__).resolve().parent / "data"))  # holds MNIST/raw


@dataclass(frozen=True)
class Augment:
    """A random affine map per training image, as `RandomApply([RandomAffine(...)], p)` draws it; then, on
    every image, brightness and contrast as `ColorJitter` draws them, one after the other."""

    degrees: float = 7.0  # rotation uniform in [-degrees, degrees]
    translate: float = 0.05  # shift uniform up to this fraction of the side, rounded to whole pixels
    scale: float = 0.0  # zoom uniform in [1 - scale, 1 + scale]
    p: float = 1.0  # probability that the affine map is applied at all
    brightness: float = 0.0  # pixels times a factor uniform in [1 - brightness, 1 + brightness], clipped to [0, 1]
    contrast: float = 0.0  # distance from the image's mean times a factor in [1 - contrast, 1 + contrast], clipped


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


def memory_format(precision: str) -> torch.memory_format:
    """bf16 convolutions ran fastest channels-last on the 2-core CPU (lab/bench.py); fp32 keeps the default."""
    return torch.channels_last if precision == "bf16" else torch.contiguous_format


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
        # one ColorJitter each, so that brightness always comes first, as on the device
        steps += [transforms.ColorJitter(brightness=augment.brightness)] if augment.brightness else []
        steps += [transforms.ColorJitter(contrast=augment.contrast)] if augment.contrast else []
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


def random_jitter(x: Tensor, generator: torch.Generator, aug: Augment) -> Tensor:
    """Brightness, then contrast, of each image of a (B, 1, H, W) batch in [0, 1], as `ColorJitter` draws them.

    Brightness scales the pixels; contrast scales each pixel's distance from the image's mean. Each
    draws its numbers only when used, so runs without it see the same random stream as before.
    """
    b = x.shape[0]
    for strength, contrast in ((aug.brightness, False), (aug.contrast, True)):
        if strength:
            factor = 1 + strength * (torch.rand(b, 1, 1, 1, device=x.device, generator=generator) * 2 - 1)
            base = x.mean(dim=(1, 2, 3), keepdim=True) if contrast else 0
            x = ((x - base) * factor + base).clamp(0, 1)
    return x


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
                x = random_jitter(random_affine(x, self.generator, self.augment), self.generator, self.augment)
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
# Train and test
# ---------------------------------------------------------------------------------------------
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
    after_step: Callable[[], None] | None = None,
    precision: str = "fp32",
    loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
) -> dict[str, float]:
    """One epoch of training; returns mean loss and accuracy (%) over the epoch.

    Running sums stay on the device and are read only every LOG_EVERY batches, so the loop
    does not wait for the GPU after each step. A NaN/inf loss stops training with
    NonFiniteLoss naming the first bad batch. With precision "bf16" the forward pass runs
    under bfloat16 autocast (weights, gradients and the optimizer stay float32).
    """
    model.train()
    layout = memory_format(precision)
    loss_fn = loss_fn or (lambda logits, x, y: F.cross_entropy(logits, y))

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
        if after_step is not None:
            after_step()
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


# ---------------------------------------------------------------------------------------------
# Weights, summary and receptive field
# ---------------------------------------------------------------------------------------------
_TENSOR_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


def _by_position(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Weights saved under nn.Sequential's positional names ("3.1.bias"), renamed to the model's own.

    The course nets were first built as sequences of layers; their classes list the same layers in
    the same order, so the k-th saved tensor is the model's k-th. Left as saved on any mismatch of
    count or shape, for `load_state_dict` to report.
    """

    def position(key: str) -> tuple[list[int], int]:
        *path, tensor = key.split(".")
        return [int(p) if p.isdigit() else -1 for p in path], _TENSOR_ORDER.get(tensor, len(_TENSOR_ORDER))

    own, saved = model.state_dict(), sorted(state, key=position)
    if len(saved) != len(own) or any(state[k].shape != v.shape for k, v in zip(saved, own.values(), strict=True)):
        return state
    return {name: state[key] for name, key in zip(own, saved, strict=True)}


def load_weights(model: nn.Module, path: str | os.PathLike, sha256: str | None = None) -> nn.Module:
    """Load a run's saved weights (safetensors: no code runs on load), after checking the file's SHA-256 if given."""
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
        state = load(blob)
        model.load_state_dict(state if state.keys() == model.state_dict().keys() else _by_position(state, model))
    except (SafetensorError, RuntimeError, ValueError) as err:
        raise UserError(f"{path} does not hold this net's weights: {first_line(err)}") from None
    return model


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


def _applied_layers(model: nn.Module, size: int, channels: int) -> list[nn.Module]:
    """The leaf layers in the order one image passes through them: a block shared n times, n times.

    Found by running a blank image through a CPU copy, so a class with its own `forward` reads like
    a sequence of layers; the model itself, its weights and the random streams are left alone.
    """
    probe, calls = copy.deepcopy(model).cpu().float().eval(), []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in probe.modules() if not any(m.children())]
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        probe(torch.zeros(1, channels, size, size))
    for hook in hooks:
        hook.remove()
    return calls


def receptive_field_table(model: nn.Module, size: int = 28, channels: int = 1) -> list[RFRow]:
    """Per layer the data passes through: output size, receptive field, jump and parameters.

    n_out = (n_in + 2p - k) // s + 1,  rf_out = rf_in + (k - 1) * jump_in,  jump_out = jump_in * s.
    Global pooling and fully connected layers take in the whole map. BatchNorm parameters are
    added to the layer before them, and a block applied several times with shared weights counts
    them at its first application only, so the column sums to the model's parameter count. A
    residual shortcut changes neither: the sum sees what its longer path sees.
    """
    rows: list[RFRow] = []
    rf, jump = 1, 1
    counted: set[int] = set()
    for layer in _applied_layers(model, size, channels):
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
