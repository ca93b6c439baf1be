"""Execute the companion's notebooks headless with papermill, in order.

`python -m xinterp_utils.notebooks run PROFILE [key=value ...]` runs
`notebooks/01_*.ipynb … 05_*.ipynb` with the parameters `profile` and `overrides`,
writes each executed copy to `notebooks/executed/`, and stops at the first notebook
that fails, naming it and the failing cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .paths import repo_root


def notebook_paths(folder: Path | None = None) -> list[Path]:
    """Return the numbered notebooks (01_…05_) in execution order."""
    folder = folder or repo_root() / "notebooks"
    return sorted(p for p in folder.glob("0[0-9]_*.ipynb"))


def execute_notebook(
    source: Path, output: Path, parameters: dict, *, kernel: str = "python3", cwd: Path | None = None
) -> float:
    """Run one notebook with papermill; return the wall time in seconds.

    Raises RuntimeError naming the notebook and the failing cell (its execution count
    and first line) when a cell raises.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        papermill.execute_notebook(
            str(source), str(output), parameters=parameters, kernel_name=kernel,
            cwd=str(cwd or source.parent), progress_bar=False, log_output=False,
        )
    except PapermillExecutionError as err:
        raise RuntimeError(
            f"{source.name}: cell {err.exec_count} failed: {err.ename}: {err.evalue}\n"
            f"(executed copy with the traceback: {output})"
        ) from None
    return time.time() - started


def run(profile: str, overrides: list[str], *, only: list[str] | None = None,
        out_dir: Path | None = None) -> list[Path]:
    """Execute the notebooks in order with `profile` and `overrides`; return executed paths."""
    out_dir = out_dir or repo_root() / "notebooks" / "executed"
    done = []
    for source in notebook_paths():
        if only and not any(source.name.startswith(o) for o in only):
            continue
        output = out_dir / source.name
        print(f"run_all: {source.name} …", flush=True)
        seconds = execute_notebook(source, output, {"profile": profile,
                                                    "overrides": list(overrides)})
        print(f"run_all: {source.name} done in {seconds:.0f} s -> {output}", flush=True)
        done.append(output)
    return done


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m xinterp_utils.notebooks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute the notebooks in order")
    p.add_argument("profile")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
    args = parser.parse_args(argv)
    from .profiles import load_profile

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
