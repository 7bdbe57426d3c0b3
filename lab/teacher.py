"""Score a teacher on the validation images it never trained on: each member alone, and all together.

    python -m lab.teacher --teacher results/validation/teachers/s6-seed0-val5000.json,... --out runs

A teacher is one train.py run record made with `--val 5000`, or several joined by commas, which teach
as one by the mean of their softened predictions (`engine.Ensemble`). Each member is checked as a
study checks it: trained on the first 55,000 training images only. The record written to
`<--out>/teacher-<member>-and-<member>....json` (each member's record name, less its `-val<N>`) gives
each member's validation accuracy and the ensemble's.
"""

import sys
from pathlib import Path

import torch

from lab.engine import Ensemble, load_teacher
from lab.recipes import LabRecipe
from train import OneLineParser, positive_int, provenance, repo_path, writable_dir, write_json
from utils import DATA_DIR, DataConfig, UserError, make_loaders, pick_device, test


def score(teacher: str, data: DataConfig, device: torch.device) -> dict:
    """Validation accuracy (%) of each member of `teacher` and of the whole."""
    model = load_teacher(LabRecipe(teacher=teacher), data, device)
    _, val_loader, split = make_loaders(data, device)
    if split != "val":
        raise UserError("a teacher is scored on held-out training images: give --val N")
    members = model.members if isinstance(model, Ensemble) else [model]
    accs = [test(m, device, val_loader, verbose=False)["acc"] for m in members]
    each = [{"record": r, "val_acc": a} for r, a in zip(teacher.split(","), accs, strict=True)]
    return {"members": each, "val_acc": test(model, device, val_loader, split)["acc"]}


def record_name(teacher: str, val: int) -> str:
    """The score's file name, from its members' records: one per teacher, however many members it has."""
    stems = [Path(record).stem.removesuffix(f"-val{val}") for record in teacher.split(",")]
    return f"teacher-{'-and-'.join(stems)}.json"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(description="Validation accuracy of a teacher: one run record, or several joined by commas.")
    p.add_argument("--teacher", required=True, metavar="RECORD[,RECORD...]")
    p.add_argument("--val", type=positive_int, default=5000, help="held-out training images (as its members had)")
    p.add_argument("--data-dir", default=DATA_DIR, help="folder holding MNIST/raw (default: $MNIST_ROOT or data/)")
    p.add_argument("--out", default="runs", help="folder for the record (default: runs/, git-ignored)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    teacher = repo_path(args.teacher)
    try:
        device = pick_device(args.device)
        out = writable_dir(args.out)
        scored = score(teacher, DataConfig(args.data_dir, val=args.val), device)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    path = out / record_name(teacher, args.val)
    write_json(
        path,
        {
            "teacher": teacher,
            **scored,
            "val": args.val,
            **provenance("lab.teacher", sys.argv[1:] if argv is None else argv, device),
        },
    )
    print(f"teacher of {len(scored['members'])}: {scored['val_acc']:.2f} % on validation -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
