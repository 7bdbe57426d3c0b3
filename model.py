"""Parameter-budgeted MNIST CNNs, looked up by name with `get_model`.

Every budgeted net is built by `Net` from a short layer string, read left to right:

    "8p"   3x3 convolution to 8 maps, padded (the side stays)
    "8"    3x3 convolution to 8 maps, unpadded (the side shrinks by 2)
    "t8"   1x1 convolution to 8 maps (a "transition" that mixes or squeezes channels)
    "M"    2x2 max-pool (the side halves)

Each convolution is followed by BatchNorm and ReLU, each 3x3 convolution after the first pool
also by Dropout, and every net ends in a 1x1 convolution to 10 maps and global average pooling:
no fully connected head. Being sequential lets `utils.receptive_field_table` walk a net layer
by layer.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

TOKEN = re.compile(r"^(?:M|t[1-9]\d*|[1-9]\d*p?)$")


def conv_block(c_in: int, c_out: int, kernel: int = 3, padding: int = 0, dropout: float = 0.0) -> nn.Sequential:
    """Conv (no bias: BatchNorm supplies it) -> BatchNorm -> ReLU [-> Dropout]."""
    layers = [nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.Dropout(dropout)] if dropout else []))


def gap_head(c_in: int, classes: int = 10) -> nn.Sequential:
    """1x1 conv to one map per class, then global average pooling to logits."""
    return nn.Sequential(nn.Conv2d(c_in, classes, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class Net(nn.Sequential):
    """A budgeted CNN from a layer string such as "16 32 M t16 16 32 16" (see the module docstring).

    Dropout sits on the maps after the first pool only: at full resolution its masks cost half of
    a CPU training step, and augmentation regularizes there.
    """

    def __init__(self, layers: str, dropout: float = 0.0, size: int = 28) -> None:
        blocks: list[nn.Module] = []
        channels, pooled = 1, False
        for token in layers.split():
            if not TOKEN.match(token):
                raise ValueError(f"bad layer '{token}' in '{layers}': use 8p, 8, t8 or M")
            if token == "M":
                blocks.append(nn.MaxPool2d(2))
                size, pooled = size // 2, True
            elif token.startswith("t"):
                blocks.append(conv_block(channels, int(token[1:]), kernel=1))
                channels = int(token[1:])
            else:
                padded, width = token.endswith("p"), int(token.rstrip("p"))
                blocks.append(conv_block(channels, width, padding=int(padded), dropout=dropout if pooled else 0.0))
                channels, size = width, size if padded else size - 2
            if size < 1:
                raise ValueError(f"'{layers}' shrinks the image to nothing at '{token}'")
        super().__init__(*blocks, gap_head(channels))
        self.layers, self.dropout = layers, dropout


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


def budgeted(layers: str, dropout: float, budget: int) -> ModelSpec:
    return ModelSpec(lambda: Net(layers, dropout), budget, f"`{layers}`, dropout {dropout:.3g}")


MODELS: dict[str, ModelSpec] = {
    "baseline": ModelSpec(Baseline, None, 'the "before": convs 32-64-128-256, FC 4096 -> 50 -> 10, no BatchNorm'),
    "s6": budgeted("16 32 M t16 16 32 16", dropout=0.05, budget=20_000),
    "s7_10k": budgeted("10 20 M t10 16 16 20", dropout=0.05, budget=10_000),
    # Searched: the best trial of a sweep.py study on the validation split (results/validation/budget-*.json).
    "s7_8k": budgeted("4p 4p 4p M 12p 12p 12p M 10p 10p 10p", dropout=0.0019127488151920672, budget=8_000),
    "s7_4k": budgeted("4p 4p 4p M 8p 8p 8p M 8p 8p 8p", dropout=0.01, budget=4_000),  # also best at < 5k
    "s7_3k": budgeted("6p 6p M 6p 6p M 6p 6p", dropout=0.040805315978710795, budget=3_000),
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
