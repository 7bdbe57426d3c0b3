"""The course's MNIST CNNs, each a class you can read top to bottom.

    S6        < 20,000 parameters: the first net of the course (17,200)
    S7_10k    < 10,000: S6's layers, narrower (9,098)
    S8_8k     < 8,000: padded, with two residual shortcuts and separable convolutions (7,104)
    S9_20k    < 20,000: the notebook's net, searched for holding on every seed and for speed (15,080)
    S9_10k    < 10,000: searched the same way (8,173)
    S9_8k     < 8,000: searched the same way (5,901)
    Baseline  the 593,200-parameter "before" net the course starts from

Every budgeted net is convolution -> BatchNorm -> ReLU (-> Dropout after the first pool), two
max-pools, and a 1x1 convolution to 10 maps averaged over the image (GAP): no fully connected
layer. Comments give each layer's output side and receptive field (RF) in input pixels.
`MODELS` maps the names used by `train.py` and in `results/` to the classes.
"""

import torch.nn.functional as F
from torch import Tensor, nn


class Baseline(nn.Module):
    """The "before": convolutions 32-64-128-256 and a 4096 -> 50 -> 10 classifier, no BatchNorm."""

    budget = None

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)  # 28 -> 26
        self.conv2 = nn.Conv2d(32, 64, 3)  # 26 -> 24, pool -> 12
        self.conv3 = nn.Conv2d(64, 128, 3)  # 12 -> 10
        self.conv4 = nn.Conv2d(128, 256, 3)  # 10 -> 8, pool -> 4
        self.fc1 = nn.Linear(256 * 4 * 4, 50)
        self.fc2 = nn.Linear(50, 10)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(F.relu(self.conv2(F.relu(self.conv1(x)))))
        x = self.pool(F.relu(self.conv4(F.relu(self.conv3(x)))))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class S6(nn.Module):
    """< 20k: two 3x3 convolutions, a pool, a 1x1 squeeze, three 3x3 convolutions, a 1x1 to 10, GAP."""

    budget = 20_000
    widths = (16, 32, 16, 16, 32, 16)  # conv1, conv2, the 1x1 squeeze, conv3, conv4, conv5

    def __init__(self, dropout: float = 0.05) -> None:
        super().__init__()
        c1, c2, squeeze, c3, c4, c5 = self.widths
        self.conv1 = nn.Conv2d(1, c1, 3, bias=False)  # 28 -> 26, RF 3 (BatchNorm supplies the bias)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, bias=False)  # 26 -> 24, RF 5; max-pool -> 12, RF 6
        self.bn2 = nn.BatchNorm2d(c2)
        self.squeeze = nn.Conv2d(c2, squeeze, 1, bias=False)  # 12, RF 6: mixes the maps, halves them
        self.bn3 = nn.BatchNorm2d(squeeze)
        self.conv3 = nn.Conv2d(squeeze, c3, 3, bias=False)  # 12 -> 10, RF 10
        self.bn4 = nn.BatchNorm2d(c3)
        self.conv4 = nn.Conv2d(c3, c4, 3, bias=False)  # 10 -> 8, RF 14
        self.bn5 = nn.BatchNorm2d(c4)
        self.conv5 = nn.Conv2d(c4, c5, 3, bias=False)  # 8 -> 6, RF 18
        self.bn6 = nn.BatchNorm2d(c5)
        self.head = nn.Conv2d(c5, 10, 1, bias=False)  # 6 -> 6: one map per class, then GAP -> 10 logits
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)  # global average pooling: each class map -> one logit
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(self.bn3(self.squeeze(x)))
        x = self.dropout(F.relu(self.bn4(self.conv3(x))))
        x = self.dropout(F.relu(self.bn5(self.conv4(x))))
        x = self.dropout(F.relu(self.bn6(self.conv5(x))))
        return self.gap(self.head(x)).flatten(1)


class S7_10k(S6):  # named as its runs are: s7_10k
    """< 10k: the same layers as S6 with fewer maps."""

    budget = 10_000
    widths = (10, 20, 10, 16, 16, 20)


