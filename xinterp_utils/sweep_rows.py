"""The sweep CSVs (`results/sweeps/**.csv`): their columns, and appending to them so that
a killed sweep resumes where it stopped.

One row per evaluation (schema in docs/ARCHITECTURE.md, "Result rows"), appended and
flushed as each point finishes; a row is keyed by (plane, α, α1, α2, eval_lang) within
its sweep id. Free of torch: the readers (analysis, figures) use `RESULT_COLUMNS` too.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

RESULT_COLUMNS = (
    "encoder", "task", "source", "target", "seed", "plane", "alpha", "alpha1", "alpha2",
    "scope", "eval_lang", "eval_role", "metric", "score", "n_examples",
    "ckpt_src", "ckpt_tgt", "ckpt_bi", "sweep_id",
)


def sweep_files(results_root: str | os.PathLike) -> list[Path]:
    """Return every sweep CSV under `results_root`/sweeps, sorted (read them with
    `analysis.load_results`)."""
    return sorted(Path(results_root).glob("sweeps/**/*.csv"))


def row_key(row: dict) -> tuple:
    """Return what identifies a row within its sweep: (plane, α, α1, α2, eval_lang), the
    α values as 6-decimal text so that float noise does not split a point."""
    alpha = "" if row["alpha"] in ("", None) else f"{float(row['alpha']):.6f}"
    return (row["plane"], alpha, f"{float(row['alpha1']):.6f}", f"{float(row['alpha2']):.6f}",
            row["eval_lang"])


def read_complete_rows(path: Path, columns, *, repair: bool = True) -> list[dict]:
    """Return the rows (dicts of text) of the append-only CSV at `path`, [] when it does
    not exist. A trailing partial line (a write cut by a kill) is ignored, and with
    `repair` also dropped from the file. Raises ValueError naming the file when its header
    is not `columns`."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(cut)
        data = data[:cut]
    reader = csv.DictReader(io.StringIO(data.decode()))
    if reader.fieldnames and reader.fieldnames != list(columns):
        raise ValueError(f"{path}: header {reader.fieldnames} is not {list(columns)}")
    return list(reader)


def append_csv_rows(path: Path, rows: list[dict], columns) -> None:
    """Append `rows` (dicts with `columns`) to the CSV at `path`, with a header when the
    file is new, in one write flushed to disk."""
    new = not path.is_file() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    if new:
        writer.writeheader()
    writer.writerows(rows)
    # One write per point, flushed to disk, so a kill loses at most the point in flight.
    with open(path, "a") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def read_done(path: Path, sweep_id: str, *, repair: bool = True) -> set[tuple]:
    """Return the keys (`row_key`) of rows of `sweep_id` already in `path`.

    A trailing partial line (a write cut by a kill) is ignored, and with `repair` also
    dropped from the file.
    """
    rows = read_complete_rows(path, RESULT_COLUMNS, repair=repair)
    return {row_key(r) for r in rows if r["sweep_id"] == sweep_id}


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append `rows` (dicts with `RESULT_COLUMNS`) to the CSV at `path`, with a header when
    the file is new, in one write flushed to disk."""
    append_csv_rows(path, rows, RESULT_COLUMNS)


def pending_points(spec, done: set[tuple]) -> list[tuple]:
    """Return the points of `spec` (as in `SweepSpec.points`) that lack a row in `done`
    (`read_done`) on the source or the target dev set."""
    return [p for p in spec.points()
            if any(row_key({"plane": p[0], "alpha": p[1], "alpha1": p[2], "alpha2": p[3],
                            "eval_lang": lang}) not in done
                   for lang in (spec.source, spec.target))]


def sweep_complete(spec, results_root: str | Path) -> bool:
    """Return True when every point of `spec` has its rows in the sweep's CSV (read only;
    the file is not touched)."""
    done = read_done(spec.result_path(results_root), spec.sweep_id(), repair=False)
    return not pending_points(spec, done)
