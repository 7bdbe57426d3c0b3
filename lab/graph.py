"""The training step as one CUDA graph: forward, loss, backward, SGD and the weight average in one replay.

    python -m lab.graph --model s6 --seeds 0 1 2 3 4   # each seed with and without -> runs/graph-<device>.json

A small net's step on a GPU waits on Python launching a hundred small kernels (the last profile:
the GPU busy 23 % of a step, `cudaLaunchKernel` the top host op). Captured once, the whole step is
replayed by one call. So everything that changes from batch to batch is a device tensor the step
reads: the batch (copied into fixed buffers, one graph per batch size), the learning rate and the
momentum (set from the schedule before each replay), the weight average's count and so its decay.
SGD is written out with `torch._foreach_*` ops as `torch.optim.SGD` computes it, its momentum
buffers kept in the optimizer's state, so checkpoints and resumes work as before.

On a CPU, or before a batch size has been seen once, the same step runs eagerly: that is how the
tests hold its arithmetic to `utils.train` with `torch.optim.SGD` and `engine.WeightAverage`.
The CLI trains each seed both ways on validation and records both, with their times.
"""

import sys
import time

import torch
from torch import Tensor

from train import (
    OneLineParser,
    Run,
    fit,
    positive_int,
    prepare,
    provenance,
    spec,
    train_steps,
    writable_dir,
    write_json,
)
from utils import DATA_DIR, DataConfig, NonFiniteLoss, UserError, memory_format, pick_device


class GraphStep:
    """A run's training step, captured as a CUDA graph per batch size on a GPU, eager elsewhere.

    Called as `steps(run, batches, epoch, progress)`, like `train.train_steps`, it trains the batches
    and returns the epoch's mean loss and accuracy. The first batch of each size runs eagerly (it also
    warms up the kernels the capture records); from the second on, the graph is replayed.
    """

    def __init__(self, run: Run) -> None:
        if not isinstance(run.optimizer, torch.optim.SGD) or len(run.optimizer.param_groups) != 1:
            raise UserError("the graphed step is written for SGD with one parameter group")
        group, device = run.optimizer.param_groups[0], run.device
        self.run, self.group = run, group
        self.params = [p for p in run.model.parameters() if p.requires_grad]
        dtype = self.params[0].dtype
        self.lr = torch.tensor(float(group["lr"]), device=device, dtype=dtype)
        self.momentum = torch.tensor(float(group["momentum"]), device=device, dtype=dtype)
        self.buffers = []
        if group["momentum"]:  # zeros: momentum * 0 + grad is the first buffer, as SGD's clone of the grad
            state = run.optimizer.state
            self.buffers = [state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in self.params]
        self.updates = torch.zeros((), device=device, dtype=dtype)  # the weight average's count, on the device
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.batch = torch.zeros((), device=device, dtype=torch.long)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}
        self.seen: set[int] = set()
        self.replays = 0

    def body(self, x: Tensor, y: Tensor) -> None:
        """One step on the batch in `x`, `y`: what the graph records. No value is read back to the host."""
        run, group = self.run, self.group
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16"):
            logits = run.model(x)
            loss = run.loss(logits, x, y)
        loss.backward()
        with torch.no_grad():  # SGD and the average, as torch.optim.SGD.step and WeightAverage.update
            grads = [p.grad for p in self.params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, self.params, alpha=group["weight_decay"])
            if self.buffers:
                torch._foreach_mul_(self.buffers, self.momentum)
                torch._foreach_add_(self.buffers, grads)
                grads = (
                    torch._foreach_add(grads, torch._foreach_mul(self.buffers, self.momentum))
                    if group["nesterov"]
                    else self.buffers
                )
            torch._foreach_add_(self.params, torch._foreach_mul(grads, -self.lr))
            average = run.average
            if average is not None:
                self.updates += 1
                average.fold(1 - torch.clamp((1 + self.updates) / (10 + self.updates), max=average.decay))
        loss = loss.detach()
        self.first_bad.copy_(torch.where((self.first_bad < 0) & ~torch.isfinite(loss), self.batch, self.first_bad))
        self.batch += 1
        self.loss_sum += loss * len(y)
        self.correct += (logits.argmax(1) == y).sum()

    def step(self, x: Tensor, y: Tensor) -> None:
        self.run.optimizer._opt_called = True  # as optimizer.step() marks it: the schedulers see a step was taken
        self.lr.fill_(self.group["lr"])
        self.momentum.fill_(self.group["momentum"])
        size = len(y)
        if self.run.device.type != "cuda" or size not in self.seen:
            self.seen.add(size)
            self.run.optimizer.zero_grad(set_to_none=True)
            self.body(x, y)
            return
        if size not in self.graphs:
            self.graphs[size] = self.capture(x, y)
        graph, static_x, static_y = self.graphs[size]
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        self.replays += 1

    def capture(self, x: Tensor, y: Tensor) -> tuple[torch.cuda.CUDAGraph, Tensor, Tensor]:
        """Record the step for this batch size (recording does not run it: the caller replays it)."""
        static_x, static_y = x.clone(), y.clone()
        graph = torch.cuda.CUDAGraph()
        self.run.optimizer.zero_grad(set_to_none=True)  # the gradients are allocated inside the graph's pool
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            self.body(static_x, static_y)
        return graph, static_x, static_y

    def __call__(self, run: Run, batches, epoch: int = 1, progress: bool = False) -> dict[str, float]:
        """Train one epoch's batches; the epoch-wise bookkeeping (evaluation, StepLR) stays `train.run_epoch`'s."""
        for t in (self.loss_sum, self.correct, self.batch):
            t.zero_()
        self.first_bad.fill_(-1)
        run.model.train()
        layout, seen = memory_format(run.precision), 0
        for x, y in batches:
            self.step(x.to(run.device).contiguous(memory_format=layout), y.to(run.device))
            if run.per_batch:
                run.scheduler.step()
            seen += len(y)
        if self.first_bad.item() >= 0:
            raise NonFiniteLoss(f"loss became NaN/inf in epoch {epoch}, batch {self.first_bad.item()}; lower --lr")
        if run.average is not None:
            run.average.updates = int(self.updates.item())
        return {"loss": self.loss_sum.item() / seen, "acc": 100 * self.correct.item() / seen}