class S8_8k(nn.Module):
    """< 8k: padded 3x3 convolutions with residual shortcuts, separable in the middle stage.

    A separable convolution is a 3x3 filter per map (`groups`) then a 1x1 mixing the maps: 9 * c_in
    + c_in * c_out weights instead of 9 * c_in * c_out. A shortcut adds a block's input to its
    output, so the block learns a correction. Chosen by the search in `lab/` (its budget-8000 study).
    """

    budget = 8_000

    def __init__(self, dropout: float = 0.032228877925077414) -> None:  # the value the search drew
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)  # 28, RF 3
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)  # 28, RF 5, + shortcut; pool -> 14, RF 6
        self.bn2 = nn.BatchNorm2d(8)
        self.depthwise3 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # 14, RF 10
        self.pointwise3 = nn.Conv2d(8, 16, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.depthwise4 = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)  # 14, RF 14, + shortcut
        self.pointwise4 = nn.Conv2d(16, 16, 1, bias=False)  # pool -> 7, RF 16
        self.bn4 = nn.BatchNorm2d(16)
        self.conv5 = nn.Conv2d(16, 18, 3, bias=False)  # 7 -> 5, RF 24
        self.bn5 = nn.BatchNorm2d(18)
        self.conv6 = nn.Conv2d(18, 18, 3, bias=False)  # 5 -> 3, RF 32
        self.bn6 = nn.BatchNorm2d(18)
        self.head = nn.Conv2d(18, 10, 1, bias=False)  # 3, then GAP -> 10 logits
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)  # global average pooling: each class map -> one logit
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(x + F.relu(self.bn2(self.conv2(x))))
        x = self.dropout(F.relu(self.bn3(self.pointwise3(self.depthwise3(x)))))
        x = x + self.dropout(F.relu(self.bn4(self.pointwise4(self.depthwise4(x)))))
        x = self.pool(x)
        x = self.dropout(F.relu(self.bn5(self.conv5(x))))
        x = self.dropout(F.relu(self.bn6(self.conv6(x))))
        return self.gap(self.head(x)).flatten(1)


class S9_20k(nn.Module):  # named as its runs are: s9_20k
    """< 20k, chosen for robustness on every seed and for speed: one convolution at full size, a pool, three
    at 14 px with a shortcut around the last two, a pool, three unpadded ones at 7 -> 5 -> 3 -> 1 px.

    The 28 px stage has only `widths[0]` maps, so most of the parameters sit where the images are
    small and cheap to convolve. Chosen by the course search in `lab/` (its budget-20000 study).
    """

    budget = 20_000
    widths = (4, 14, 21)  # the first stage, the middle one, the last one

    def __init__(self, dropout: float = 0.01540711632576506) -> None:  # the value the search drew
        super().__init__()
        c1, c2, c3 = self.widths
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)  # 28, RF 3; max-pool -> 14, RF 4
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)  # 14, RF 8
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, c2, 3, padding=1, bias=False)  # 14, RF 12
        self.bn3 = nn.BatchNorm2d(c2)
        self.conv4 = nn.Conv2d(c2, c2, 3, padding=1, bias=False)  # 14, RF 16, + shortcut; max-pool -> 7, RF 18
        self.bn4 = nn.BatchNorm2d(c2)
        self.conv5 = nn.Conv2d(c2, c3, 3, bias=False)  # 7 -> 5, RF 26
        self.bn5 = nn.BatchNorm2d(c3)
        self.conv6 = nn.Conv2d(c3, c3, 3, bias=False)  # 5 -> 3, RF 34
        self.bn6 = nn.BatchNorm2d(c3)
        self.conv7 = nn.Conv2d(c3, c3, 3, bias=False)  # 3 -> 1, RF 42: the whole digit
        self.bn7 = nn.BatchNorm2d(c3)
        self.head = nn.Conv2d(c3, 10, 1, bias=False)  # 1x1 to 10 maps, then GAP -> 10 logits
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.dropout(F.relu(self.bn2(self.conv2(x))))
        shortcut = x
        x = self.dropout(F.relu(self.bn3(self.conv3(x))))
        x = shortcut + self.dropout(F.relu(self.bn4(self.conv4(x))))
        x = self.pool(x)
        x = self.dropout(F.relu(self.bn5(self.conv5(x))))
        x = self.dropout(F.relu(self.bn6(self.conv6(x))))
        x = self.dropout(F.relu(self.bn7(self.conv7(x))))
        return self.gap(self.head(x)).flatten(1)


