"""The searched family: a budgeted CNN built from a short layer string, and the nets the studies chose.

A net is read left to right:

    "8p"   3x3 convolution to 8 maps, padded (the side stays)
    "8"    3x3 convolution to 8 maps, unpadded (the side shrinks by 2)
    "8d"   depthwise-separable 3x3 convolution to 8 maps, padded: a 3x3 filter per input map,
           then a 1x1 convolution to 8 (9 * in + in * 8 weights instead of 9 * in * 8)
    "t8"   1x1 convolution to 8 maps (a "transition" that mixes or squeezes channels)
    "M"    2x2 max-pool (the side halves)
    "[ ... ]"  a residual group: its input is added to its output (no parameters; the group
           must keep the number of maps and the side)
    "x3"   after a convolution or a "]": the same block applied 3 times, sharing its weights
           (it must keep the number of maps: "8px3" needs 8 maps coming in)

    "h16"  last only: the head is global average pooling, a linear layer to 16, the activation
           and a linear layer to 10, instead of a 1x1 convolution to 10 maps and then the pooling

Each convolution is followed by BatchNorm and ReLU (a `Style` may change the activation, the
normalisation and their order), each 3x3 convolution after the first pool also by Dropout, and
unless "h" says otherwise a net ends in a 1x1 convolution to 10 maps and global average pooling:
no fully connected head. Being sequential lets `utils.receptive_field_table` walk a net layer
by layer. The course nets of `model.py` are written out as classes instead.
"""

import copy
import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from model import count_parameters

TOKEN = re.compile(r"^(?:M|\[|\](?:x[1-9]\d*)?|[th][1-9]\d*|[1-9]\d*[pd]?(?:x[1-9]\d*)?)$")
ACTIVATIONS = ("relu", "leaky")
NORMS = ("bn", "bn2")


class LayerNorm2(nn.Module):
    """BatchNorm without a scale and shift per map, then one scale and one shift for the whole layer: 2
    parameters instead of 2 per map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x) * self.weight + self.bias


@dataclass(frozen=True)
class Style:
    """How every convolution of a net is finished: `act` relu or leaky (slope 0.1); `norm` bn (BatchNorm, 2
    parameters per map) or bn2 (`LayerNorm2`, 2 per layer); and `act_first`: convolution -> activation -> norm
    instead of convolution -> norm -> activation."""

    act: str = "relu"
    norm: str = "bn"
    act_first: bool = False

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS or self.norm not in NORMS:
            raise ValueError(f"style {self}: act is one of {ACTIVATIONS}, norm one of {NORMS}")

    def activation(self) -> nn.Module:
        return nn.LeakyReLU(0.1, inplace=True) if self.act == "leaky" else nn.ReLU(inplace=True)

    def finish(self, channels: int, dropout: float = 0.0) -> list[nn.Module]:
        """What follows a convolution to `channels` maps."""
        norm = nn.BatchNorm2d(channels) if self.norm == "bn" else LayerNorm2(channels)
        pair = [self.activation(), norm] if self.act_first else [norm, self.activation()]
        return [*pair, *([nn.Dropout(dropout)] if dropout else [])]

    @property
    def about(self) -> str:
        """The choices that differ from the default, for a table ("" for BatchNorm -> ReLU)."""
        parts = [self.act if self.act != "relu" else "", self.norm if self.norm != "bn" else ""]
        return ", ".join([p for p in parts if p] + (["activation first"] if self.act_first else []))


PLAIN = Style()


def trial_style(attrs: dict) -> Style:
    """The style a study's trial trained with, from the attributes it recorded (an exported trial's, or a live
    one's `user_attrs`); the first two rounds drew none, so their trials have the plain one."""
    return Style(**attrs.get("style", {}))


def searched(attrs: dict) -> bool:
    """Whether a study's trial is one the search drew, which may win (from its attributes, as `trial_style`): not
    a net asked for by name, nor a third-round paired comparison (a lever added to stage 2's winner)."""
    return "net" not in attrs and "variant_of" not in attrs


