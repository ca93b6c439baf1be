"""Execute the companion's notebooks headless with papermill, in order.

`python -m xinterp_utils.notebooks run PROFILE [key=value ...]` runs
`notebooks/01_*.ipynb … 06_*.ipynb` with the parameters `profile` and `overrides`,
writes each executed copy to `notebooks/executed/<profile>/`, and stops at the first
notebook that fails, naming it and the failing cell. The executed copies keep their
tables and inline figures and are tidied for reading (`tidy_streams`): those of the
`repro` profile are committed, for GitHub to render.

While a notebook runs, the terminal shows what it does (`NotebookProgress`): each code
cell as it starts, the kernels' own output (progress bars of training, sweeps and jobs
with rate and ETA, reduced to their latest state), a heartbeat after 30 s without
output, and at the end the time each notebook took. Without a terminal (CI logs) the
kernels' progress bars redraw at most every 10 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Self

from .paths import atomic_write, repo_root
from .profiles import load_profile

# Seconds between progress-bar redraws in the kernels: often on a terminal, rarely in a
# log file (a redraw there is a line of its own).
TTY_BAR_INTERVAL_S, LOG_BAR_INTERVAL_S = 1, 10
HEARTBEAT_S = 30
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CELL = re.compile(r"^(Executing|Ending) Cell (\d+)-*$")


def _first_line(source: str) -> str:
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line[:70]
    return "(comments only)"


class NotebookProgress(logging.Handler):
    """Turns papermill's log of one notebook (cell starts, kernel output) into short
    progress lines on `stream`, prefixed with the notebook's number; a thread prints a
    heartbeat when nothing was shown for `heartbeat_s` seconds."""

    def __init__(self, notebook: Path, stream=None, heartbeat_s: float = HEARTBEAT_S):
        super().__init__(logging.INFO)
        self.stream = stream or sys.stdout
        self.tag = notebook.name.split("_", 1)[0]
        cells = json.loads(notebook.read_text())["cells"]
        # papermill inserts its injected-parameters cell right after the `parameters` cell.
        tagged = [i for i, c in enumerate(cells)
                  if "parameters" in c.get("metadata", {}).get("tags", [])]
        if tagged:
            injected = {"cell_type": "code", "source": "(parameters injected by papermill)"}
            cells = [*cells[:tagged[0] + 1], injected, *cells[tagged[0] + 1:]]
        self.code = {i + 1: _first_line("".join(c["source"])) for i, c in enumerate(cells)
                     if c["cell_type"] == "code"}
        self.n_cells = len(cells)
        self.cell: int | None = None
        self.cell_started = self.last_shown = time.time()
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Self:
        logger = logging.getLogger("papermill")
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # papermill's own handlers would print it all again
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        logging.getLogger("papermill").removeHandler(self)

    def show(self, text: str) -> None:
        """Print one progress line for this notebook."""
        self.stream.write(f"  {self.tag} | {text}\n")
        self.stream.flush()
        self.last_shown = time.time()

    def emit(self, record: logging.LogRecord) -> None:
        """Show a cell start, or the latest state of each line the kernel printed."""
        message = record.getMessage()
        match = _CELL.match(message.strip())
        if match:
            if match.group(1) == "Executing":
                self.cell, self.cell_started = int(match.group(2)), time.time()
                if self.cell in self.code:
                    self.show(f"cell {self.cell}/{self.n_cells}: {self.code[self.cell]}")
            return
        if not message.startswith(("Executing notebook", "Input Notebook", "Output Notebook",
                                   "Working directory", "Executing")):
            for line in _ANSI.sub("", message).split("\n"):
                # A progress bar redraws with carriage returns: keep its latest state.
                latest = next((part.strip() for part in reversed(line.split("\r"))
                               if part.strip()), "")
                if latest:
                    self.show(latest)

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            if self.cell is not None and time.time() - self.last_shown >= self.heartbeat_s:
                running = time.time() - self.cell_started
                self.show(f"cell {self.cell}/{self.n_cells} still running "
                          f"({running / 60:.0f} min {running % 60:02.0f} s)")


def executed_dir(profile: str) -> Path:
    """Return the folder that holds a profile's executed notebooks."""
    return repo_root() / "notebooks" / "executed" / profile


def notebook_paths(folder: Path | None = None) -> list[Path]:
    """Return the numbered notebooks (01_…06_) in execution order."""
    folder = folder or repo_root() / "notebooks"
    return sorted(p for p in folder.glob("0[0-9]_*.ipynb"))


def _terminal_text(text: str) -> str:
    """Return `text` as a terminal shows it: ANSI codes removed, and of each line only
    what its last carriage return redrew (a progress bar's final state). A line that a
    bar erased when it closed (tqdm's `leave=False` writes blanks over it) is dropped."""
    lines = []
    for line in _ANSI.sub("", text).split("\n"):
        if "\r" not in line:
            lines.append(line)
            continue
        # "bar 10%\rbar 50%\r" ends in an empty part: the text before it is what stays.
        parts = [part for part in line.split("\r") if part]
        if parts and parts[-1].strip():
            lines.append(parts[-1].rstrip())
    return "\n".join(lines)


