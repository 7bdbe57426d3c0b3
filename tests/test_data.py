import math

import numpy as np
import pytest
import torch
from conftest import write_idx
from PIL import Image

from utils import (
    AUG_DEGREES,
    AUG_TRANSLATE,
    MEAN,
    MNIST_FILES,
    STD,
    DataConfig,
    DeviceLoader,
    UserError,
    classic_transforms,
    load_mnist,
    make_loaders,
    random_affine,
)


def test_synthetic_idx_files_load_through_torchvision(synthetic_root):
    images, labels = load_mnist(synthetic_root, train=True, download=False)
    assert images.shape == (512, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= set(range(10))
    # class k has its bright bar at rows 4+2k..5+2k, as written by the fixture
    k = int(labels[0])
    assert images[0, 4 + 2 * k, 10] == 255


def test_truncated_file_is_named_in_the_error(synthetic_root):
    path = synthetic_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="train-images-idx3-ubyte is truncated"):
        load_mnist(synthetic_root, train=True, download=False)


def test_canonical_file_with_wrong_checksum_is_refused(synthetic_root):
    name = "t10k-labels-idx1-ubyte"
    assert MNIST_FILES[name][1] == 8 + 10_000  # full-size file: its MD5 is known and checked
    write_idx(synthetic_root / "MNIST" / "raw" / name, np.zeros(10_000, dtype=np.uint8))
    with pytest.raises(UserError, match=f"{name} is damaged: its MD5"):
        load_mnist(synthetic_root, train=False, download=False)


def test_missing_data_names_the_flag(tmp_path):
    with pytest.raises(UserError, match="--data-dir"):
        load_mnist(tmp_path, train=True, download=False)


def test_fast_loader_without_augmentation_equals_totensor_normalize(synthetic_root):
    images, labels = load_mnist(synthetic_root, train=True, download=False)
    fast = DeviceLoader(images, labels, 100, torch.device("cpu"), shuffle=False, augment=False)
    x_fast = torch.cat([x for x, _ in fast])
    y_fast = torch.cat([y for _, y in fast])
    classic = classic_transforms(augment=False)
    x_classic = torch.stack([classic(Image.fromarray(img.numpy(), mode="L")) for img in images])
    assert torch.equal(x_fast, x_classic)
    assert torch.equal(y_fast, labels)


def test_both_loaders_serve_the_same_split_sizes(synthetic_root):
    for kind in ("fast", "classic"):
        cfg = DataConfig(root=str(synthetic_root), batch_size=64, loader=kind, subset=300, val=100, download=False)
        train, evaluate, split = make_loaders(cfg, torch.device("cpu"))
        assert split == "val"
        assert sum(len(y) for _, y in train) == 300
        assert sum(len(y) for _, y in evaluate) == 100


def bar_image(batch: int) -> torch.Tensor:
    """A thin horizontal bar through the centre: its angle and position are easy to measure."""
    x = torch.zeros(batch, 1, 28, 28)
    x[:, :, 13:15, 4:24] = 1.0
    return x


def measure(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orientation (degrees, from second moments) and centroid offset (pixels) of each image."""
    w = images.squeeze(1).clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = w.sum((1, 2))
    cy, cx = (w * ys).sum((1, 2)) / mass, (w * xs).sum((1, 2)) / mass
    dy, dx = ys - cy[:, None, None], xs - cx[:, None, None]
    mu20, mu02, mu11 = (w * dx * dx).sum((1, 2)), (w * dy * dy).sum((1, 2)), (w * dx * dy).sum((1, 2))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * mu11, mu20 - mu02))
    return angle, torch.stack([cx - 13.5, cy - 13.5], 1)


def test_augmentation_stays_in_range_and_differs_per_sample():
    out = random_affine(bar_image(512), torch.Generator().manual_seed(0))
    angle, shift = measure(out)
    max_shift = round(AUG_TRANSLATE * 28)
    assert angle.abs().max() <= AUG_DEGREES + 0.5
    assert shift.abs().max() <= max_shift + 0.3
    assert angle.abs().max() > AUG_DEGREES - 1  # the whole range is used ...
    assert (angle > 1).any() and (angle < -1).any()  # ... in both directions
    assert len(torch.unique(angle.round(decimals=2))) > 400  # each sample draws its own transform


def test_augmentation_matches_the_classic_randomaffine_distribution():
    torch.manual_seed(0)
    classic = classic_transforms(augment=True)
    pil = Image.fromarray((bar_image(1)[0, 0] * 255).byte().numpy(), mode="L")
    classic_out = torch.stack([classic(pil) for _ in range(512)]) * STD + MEAN  # undo Normalize
    fast_angle, fast_shift = measure(random_affine(bar_image(512), torch.Generator().manual_seed(1)))
    classic_angle, classic_shift = measure(classic_out)
    # |angle| is uniform on [0, 7]: mean 3.5, standard error of each mean ~0.09
    assert fast_angle.abs().mean().item() == pytest.approx(AUG_DEGREES / 2, abs=0.4)
    assert fast_angle.abs().mean().item() == pytest.approx(classic_angle.abs().mean().item(), abs=0.5)
    assert fast_shift.abs().mean().item() == pytest.approx(classic_shift.abs().mean().item(), abs=0.15)


def test_device_loader_augments_each_epoch_differently():
    loader = DeviceLoader(
        torch.zeros(64, 28, 28, dtype=torch.uint8) + (bar_image(64)[:, 0] * 255).byte(),
        torch.zeros(64, dtype=torch.long),
        64,
        torch.device("cpu"),
        shuffle=True,
        augment=True,
    )
    first, second = (next(iter(loader))[0] for _ in range(2))
    assert not torch.equal(first, second)
    assert math.isclose(first.mean().item(), second.mean().item(), rel_tol=0.05)