def conv_block(
    c_in: int, c_out: int, kernel: int = 3, padding: int = 0, dropout: float = 0.0, style: Style = PLAIN
) -> nn.Sequential:
    """Conv (no bias: the norm supplies it) -> BatchNorm -> ReLU [-> Dropout], or as `style` says."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False)
    return nn.Sequential(conv, *style.finish(c_out, dropout))


def separable_block(c_in: int, c_out: int, dropout: float = 0.0, style: Style = PLAIN) -> nn.Sequential:
    """Depthwise 3x3 (one padded filter per map) -> pointwise 1x1 -> BatchNorm -> ReLU [-> Dropout]."""
    depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
    return nn.Sequential(depthwise, nn.Conv2d(c_in, c_out, 1, bias=False), *style.finish(c_out, dropout))


class Residual(nn.Module):
    """x + body(x): a shortcut around a group of blocks that keeps maps and side."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Repeat(nn.Module):
    """One block applied `times` times in a row: its weights are shared, its depth multiplied."""

    def __init__(self, block: nn.Module, times: int) -> None:
        super().__init__()
        self.block, self.times = block, times

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.times):
            x = self.block(x)
        return x


def gap_head(c_in: int, classes: int = 10) -> nn.Sequential:
    """1x1 conv to one map per class, then global average pooling to logits."""
    return nn.Sequential(nn.Conv2d(c_in, classes, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def dense_head(c_in: int, hidden: int, style: Style = PLAIN, classes: int = 10) -> nn.Sequential:
    """Global average pooling, then a small fully connected layer and the activation, then the logits."""
    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*pool, nn.Linear(c_in, hidden), style.activation(), nn.Linear(hidden, classes))


class Net(nn.Sequential):
    """A budgeted CNN from a layer string such as "16 32 M t16 16 32 16" (see the module docstring).

    Dropout sits on the maps after the first pool only: at full resolution its masks cost half of
    a CPU training step, and augmentation regularizes there.
    """

    def __init__(self, layers: str, dropout: float = 0.0, size: int = 28, style: Style = PLAIN) -> None:
        groups: list[list[nn.Module]] = [[]]  # the blocks of each open residual group, outermost first
        entries: list[tuple[int, int]] = []  # maps and side where each open group began
        channels, pooled, head = 1, False, None
        for token in layers.split():
            if not TOKEN.match(token):
                raise ValueError(f"bad layer '{token}' in '{layers}': use 8p, 8, 8d, t8, M, [ ], x3, h16")
            if head is not None:
                raise ValueError(f"'{layers}': the head 'h...' must be the last layer")
            body, _, times = token.partition("x")
            times = int(times or 1)
            if body == "[":
                groups.append([])
                entries.append((channels, size))
                continue
            if body.startswith("h"):
                head = dense_head(channels, int(body[1:]), style)
                continue
            if body == "]":
                if not entries:
                    raise ValueError(f"'{layers}' closes a residual group it never opened")
                if entries.pop() != (channels, size):
                    raise ValueError(f"a residual group in '{layers}' must keep its maps and side")
                block: nn.Module = Residual(nn.Sequential(*groups.pop()))
            elif body == "M":
                block = nn.MaxPool2d(2)
                size, pooled = size // 2, True
            elif body.startswith("t"):
                block, channels = conv_block(channels, int(body[1:]), kernel=1, style=style), int(body[1:])
            else:
                width, kind = int(body.rstrip("pd")), body[-1]
                if times > 1 and channels != width:
                    raise ValueError(f"'{token}' repeats a block from {channels} maps to {width}: it must keep them")
                drop = dropout if pooled else 0.0
                if kind == "d":
                    block = separable_block(channels, width, drop, style)
                else:
                    block = conv_block(channels, width, padding=int(kind == "p"), dropout=drop, style=style)
                channels, size = width, size if kind in "pd" else size - 2 * times
            groups[-1].append(Repeat(block, times) if times > 1 else block)
            if size < 1:
                raise ValueError(f"'{layers}' shrinks the image to nothing at '{token}'")
        if entries:
            raise ValueError(f"'{layers}' leaves a residual group open: close it with ']'")
        super().__init__(*groups[0], head or gap_head(channels))
        self.layers, self.dropout, self.style = layers, dropout, style


def stage(width: int, depth: int, kind: str, residual: bool, share: bool) -> list[str]:
    """One stage's tokens: a convolution to `width` maps, then depth - 1 that keep them, maybe shared or residual."""
    block, rest = f"{width}{kind}", depth - 1
    if share:
        return [block, *(["[", block, f"]x{rest}"] if residual else [f"{block}x{rest}"])]
    return [block, *(["[", *[block] * rest, "]"] if residual else [block] * rest)]


def multiply_adds(model: torch.nn.Module, size: int = 28) -> int:
    """Multiply-adds of one image's forward pass through the convolutions and linear layers: a cost estimate."""
    total, hooks = 0, []

    def count(layer: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, torch.nn.Conv2d):
            total += output.numel() * (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)
        else:
            total += layer.in_features * layer.out_features

    probe = copy.deepcopy(model).cpu().float().eval()
    for layer in probe.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(layer.register_forward_hook(count))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        probe(torch.zeros(1, 1, size, size))
    for hook in hooks:
        hook.remove()
    return total


@dataclass(frozen=True)
class Searched:
    """A net of the family chosen by a study (`lab/sweep.py`), with the budget it was searched under."""

    layers: str
    dropout: float  # as the sampler drew it
    budget: int
    style: Style = PLAIN

    def __call__(self) -> Net:
        return Net(self.layers, self.dropout, style=self.style)

    @property
    def about(self) -> str:
        return f"`{self.layers}`, dropout {self.dropout:.3g}" + (f", {self.style.about}" if self.style.about else "")


# The stage-1 bests of the first round (results/validation/budget-*.json) and the stage-2 winners of the
# second and third (results/validation/frontier-ii/, frontier-iii/). The course's < 8k net, s8_8k, is a winner
# of the second round written out as a class in model.py; COURSE_LAYERS gives the layer string it was trained as.
SEARCHED: dict[str, Searched] = {
    "s7_8k": Searched("4p 4p 4p M 12p 12p 12p M 10p 10p 10p", 0.0019127488151920672, 8_000),
    "s7_4k": Searched("4p 4p 4p M 8p 8p 8p M 8p 8p 8p", 0.01, 4_000),  # first round: < 5k too
    "s7_3k": Searched("6p 6p M 6p 6p M 6p 6p", 0.040805315978710795, 3_000),
    "s8_4k": Searched("4p 4p 4p M 8p 8p 8p M 8p 8p 8p", 0.003404749975698642, 4_000),
    "s8_5k": Searched("4p 4p 4p M 8p 8p 8p M 8p 8p 8p", 0.003303439945491489, 5_000),
    "s8_3k": Searched("8p 8p M 18d 18d M 18d 18d", 0.00367245831897043, 3_000),
    "s10_5k": Searched("8p 8p 8p M 16d 16d 16d M 34d 34d", 0.000924829011769024, 5_000, style=Style(norm="bn2")),
    "s10_4k": Searched(
        "5p 5p M 9p 9p M 9 9 h16", 0.01951589809213003, 4_000, style=Style(act="leaky", norm="bn2", act_first=True)
    ),
    "s10_3k": Searched("14p M 7d 7d M 11 11 h16", 0.02967861195691885, 3_000, style=Style(act="leaky")),
}

# The course nets of model.py as layer strings of this family: the same layers in the same order, so that a
# class draws the same initial weights as the net its study trained, and weights saved from one load into the
# other (see utils.load_weights). s6 and s7_10k were first built and published this way; the others are the
# draws of their studies.
COURSE_LAYERS: dict[str, Searched] = {
    "s6": Searched("16 32 M t16 16 32 16", 0.05, 20_000),
    "s7_10k": Searched("10 20 M t10 16 16 20", 0.05, 10_000),
    "s8_8k": Searched("8p [ 8p ] M 16d [ 16d ] M 18 18", 0.032228877925077414, 8_000),
    "s9_20k": Searched("4p M 14p [ 14p 14p ] M 21 21 21", 0.01540711632576506, 20_000),
    "s9_10k": Searched("4 4 M 11p [ 11p ] M 16p [ 16p 16p ]", 0.0012403708829610898, 10_000),
    "s9_8k": Searched("6p 6p M 13p 13p M 13 13", 0.01944987065269209, 8_000),
}


if __name__ == "__main__":
    for name, spec in SEARCHED.items():
        print(f"{name:8s} {count_parameters(spec()):>6,} params  budget < {spec.budget:,}  {spec.about}")