def compare(model: str, seed: int, data_dir: str, val: int, epochs: int, device: torch.device) -> dict:
    """One seed trained on validation without the graph and with it: per-epoch accuracy and wall time of each."""
    found, out = spec(model), {}
    for variant in ("eager", "graph"):
        data = DataConfig(data_dir, found.recipe.batch_size, val=val, augment=found.recipe.augment, seed=seed)
        start = time.perf_counter()
        run = prepare(found.build, found.recipe, data, epochs, device)
        history = fit(run, verbose=False, steps=GraphStep(run) if variant == "graph" else train_steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[variant] = {
            f"{run.split}_acc": [h[f"{run.split}_acc"] for h in history],
            "wall_s": time.perf_counter() - start,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = OneLineParser(description="Each seed trained with and without the CUDA-graph step, on validation.")
    p.add_argument("--model", default="s6")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--val", type=positive_int, default=5000, help="held-out training images scored on")
    p.add_argument("--epochs", type=positive_int, default=15)
    p.add_argument("--data-dir", default=DATA_DIR, help="folder holding MNIST/raw (default: $MNIST_ROOT or data/)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--out", default="runs", help="folder for the record (default: runs/, git-ignored)")
    args = p.parse_args(argv)
    try:
        device = pick_device(args.device)
        out = writable_dir(args.out)
        spec(args.model)
        seeds = {seed: compare(args.model, seed, args.data_dir, args.val, args.epochs, device) for seed in args.seeds}
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    path = out / f"graph-{device.type}.json"
    write_json(
        path,
        {
            **provenance("lab.graph", argv, device),
            "model": args.model,
            "seeds": seeds,
        },
    )
    for seed, r in seeds.items():
        print(
            f"seed {seed}: " + ", ".join(f"{v} {min(r[v]['val_acc'][-3:]):.2f} % in {r[v]['wall_s']:.1f} s" for v in r)
        )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
