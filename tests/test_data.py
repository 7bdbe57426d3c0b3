import math

import numpy as np
import pytest
import torch
from conftest import write_idx
from PIL import Image

from utils import (
    MEAN,
    MNIST_FILES,
    STD,
    Augment,
    DataConfig,
    DeviceLoader,
    UserError,
    classic_transforms,
    load_mnist,
    make_loaders,
    random_affine,
    random_jitter,
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
    fast = DeviceLoader(images, labels, 100, torch.device("cpu"), shuffle=False, augment=None)
    x_fast = torch.cat([x for x, _ in fast])
    y_fast = torch.cat([y for _, y in fast])
    classic = classic_transforms(augment=None)
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


def length(images: torch.Tensor) -> torch.Tensor:
    """Spread of each image's mass along x (a horizontal bar's length, up to a constant)."""
    w = images.squeeze(1).clamp(min=0)
    xs = torch.arange(28.0)
    mass = w.sum((1, 2))
    cx = (w * xs).sum((1, 2)) / mass
    return ((w * (xs - cx[:, None, None]) ** 2).sum((1, 2)) / mass).sqrt()


def test_augmentation_stays_in_range_and_differs_per_sample():
    aug = Augment()
    out = random_affine(bar_image(512), torch.Generator().manual_seed(0), aug)
    angle, shift = measure(out)
    max_shift = round(aug.translate * 28)
    assert angle.abs().max() <= aug.degrees + 0.5
    assert shift.abs().max() <= max_shift + 0.3
    assert angle.abs().max() > aug.degrees - 1  # the whole range is used ...
    assert (angle > 1).any() and (angle < -1).any()  # ... in both directions
    assert len(torch.unique(angle.round(decimals=2))) > 400  # each sample draws its own transform


def classic_bars(aug: Augment, n: int) -> torch.Tensor:
    """n draws of the torchvision pipeline on one bar image, Normalize undone."""
    torch.manual_seed(0)
    classic = classic_transforms(aug)
    pil = Image.fromarray((bar_image(1)[0, 0] * 255).byte().numpy(), mode="L")
    return torch.stack([classic(pil) for _ in range(n)]) * STD + MEAN


def test_augmentation_matches_the_classic_randomaffine_distribution():
    aug = Augment()
    fast_angle, fast_shift = measure(random_affine(bar_image(512), torch.Generator().manual_seed(1), aug))
    classic_angle, classic_shift = measure(classic_bars(aug, 512))
    # |angle| is uniform on [0, 7]: mean 3.5, standard error of each mean ~0.09
    assert fast_angle.abs().mean().item() == pytest.approx(aug.degrees / 2, abs=0.4)
    assert fast_angle.abs().mean().item() == pytest.approx(classic_angle.abs().mean().item(), abs=0.5)
    assert fast_shift.abs().mean().item() == pytest.approx(classic_shift.abs().mean().item(), abs=0.15)


def test_device_loader_augments_each_epoch_differently():
    loader = DeviceLoader(
        torch.zeros(64, 28, 28, dtype=torch.uint8) + (bar_image(64)[:, 0] * 255).byte(),
        torch.zeros(64, dtype=torch.long),
        64,
        torch.device("cpu"),
        shuffle=True,
        augment=Augment(),
    )
    first, second = (next(iter(loader))[0] for _ in range(2))
    assert not torch.equal(first, second)
    assert math.isclose(first.mean().item(), second.mean().item(), rel_tol=0.05)


def test_zoom_is_uniform_in_its_range_as_in_randomaffine():
    aug = Augment(degrees=0, translate=0, scale=0.15)
    base = length(bar_image(1))
    fast = length(random_affine(bar_image(1024), torch.Generator().manual_seed(2), aug)) / base
    classic = length(classic_bars(aug, 512)) / base
    assert fast.min() > 1 - aug.scale - 0.03 and fast.max() < 1 + aug.scale + 0.03
    assert fast.min() < 1 - aug.scale + 0.03 and fast.max() > 1 + aug.scale - 0.03  # the whole range is used
    # uniform on [0.85, 1.15]: mean 1, standard deviation 0.15 / sqrt(3) = 0.087
    assert fast.mean().item() == pytest.approx(1.0, abs=0.01)
    assert fast.std().item() == pytest.approx(aug.scale / math.sqrt(3), abs=0.01)
    assert fast.mean().item() == pytest.approx(classic.mean().item(), abs=0.015)
    assert fast.std().item() == pytest.approx(classic.std().item(), abs=0.015)


def test_each_image_is_transformed_with_probability_p_and_otherwise_left_exact():
    aug = Augment(degrees=10, translate=0.1, scale=0.1, p=0.3)
    images = bar_image(2000)
    out = random_affine(images, torch.Generator().manual_seed(3), aug)
    untouched = (out == images).flatten(1).all(1).float()
    # binomial(2000, 0.7): standard deviation of the fraction ~0.01
    assert untouched.mean().item() == pytest.approx(1 - aug.p, abs=0.04)
    classic_untouched = (classic_bars(aug, 500) - bar_image(500)).abs().flatten(1).amax(1) < 1e-5
    assert classic_untouched.float().mean().item() == pytest.approx(1 - aug.p, abs=0.08)


def test_default_augmentation_draws_the_same_random_numbers_as_before_zoom_and_p_existed():
    """Runs published before zoom and p existed must reproduce: one rand(B, 3) per batch, nothing more."""
    after_call, after_draw = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    random_affine(bar_image(64), after_call, Augment())
    torch.rand(64, 3, generator=after_draw)
    assert torch.equal(after_call.get_state(), after_draw.get_state())


def test_jitter_without_strength_draws_nothing_and_changes_nothing():
    generator, untouched = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    images = bar_image(16)
    assert torch.equal(random_jitter(images, generator, Augment()), images)
    assert torch.equal(generator.get_state(), untouched.get_state())  # runs before jitter existed replay


def test_brightness_scales_each_image_by_its_own_factor_within_its_range_as_colorjitter():
    aug = Augment(degrees=0, translate=0, brightness=0.4)
    images = bar_image(1024) * 0.5  # no pixel above 0.5: nothing clips at factors up to 1.4
    bright = images.flatten(1).amax(1)
    factor = random_jitter(images, torch.Generator().manual_seed(7), aug).flatten(1).amax(1) / bright
    assert factor.min() > 0.6 - 1e-6 and factor.max() < 1.4 + 1e-6
    assert factor.min() < 0.62 and factor.max() > 1.38 and len(torch.unique(factor.round(decimals=4))) > 900
    assert factor.mean().item() == pytest.approx(1.0, abs=0.03)  # uniform on [0.6, 1.4]
    # on the full-bright bar both clip at 1: the brightest pixel is min(factor, 1), 0.9 on average
    fast = random_jitter(bar_image(1024), torch.Generator().manual_seed(7), aug).flatten(1).amax(1)
    classic = classic_bars(aug, 400).flatten(1).amax(1)
    assert fast.mean().item() == pytest.approx(0.9, abs=0.01)
    assert classic.mean().item() == pytest.approx(fast.mean().item(), abs=0.02)


def test_contrast_scales_each_pixels_distance_from_its_images_mean():
    aug = Augment(degrees=0, translate=0, contrast=0.3)
    images = 0.3 + 0.4 * bar_image(256)  # pixels in [0.3, 0.7]: nothing clips at factors up to 1.3
    out = random_jitter(images, torch.Generator().manual_seed(8), aug)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(out.mean(dim=(1, 2, 3), keepdim=True), mean, atol=1e-5)  # the mean stays
    factor = ((out - mean).flatten(1).std(1) / (images - mean).flatten(1).std(1)).squeeze()
    assert factor.min() > 0.7 - 1e-4 and factor.max() < 1.3 + 1e-4 and factor.std() > 0.1
    steps = [type(t).__name__ for t in classic_transforms(aug).transforms]
    assert steps == ["RandomAffine", "ColorJitter", "ToTensor", "Normalize"]
