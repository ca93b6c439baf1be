"""Notebook 06's result tables: their files, columns and keys, and reading them back.

Free of torch, so `xinterp figures` can read them. `remedies.csv`, `silver.csv`,
`plane_coords.csv` and `plane_reruns.csv` accumulate like `finetune.csv`
(`tables.upsert_rows` with the keys below); the 1D lines are CSVs under
`remedies/lines/` (`lines.LINE_COLUMNS`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .tables import read_table

CELL = ["encoder", "task", "source", "target", "seed"]
REMEDY_COLUMNS = [*CELL, "remedy", "k", "draw", "shot_seed", "eval_lang", "eval_role",
                  "metric", "score", "n_examples", "run_id", "ckpt_src", "lr", "epochs",
                  "batch_size", "shot_passes", "total_steps", "checkpoint"]
REMEDY_KEY = [*CELL, "remedy", "k", "draw", "eval_lang"]
SILVER_COLUMNS = [*CELL, "lang", "metric", "agreement", "n_examples", "silver_key",
                  "run_id", "ckpt_src"]
SILVER_KEY = [*CELL, "lang"]
PLANE_COLUMNS = [*CELL, "remedy", "k", "draw", "scope", "alpha1", "alpha2", "offset_norm",
                 "residual_norm", "outside_fraction", "n_params", "run_id", "ckpt_src",
                 "ckpt_tgt", "ckpt_bi"]
PLANE_KEY = [*CELL, "remedy", "k", "draw", "scope"]
# The yardstick for PLANE_COLUMNS: another seed's end-point (`model` src, tgt or bi of
# `other_seed`, run `run_id`) placed in the plane of the cell's own three end-points.
RERUN_COLUMNS = [*CELL, "other_seed", "model", "scope", "alpha1", "alpha2", "offset_norm",
                 "residual_norm", "outside_fraction", "n_params", "run_id", "ckpt_src",
                 "ckpt_tgt", "ckpt_bi"]
RERUN_KEY = [*CELL, "other_seed", "model", "scope"]
FILES = {"remedies": ("remedies.csv", REMEDY_COLUMNS),
         "silver": ("silver.csv", SILVER_COLUMNS),
         "plane": ("plane_coords.csv", PLANE_COLUMNS),
         "reruns": ("plane_reruns.csv", RERUN_COLUMNS)}
LINE_COLUMNS = [
    "encoder", "task", "source", "target", "seed", "remedy", "k", "draw", "alpha", "scope",
    "eval_lang", "eval_role", "metric", "score", "n_examples", "ckpt_start", "ckpt_end",
    "line_id",
]


def read_remedy_table(results_root: str | Path, name: str) -> pd.DataFrame:
    """Return notebook 06's table `name` ("remedies", "silver", "plane", "reruns") from
    `results_root` (empty with its columns when there is no file)."""
    file, columns = FILES[name]
    return read_table(Path(results_root) / file, columns)


def line_files(results_root: str | Path) -> list[Path]:
    """Return every line CSV under `results_root`/remedies/lines, sorted."""
    return sorted(Path(results_root).glob("remedies/lines/**/*.csv"))


def read_lines(results_root: str | Path) -> pd.DataFrame:
    """Return every line row under `results_root` (run ids as text), or an empty table
    with `LINE_COLUMNS`. Raises ValueError naming a file whose header differs."""
    frames = []
    for path in line_files(results_root):
        frame = pd.read_csv(path, dtype={"ckpt_start": str, "ckpt_end": str, "line_id": str})
        if list(frame.columns) != LINE_COLUMNS:
            raise ValueError(f"{path}: header {list(frame.columns)} is not {LINE_COLUMNS}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=LINE_COLUMNS)


def in_cells(table: pd.DataFrame, cells) -> pd.DataFrame:
    """Return the rows of `table` whose (encoder, task, source, target, seed) is one of
    `cells`, in the table's order."""
    if table.empty:
        return table
    wanted = {tuple(str(v) for v in c) for c in cells}
    keep = [tuple(str(v) for v in r) in wanted
            for r in table[CELL].itertuples(index=False)]
    return table[keep].reset_index(drop=True)
