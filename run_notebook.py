"""Execute S6_part2.ipynb top to bottom, headless, and save it with its outputs.

    python run_notebook.py                                   # the full run, saved in place
    python run_notebook.py --set EPOCHS=1 SUBSET=512 --output /tmp/smoke.ipynb

`--set` adds a cell after the parameters cell that overrides them (as papermill does). Progress
bars are stored as their final state, so the saved notebook reads like a clean log on GitHub.
"""

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).parent
NOTEBOOK = HERE / "S6_part2.ipynb"


def inject_parameters(nb: nbformat.NotebookNode, assignments: list[str]) -> None:
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    cell = nbformat.v4.new_code_cell("# Injected by run_notebook.py --set\n" + "\n".join(assignments))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)


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


def execute(assignments: list[str], output: Path, timeout: int = 3600) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if assignments:
        inject_parameters(nb, assignments)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
    try:
        client.execute()
    finally:
        tidy_streams(nb)
        nbformat.write(nb, output)
    return nb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="override parameters (Python literals)")
    p.add_argument("--output", type=Path, default=NOTEBOOK, help="where to save the executed notebook")
    args = p.parse_args(argv)
    try:
        execute(args.set, args.output)
    except CellExecutionError as err:
        print(f"error: a cell failed; see the saved notebook {args.output}\n{str(err)[-2000:]}", file=sys.stderr)
        return 1
    print(f"executed notebook saved to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