def tidy_streams(path: Path) -> int:
    """Rewrite the executed notebook at `path` (atomically) with each cell's printed
    streams reduced to what a terminal would show (`_terminal_text`), so that a progress
    bar's hundreds of redraws become its final line; return the characters removed (plus
    the number of outputs merged; 0 means the file was left untouched)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    removed = 0
    for cell in nb.cells:
        if "outputs" not in cell:
            continue
        # The kernel sends a bar's redraws as separate messages; a front-end shows
        # consecutive outputs of one stream as one text, so they are tidied as one.
        merged = []
        for output in cell.outputs:
            previous = merged[-1] if merged else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream"
                    and previous["name"] == output["name"]):
                previous["text"] += output["text"]
            else:
                merged.append(output)
        outputs = []
        for output in merged:
            if output.get("output_type") == "stream":
                text = output["text"]
                output["text"] = _terminal_text(text)
                removed += len(text) - len(output["text"])
                if not output["text"]:
                    continue
            outputs.append(output)
        removed += len(cell.outputs) - len(merged)  # a merge changes the file too
        cell.outputs = outputs
    if removed:
        with atomic_write(path, "w") as handle:
            nbformat.write(nb, handle)
    return removed


def execute_notebook(
    source: Path, output: Path, parameters: dict, *, kernel: str = "python3",
    cwd: Path | None = None, heartbeat_s: float = HEARTBEAT_S,
) -> float:
    """Run one notebook with papermill into `output`; return the wall time in seconds.

    papermill rewrites its output after every cell, so it writes to a running copy
    beside `output` (``<name>.running.ipynb``) that replaces `output` only once the
    notebook has finished: an earlier executed copy (the committed ones of `repro`) stays
    whole while a run is under way, is cut short or fails. A failing notebook's copy is
    kept as ``<name>.failed.ipynb``; the RuntimeError names it, the notebook and the
    failing cell (its execution count and first line).
    """
    # papermill (and its nbclient/jupyter stack) takes seconds to import; only executing a
    # notebook needs it, not the progress helpers or `xinterp` itself.
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    running = output.with_name(f"{output.stem}.running.ipynb")
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    started = time.time()
    # Kernels inherit this environment: their tqdm bars redraw rarely in a log file.
    interval = TTY_BAR_INTERVAL_S if sys.stdout.isatty() else LOG_BAR_INTERVAL_S
    os.environ.setdefault("TQDM_MININTERVAL", str(interval))
    try:
        with NotebookProgress(source, heartbeat_s=heartbeat_s):
            papermill.execute_notebook(
                str(source), str(running), parameters=parameters, kernel_name=kernel,
                cwd=str(cwd or source.parent), progress_bar=False, log_output=True,
            )
    except PapermillExecutionError as err:
        os.replace(running, failed)
        raise RuntimeError(
            f"{source.name}: cell {err.exec_count} failed: {err.ename}: {err.evalue}\n"
            f"(executed copy with the traceback: {failed})"
        ) from None
    tidy_streams(running)
    os.replace(running, output)
    failed.unlink(missing_ok=True)
    return time.time() - started


def run(profile: str, overrides: list[str], *, only: list[str] | None = None,
        out_dir: Path | None = None) -> list[Path]:
    """Execute the notebooks in order with `profile` and `overrides` (only those whose
    names start with a prefix in `only`, when given); return the executed copies' paths
    (in `out_dir`, by default `notebooks/executed/<profile>/`). Raise ValueError when a
    prefix in `only` matches no notebook, before executing any."""
    out_dir = out_dir or executed_dir(profile)
    done, times = [], {}
    paths = notebook_paths()
    unmatched = [o for o in only or [] if not any(p.name.startswith(o) for p in paths)]
    if unmatched:
        raise ValueError(f"only={unmatched}: no notebook name starts with that; the "
                         f"notebooks are {[p.name for p in paths]}")
    sources = [p for p in paths if not only or any(p.name.startswith(o) for o in only)]
    for k, source in enumerate(sources, 1):
        output = out_dir / source.name
        print(f"run_all: notebook {k}/{len(sources)} {source.name} …", flush=True)
        seconds = execute_notebook(source, output, {"profile": profile,
                                                    "overrides": list(overrides)})
        times[source.name] = seconds
        print(f"run_all: {source.name} done in {_duration(seconds)} -> {output}", flush=True)
        done.append(output)
    if times:
        print("run_all: time per notebook: " + ", ".join(
            f"{name.split('_', 1)[0]} {_duration(t)}" for name, t in times.items())
            + f"; total {_duration(sum(times.values()))}", flush=True)
    return done


def _duration(seconds: float) -> str:
    """Return `seconds` as e.g. "42 s" or "3 min 05 s"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m xinterp_utils.notebooks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute the notebooks in order")
    p.add_argument("profile")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
    args = parser.parse_args(argv)
    try:
        cfg = load_profile(args.profile, args.overrides)
        executed = run(args.profile, args.overrides, only=args.only)
    except (RuntimeError, ValueError) as err:
        print(f"run_all: FAILED {err}", file=sys.stderr)
        return 1
    root = repo_root()
    print(f"run_all: done. checkpoints: {root / cfg.checkpoints}\n"
          f"         results:     {root / cfg.results}\n"
          f"         figures:     {root / cfg.figures}\n"
          f"         notebooks:   {executed[0].parent if executed else '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
