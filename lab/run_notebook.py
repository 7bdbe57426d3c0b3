"""Execute S6_part2.ipynb top to bottom, headless, and save it with its outputs.

    python -m lab.run_notebook                              # the full run -> runs/S6_part2.ipynb
    python -m lab.run_notebook --set EPOCHS=1 SUBSET=512    # a smoke run
    python -m lab.run_notebook --publish                    # the full run, published (see below)

`--set` adds a cell after the parameters cell that overrides them (as papermill does); each value
is a Python literal and each name must be one of the parameters. The executed notebook goes to
runs/ unless `--output` names another file: replacing the committed notebook is an explicit act.
`--publish` runs it as it stands and, once every cell ran, saves it in place, copies its pictures
into images/ and its numbers into results/ (with the command and commit). A notebook is written
only when every cell ran; a failed run is saved beside it as `*.failed.ipynb` for reading.
Progress bars are stored as their final state, so the saved notebook reads like a clean log on
GitHub.
"""

import ast
import contextlib
import json
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from train import HERE, OneLineParser, atomic_write, git_commit, positive_int, write_json
from utils import UserError, first_line

NOTEBOOK = HERE / "S6_part2.ipynb"
OUTPUT = Path("runs") / NOTEBOOK.name  # git-ignored
NOTEBOOK_OUT = HERE / "runs" / "notebook"  # where the notebook saves its pictures and numbers (its OUT, IMAGES)
ASSIGNMENT = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*$", re.S)


def parameters_cell(nb: nbformat.NotebookNode) -> int:
    return next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))


def parameter_names(nb: nbformat.NotebookNode) -> list[str]:
    """The names the parameters cell assigns: the only ones --set may change."""
    tree = ast.parse(nb.cells[parameters_cell(nb)].source)
    targets = [t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    return [n.id for t in targets for n in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(n, ast.Name)]


def check_assignments(nb: nbformat.NotebookNode, assignments: list[str]) -> None:
    """Each --set is NAME=VALUE with a known NAME and a Python literal VALUE, or a UserError says which is not."""
    known = parameter_names(nb)
    for text in assignments:
        match = ASSIGNMENT.match(text)
        if not match:
            raise UserError(f"--set takes NAME=VALUE, got '{text}'")
        name, value = match.groups()
        if name not in known:
            raise UserError(f"--set {name}: not a parameter of the notebook; known: {', '.join(known)}")
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise UserError(f"--set {name}: '{value}' is not a Python literal (quote strings: {name}='...')") from None


def inject_parameters(nb: nbformat.NotebookNode, assignments: list[str]) -> None:
    cell = nbformat.v4.new_code_cell("# Injected by run_notebook.py --set\n" + "\n".join(assignments))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(parameters_cell(nb) + 1, cell)


def final_frames(text: str) -> str:
    """Keep what a terminal would show: on each line, only the text after the last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def tidy_streams(nb: nbformat.NotebookNode) -> None:
    """Merge consecutive stream outputs of the same name and drop overwritten progress-bar frames."""
    for cell in nb.cells:
        merged = []
        for out in cell.get("outputs", []):
            if (
                out.output_type == "stream"
                and merged
                and merged[-1].output_type == "stream"
                and merged[-1].name == out.name
            ):
                merged[-1].text += out.text
            else:
                merged.append(out)
        for out in merged:
            if out.output_type == "stream":
                out.text = final_frames(out.text)
        if "outputs" in cell:
            cell.outputs = merged


def failed_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".ipynb") + ".failed.ipynb")


def save(nb: nbformat.NotebookNode, path: Path) -> None:
    atomic_write(path, lambda f: f.write(nbformat.writes(nb).encode()))


def execute(assignments: list[str], output: Path, timeout: int = 3600) -> nbformat.NotebookNode:
    """Run the notebook; save it to `output` only if every cell ran (a failed run goes to *.failed.ipynb)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    check_assignments(nb, assignments)
    if assignments:
        inject_parameters(nb, assignments)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
    try:
        client.execute()
    except BaseException:
        tidy_streams(nb)
        with contextlib.suppress(OSError):
            save(nb, failed_path(output))
        raise
    tidy_streams(nb)
    save(nb, output)
    return nb


def publish(commit: str, since: float) -> list[Path]:
    """Copy the pictures and numbers this run wrote (modified at or after `since`) into images/ and results/,
    naming the command and commit. What an earlier run left in the folder, of another net, stays there."""

    def fresh(pattern: str) -> list[Path]:
        return sorted(p for p in NOTEBOOK_OUT.glob(pattern) if p.stat().st_mtime >= since)

    written = []
    for picture in fresh("*.png"):
        written.append(HERE / "images" / picture.name)
        atomic_write(written[-1], lambda f, p=picture: f.write(p.read_bytes()))
    for path in fresh("notebook-*.json"):
        record = {"command": "python -m lab.run_notebook --publish", "git_commit": commit}
        written.append(HERE / "results" / path.name)
        write_json(written[-1], {**record, **json.loads(path.read_text())})
    return written


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="override parameters (Python literals)")
    p.add_argument(
        "--output",
        type=Path,
        help=f"where to save the executed notebook (default: {OUTPUT}; {NOTEBOOK.name} publishes it)",
    )
    p.add_argument("--publish", action="store_true", help="save in place, pictures to images/, numbers to results/")
    p.add_argument("--timeout", type=positive_int, default=3600, help="seconds a cell may run")
    args = p.parse_args(argv)
    if args.publish and (args.set or args.output):
        p.error("--publish runs the notebook as it stands: no --set or --output")
    output = NOTEBOOK if args.publish else args.output or OUTPUT
    commit, started = git_commit(), time.time()  # the code the run starts from; what it writes is newer
    try:
        if args.output is None:
            output.parent.mkdir(exist_ok=True)
        if not output.parent.is_dir():
            raise UserError(f"--output: folder {output.parent} does not exist")
        execute(args.set, output, args.timeout)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except CellExecutionError as err:
        last = [line for line in str(err).strip().splitlines() if line.strip()][-1:] or ["a cell failed"]
        print(f"error: a cell failed ({last[0][:200]}); {output.name} left as it was; see {failed_path(output)}",
              file=sys.stderr)  # fmt: skip
        return 1
    except (DeadKernelError, RuntimeError, OSError) as err:  # no kernel, a crashed kernel, an unwritable folder
        print(f"error: the notebook could not run: {first_line(err)}", file=sys.stderr)
        return 2
    print(f"executed notebook saved to {output}")
    if args.publish:
        print("published: " + ", ".join(str(p.relative_to(HERE)) for p in publish(commit, started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
