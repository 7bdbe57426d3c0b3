"""The third frontier round's search space (`lab.sweep --space frontier-iii`): the second round's family,
widths that fill the budget, and the levers of the strongest small public nets.

A net: `d1` padded 3x3 convolutions at 28 px (one, then a max-pool: the pool right after the first
convolution), a pool, `d2` convolutions at 14 px, a pool, `d3` at 7 px (padded or not), then the
head. After the first stage the convolutions are plain or depthwise-separable; each stage's
convolutions after its first may sit in a residual group.

Widths are drawn as a shape and a share of the budget, as in `course_space.py`: the first stage's
width as a share of the middle one's (`narrow`), the last's as a multiple of it (`taper`), and the
share to fill (`fill`, 60-100 %); `course_space.widest` takes the widest net of that shape within the
share, then widens the last stage and the first one map at a time while it fits. So draws over
budget, 15 to 27 of each second-round study's trials, become rare.

The levers (the issue names the public nets that use them):
- `act`: ReLU or LeakyReLU; `norm`: BatchNorm, or 2 parameters per layer (`nets.LayerNorm2`);
  `act_first`: the activation before the norm;
- `head`: the 1x1 convolution to 10 maps, or GAP -> a linear layer to 16 or 32 -> 10 (`h16`, `h32`);
- `optimizer`: SGD (momentum up to 0.95, or OneCycle's cycled one) or AdamW; OneCycle with a
  warm-up from 5 % of training; weight decay down to 5e-5;
- brightness and contrast jitter beside the affine augmentation.

A lever stays only while a study's winner uses it or a paired comparison on validation shows that it
helps (lab/README.md, "Paired comparisons"). Those that lost theirs are gone from the space and the
family (`PRUNED`). The committed third-round studies drew them, so those studies continue, and their
trials build, at commit `PRUNED_AT`.
"""

from typing import TYPE_CHECKING

from lab.course_space import widest
from lab.nets import Style, stage
from lab.recipes import LabRecipe
from utils import Augment

if TYPE_CHECKING:  # the sweep imports optuna, with a clear error where it is missing
    import optuna

KINDS = {"plain": "p", "separable": "d"}
HEADS = {"gap": "", "dense16": "h16", "dense32": "h32"}
DISTILL_WEIGHTS = [0.0, 0.5, 0.8]
# a parameter's choices that lost their paired comparison
PRUNED = {"kind": ("factorised",), "act": ("prelu",), "momentum": (0.98,)}
PRUNED_AT = "91a0782"  # the last commit whose space and family still hold them
MAC_CAP = 2_000_000  # multiply-adds per image: keeps a CPU trial within a few minutes (s7_10k has 1.5 M)


def draw_affine(trial: "optuna.Trial") -> dict[str, float]:
    """The frontier rounds' affine augmentation: rotation, shift, zoom and the share of images it is applied to."""
    return {
        "degrees": trial.suggest_float("degrees", 5.0, 15.0),
        "translate": trial.suggest_categorical("translate", [0.05, 0.1]),
        "scale": trial.suggest_float("scale", 0.0, 0.15),
        "p": trial.suggest_float("p", 0.5, 1.0),
    }


def layer_string(d1: int, d2: int, d3: int, kind: str, pad3: bool, residual: bool, head: str,
                 w1: int, w2: int, w3: int) -> str:  # fmt: skip
    """The net of this family with these depths and widths, as a `Net` layer string."""
    k = KINDS[kind]
    last = stage(w3, d3, k if pad3 else "", residual and pad3, False)
    layers = [*stage(w1, d1, "p", residual and d1 > 1, False), "M", *stage(w2, d2, k, residual, False), "M", *last]
    return " ".join([*layers, *([HEADS[head]] if HEADS[head] else [])])


def suggest_frontier(
    trial: "optuna.Trial", budget: int, teacher: str = ""
) -> tuple[str | None, float, Style, LabRecipe]:
    """Draw a net (None if no net of the drawn shape fits), its style and its recipe."""
    shape = {
        "d1": trial.suggest_int("d1", 1, 3),
        "d2": trial.suggest_int("d2", 2, 3),
        "d3": trial.suggest_int("d3", 2, 3),
        "kind": trial.suggest_categorical("kind", list(KINDS)),
        "pad3": trial.suggest_categorical("pad3", [True, False]),
        "residual": trial.suggest_categorical("residual", [False, True]),
        "head": trial.suggest_categorical("head", list(HEADS)),
    }
    style = Style(
        act=trial.suggest_categorical("act", ["relu", "leaky"]),
        norm=trial.suggest_categorical("norm", ["bn", "bn2"]),
        act_first=trial.suggest_categorical("act_first", [False, True]),
    )
    narrow = trial.suggest_categorical("narrow", [0.25, 0.5, 0.75, 1.0])
    taper = trial.suggest_categorical("taper", [1.0, 1.5, 2.0])
    fill = trial.suggest_float("fill", 0.6, 1.0)
    build = {"layer_string": layer_string, "style": style, "mac_cap": MAC_CAP, "refine": True}
    layers = widest(shape, narrow, taper, min(int(fill * budget), budget - 1), **build)
    dropout = trial.suggest_float("dropout", 0.0, 0.1)
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adamw"])
    if optimizer == "sgd":
        momentum = trial.suggest_categorical("momentum", ["cycle", 0.9, 0.95])
        moving = {
            "lr": trial.suggest_float("lr", 0.02, 0.3, log=True),
            "momentum": 0.9 if momentum == "cycle" else momentum,
            "cycle_momentum": momentum == "cycle",
            "nesterov": trial.suggest_categorical("nesterov", [False, True]),
        }
    else:
        moving = {"lr": trial.suggest_float("adam_lr", 0.002, 0.03, log=True), "optimizer": "adamw"}
    distill = trial.suggest_categorical("distill_weight", DISTILL_WEIGHTS) if teacher else 0.0
    recipe = LabRecipe(
        schedule="onecycle",
        pct_start=trial.suggest_float("pct_start", 0.05, 0.3),
        anneal=trial.suggest_categorical("anneal", ["cos", "linear"]),
        weight_decay=trial.suggest_categorical("weight_decay", [0.0, 5e-5, 1e-4, 5e-4]),
        label_smoothing=trial.suggest_categorical("label_smoothing", [0.0, 0.05, 0.1]),
        batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
        augment=Augment(
            **draw_affine(trial),
            brightness=trial.suggest_categorical("brightness", [0.0, 0.1, 0.25]),
            contrast=trial.suggest_categorical("contrast", [0.0, 0.1, 0.25]),
        ),
        ema=trial.suggest_categorical("ema", [0.0, 0.999]),
        precision="bf16",  # where the device has it: the same scores as fp32 on validation, faster
        teacher=teacher if distill else "",
        distill_weight=distill,
        **moving,
    )
    return layers, dropout, style, recipe
