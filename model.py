"""Parameter-budgeted MNIST CNNs, looked up by name with `get_model`.

Every budgeted net is an `nn.Sequential` of 3x3/1x1 convolutions, each followed
by BatchNorm, ReLU and Dropout, and ends in a 1x1 convolution to 10 channels and
global average pooling: no fully connected head. Being sequential lets
`utils.receptive_field_table` walk a net layer by layer.
"""

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


def conv_block(c_in: int, c_out: int, kernel: int = 3, padding: int = 0, dropout: float = 0.0) -> nn.Sequential:
    """Conv (no bias: BatchNorm supplies it) -> BatchNorm -> ReLU [-> Dropout]."""
    layers = [nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.Dropout(dropout)] if dropout else []))


def transition(c_in: int, c_out: int) -> nn.Sequential:
    """MaxPool halves the map; the 1x1 conv squeezes channels before the next block."""
    return nn.Sequential(nn.MaxPool2d(2), conv_block(c_in, c_out, kernel=1))


def gap_head(c_in: int, classes: int = 10) -> nn.Sequential:
    """1x1 conv to one map per class, then global average pooling to logits."""
    return nn.Sequential(nn.Conv2d(c_in, classes, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class BudgetNet(nn.Sequential):
    """Two conv blocks at full resolution, a transition, three conv blocks, a GAP head.

    Maps: 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> 6 -> GAP. Receptive field 18 px at the
    last conv; GAP then pools over the whole digit. Dropout sits on the small maps only: at full
    resolution its masks cost half of a CPU training step, and augmentation regularizes there.
    """

    def __init__(self, widths: tuple[int, int, int, int, int, int], dropout: float) -> None:
        c1, c2, t, c3, c4, c5 = widths
        super().__init__(
            conv_block(1, c1),
            conv_block(c1, c2),
            transition(c2, t),
            conv_block(t, c3, dropout=dropout),
            conv_block(c3, c4, dropout=dropout),
            conv_block(c4, c5, dropout=dropout),
            gap_head(c5),
        )


class Baseline(nn.Sequential):
    """The 593,200-parameter "before" CNN: convs 32-64-128-256, FC 4096 -> 50 -> 10."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3),
            nn.ReLU(),
            nn.Conv2d(128, 256, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4096, 50),
            nn.ReLU(),
            nn.Linear(50, 10),
        )


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[], nn.Module]
    budget: int | None  # strict upper bound on parameters; None = unbudgeted
    about: str


MODELS: dict[str, ModelSpec] = {
    "baseline": ModelSpec(Baseline, None, 'the "before": convs 32-64-128-256, FC 4096 -> 50 -> 10, no BatchNorm'),
    "s6": ModelSpec(
        lambda: BudgetNet((16, 32, 16, 16, 32, 16), dropout=0.05),
        20_000,
        "conv 16-32, max-pool + 1x1 to 16, conv 16-32-16, 1x1 to 10, GAP",
    ),
    "s7_10k": ModelSpec(
        lambda: BudgetNet((10, 20, 10, 16, 16, 20), dropout=0.05),
        10_000,
        "the same shape, widths 10-20 / 10 / 16-16-20",
    ),
    "s7_8k": ModelSpec(
        lambda: BudgetNet((8, 16, 8, 16, 16, 16), dropout=0.03), 8_000, "the same shape, widths 8-16 / 8 / 16-16-16"
    ),
    "s7_5k": ModelSpec(
        lambda: BudgetNet((8, 12, 8, 12, 12, 14), dropout=0.02), 5_000, "the same shape, widths 8-12 / 8 / 12-12-14"
    ),
}


def get_model(name: str) -> nn.Module:
    """Build a fresh model by registry name; an unknown name lists the known ones."""
    if name not in MODELS:
        raise KeyError(f"unknown model '{name}'; known models: {', '.join(MODELS)}")
    return MODELS[name].build()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    for name, spec in MODELS.items():
        budget = f"< {spec.budget:,}" if spec.budget else "-"
        print(f"{name:10s} {count_parameters(get_model(name)):>8,} params  budget {budget:>8s}  {spec.about}")
