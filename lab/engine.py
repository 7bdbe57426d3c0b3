"""The lab's training levers: a moving average of the weights, and distillation from a teacher (one net, or
several whose softened predictions are averaged).

Both reach training through `LabRecipe.extras`: the average is updated after every optimizer
step and is what gets evaluated and saved; the loss is called as `loss(logits, images, labels)`.
"""

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from train import spec
from utils import DataConfig, UserError, first_line, load_weights

ROOT = Path(__file__).resolve().parents[1]  # a teacher's record path is relative to the repository


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
        self.fold(1 - min(self.decay, (1 + self.updates) / (10 + self.updates)))

    @torch.no_grad()
    def fold(self, weight: float | torch.Tensor) -> None:
        """Move the average `weight` of the way to the live weights; a tensor weight stays on the device."""
        torch._foreach_lerp_(*self._floats, weight)
        if self._counters:
            torch._foreach_copy_(*self._counters)

    def state_dict(self) -> dict:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])  # copies into the listed tensors: the pairs stay valid
        self.updates = state["updates"]


def weight_average(model: nn.Module, recipe) -> WeightAverage | None:
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
            target = soft_targets(self.teacher, x, t)
        student = F.log_softmax(logits.float() / t, dim=1)
        kl = F.kl_div(student, target, reduction="batchmean", log_target=True)
        return (1 - self.weight) * loss + self.weight * t * t * kl


class Ensemble(nn.Module):
    """Several teachers as one: its soft targets are the mean of theirs (see `soft_targets`)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        """The mean of the members' probabilities, as log-probabilities: what `predict` and `test` score."""
        return soft_targets(self, x, 1.0)


def soft_targets(teacher: nn.Module, x: Tensor, temperature: float) -> Tensor:
    """The teacher's log-probabilities softened by `temperature`; an ensemble's are the log of its members' mean."""
    if isinstance(teacher, Ensemble):
        each = torch.stack([F.log_softmax(m(x).float() / temperature, dim=1) for m in teacher.members])
        return torch.logsumexp(each, dim=0) - math.log(len(teacher.members))
    return F.log_softmax(teacher(x).float() / temperature, dim=1)


def load_teacher(recipe, data: DataConfig, device: torch.device) -> nn.Module:
    """The recipe's teacher, or its `Ensemble` where `teacher` names several records joined by commas."""
    paths = [p for p in recipe.teacher.split(",") if p]
    members = [load_one_teacher(p, data, device) for p in paths]
    return members[0] if len(members) == 1 else Ensemble(members).to(device).eval()


def load_one_teacher(name: str, data: DataConfig, device: torch.device) -> nn.Module:
    """One teacher, after checking it trained on exactly the images the student may see.

    A teacher must have held out the same validation images as the student (for a study: never
    the validation images; for a published run: all 60,000 training images) and the same subset.
    No run trains on the test set, so none can leak it.
    """
    path = ROOT / name  # an absolute path stays as it is
    try:
        record = json.loads(path.read_text())
        config, weights = record["config"], record["weights"]
        with torch.random.fork_rng(devices=[]):  # the student draws the same numbers with or without a teacher
            model = spec(record["model"]).build()
    except (OSError, ValueError, KeyError, TypeError, UserError) as err:
        raise UserError(f"teacher {path} is not a run record of train.py with weights: {first_line(err)}") from None
    seen = (config.get("val", 0), config.get("subset"))
    if seen != (data.val, data.subset):
        raise UserError(
            f"teacher {path} trained with --val {seen[0]} --subset {seen[1]}, the student with --val {data.val} "
            f"--subset {data.subset}: a teacher must train on exactly the images its student may see"
        )
    load_weights(model, path.parent / weights["file"], weights["sha256"])
    return model.to(device).eval().requires_grad_(False)


def make_loss(recipe, data: DataConfig, device: torch.device) -> Loss:
    if recipe.distill_weight and not recipe.teacher:
        raise UserError("a distillation weight needs a teacher (--teacher RECORD)")
    teacher = load_teacher(recipe, data, device) if recipe.teacher else None
    return Loss(recipe.label_smoothing, teacher, recipe.distill_weight, recipe.distill_temperature)