class S9_10k(nn.Module):  # named as its runs are: s9_10k
    """< 10k, chosen like S9_20k: two unpadded convolutions at full size, a pool, two at 12 px with a
    shortcut around the second, a pool, three at 6 px with a shortcut around the last two.

    Chosen by the course search in `lab/` (its budget-10000 study).
    """

    budget = 10_000
    widths = (4, 11, 16)  # the first stage, the middle one, the last one

    def __init__(self, dropout: float = 0.0012403708829610898) -> None:  # the value the search drew
        super().__init__()
        c1, c2, c3 = self.widths
        self.conv1 = nn.Conv2d(1, c1, 3, bias=False)  # 28 -> 26, RF 3
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c1, 3, bias=False)  # 26 -> 24, RF 5; max-pool -> 12, RF 6
        self.bn2 = nn.BatchNorm2d(c1)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)  # 12, RF 10
        self.bn3 = nn.BatchNorm2d(c2)
        self.conv4 = nn.Conv2d(c2, c2, 3, padding=1, bias=False)  # 12, RF 14, + shortcut; max-pool -> 6, RF 16
        self.bn4 = nn.BatchNorm2d(c2)
        self.conv5 = nn.Conv2d(c2, c3, 3, padding=1, bias=False)  # 6, RF 24
        self.bn5 = nn.BatchNorm2d(c3)
        self.conv6 = nn.Conv2d(c3, c3, 3, padding=1, bias=False)  # 6, RF 32
        self.bn6 = nn.BatchNorm2d(c3)
        self.conv7 = nn.Conv2d(c3, c3, 3, padding=1, bias=False)  # 6, RF 40, + shortcut
        self.bn7 = nn.BatchNorm2d(c3)
        self.head = nn.Conv2d(c3, 10, 1, bias=False)  # 1x1 to 10 maps, then GAP over 6x6 -> 10 logits
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = self.dropout(F.relu(self.bn3(self.conv3(x))))
        x = x + self.dropout(F.relu(self.bn4(self.conv4(x))))
        x = self.pool(x)
        x = self.dropout(F.relu(self.bn5(self.conv5(x))))
        shortcut = x
        x = self.dropout(F.relu(self.bn6(self.conv6(x))))
        x = shortcut + self.dropout(F.relu(self.bn7(self.conv7(x))))
        return self.gap(self.head(x)).flatten(1)


class S9_8k(nn.Module):  # named as its runs are: s9_8k
    """< 8k, chosen like S9_20k: two padded convolutions at full size, a pool, two at 14 px, a pool, two
    unpadded ones at 7 -> 5 -> 3 px, without shortcuts: all five finalists of its study were this
    plain net, with different recipes.

    Chosen by the course search in `lab/` (its budget-8000 study).
    """

    budget = 8_000
    widths = (6, 13, 13)  # the first stage, the middle one, the last one

    def __init__(self, dropout: float = 0.01944987065269209) -> None:  # the value the search drew
        super().__init__()
        c1, c2, c3 = self.widths
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)  # 28, RF 3
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c1, 3, padding=1, bias=False)  # 28, RF 5; max-pool -> 14, RF 6
        self.bn2 = nn.BatchNorm2d(c1)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)  # 14, RF 10
        self.bn3 = nn.BatchNorm2d(c2)
        self.conv4 = nn.Conv2d(c2, c2, 3, padding=1, bias=False)  # 14, RF 14; max-pool -> 7, RF 16
        self.bn4 = nn.BatchNorm2d(c2)
        self.conv5 = nn.Conv2d(c2, c3, 3, bias=False)  # 7 -> 5, RF 24
        self.bn5 = nn.BatchNorm2d(c3)
        self.conv6 = nn.Conv2d(c3, c3, 3, bias=False)  # 5 -> 3, RF 32
        self.bn6 = nn.BatchNorm2d(c3)
        self.head = nn.Conv2d(c3, 10, 1, bias=False)  # 1x1 to 10 maps, then GAP over 3x3 -> 10 logits
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = self.dropout(F.relu(self.bn3(self.conv3(x))))
        x = self.pool(self.dropout(F.relu(self.bn4(self.conv4(x)))))
        x = self.dropout(F.relu(self.bn5(self.conv5(x))))
        x = self.dropout(F.relu(self.bn6(self.conv6(x))))
        return self.gap(self.head(x)).flatten(1)


MODELS: dict[str, type[nn.Module]] = {
    "baseline": Baseline,
    "s6": S6,
    "s7_10k": S7_10k,
    "s8_8k": S8_8k,
    "s9_20k": S9_20k,
    "s9_10k": S9_10k,
    "s9_8k": S9_8k,
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    for name, cls in MODELS.items():
        budget = f"< {cls.budget:,}" if cls.budget else "-"
        print(f"{name:10s} {count_parameters(cls()):>8,} parameters  budget {budget}")
