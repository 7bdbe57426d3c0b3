"""The public nets the course's budgets are usually answered with, rebuilt from their READMEs' summary tables.

Each is named by its parameter count, which the README states (`ref_19088` is 000's < 20k net, and so
on, as in ../shared/reference/README.md); a test holds each class against its table layer by layer.
Where a README leaves a detail out (where its ReLU sits, a dropout rate) the class takes ours and says
so; its recipe is in `recipes.py`. ReLU is applied as a function where the table lists no module for it.
"""

import torch.nn.functional as F
from torch import Tensor, nn


class Ref19088(nn.Module):
    """000's < 20k net: padded 3x3 convolutions 16-24, pool, 1x1 to 16, 24-32, pool, 1x1 to 24, two unpadded
    3x3 to 12 and to 10, then a 3x3 average pool. Its ReLU's place and dropout rate are not given: ours."""

    budget = 20_000

    def __init__(self, dropout: float = 0.05) -> None:
        super().__init__()
        widths = [(1, 16, 3), (16, 24, 3), (24, 16, 1), (16, 24, 3), (24, 32, 3), (32, 24, 1), (24, 12, 3)]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, padding=int(k == 3 and n < 5), bias=False)
                                   for n, (i, o, k) in enumerate(widths))  # fmt: skip
        self.norms = nn.ModuleList(nn.BatchNorm2d(o) for _, o, _ in widths)
        self.last = nn.Conv2d(12, 10, 3, bias=False)  # 5 -> 3
        self.drops = nn.ModuleList(nn.Dropout(dropout) for _ in widths[:-1])  # none after the 3x3 to 12
        self.pool, self.gap = nn.MaxPool2d(2), nn.AvgPool2d(3)

    def forward(self, x: Tensor) -> Tensor:
        for n, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = F.relu(norm(conv(x)))
            if n < len(self.drops):
                x = self.drops[n](x)
            if n in (1, 4):
                x = self.pool(x)
        return self.gap(self.last(x)).flatten(1)


class Ref7946(nn.Module):
    """002's < 8k net: unpadded 3x3 convolutions 12-16, a 1x1 to 6, pool, 3x3s 12-14-14 and a padded 14,
    global average pooling and a 14 -> 10 linear layer. Each convolution: ReLU, then BatchNorm; no dropout."""

    budget = 8_000

    def __init__(self) -> None:
        super().__init__()
        widths = [(1, 12, 3), (12, 16, 3), (16, 6, 1), (6, 12, 3), (12, 14, 3), (14, 14, 3), (14, 14, 3)]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, padding=int(n == 6), bias=False)
                                   for n, (i, o, k) in enumerate(widths))  # fmt: skip
        self.relus = nn.ModuleList(nn.ReLU() for _ in widths)
        self.norms = nn.ModuleList(nn.BatchNorm2d(o) for _, o, _ in widths)
        self.pool, self.gap = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(14, 10)

    def forward(self, x: Tensor) -> Tensor:
        for n, (conv, relu, norm) in enumerate(zip(self.convs, self.relus, self.norms, strict=True)):
            x = norm(relu(conv(x)))
            if n == 2:
                x = self.pool(x)
        return self.fc(self.gap(x).flatten(1))


class Ref7904(nn.Module):
    """004's < 8k net: a 3x3 to 32, a 1x1 to 8, a 3x3 to 10, pool, a padded 3x3 to 16, a 1x1 to 10, 3x3s
    10-16-16, a 6x6 average pool and a 1x1 to 10. Each convolution: ReLU, BatchNorm, Dropout2d (rate not
    given: ours)."""

    budget = 8_000

    def __init__(self, dropout: float = 0.05) -> None:
        super().__init__()
        widths = [(1, 32, 3), (32, 8, 1), (8, 10, 3), (10, 16, 3), (16, 10, 1), (10, 10, 3), (10, 16, 3), (16, 16, 3)]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, padding=int(n == 3), bias=False)
                                   for n, (i, o, k) in enumerate(widths))  # fmt: skip
        self.relus = nn.ModuleList(nn.ReLU() for _ in widths)
        self.norms = nn.ModuleList(nn.BatchNorm2d(o) for _, o, _ in widths)
        self.drops = nn.ModuleList(nn.Dropout2d(dropout) for _ in widths)
        self.pool, self.gap = nn.MaxPool2d(2), nn.AvgPool2d(6)
        self.head = nn.Conv2d(16, 10, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        for n, (conv, relu, norm, drop) in enumerate(zip(self.convs, self.relus, self.norms, self.drops, strict=True)):
            x = drop(norm(relu(conv(x))))
            if n == 2:
                x = self.pool(x)
        return self.head(self.gap(x)).flatten(1)


REFERENCE: dict[str, type[nn.Module]] = {"ref_19088": Ref19088, "ref_7946": Ref7946, "ref_7904": Ref7904}
SOURCES = {"ref_19088": "000", "ref_7946": "002", "ref_7904": "004"}  # ../shared/reference/<source>_*.txt
