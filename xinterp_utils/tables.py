"""The result tables that accumulate across runs (`finetune.csv`, `training_curves.csv`,
`geometry.csv`): their columns and keys, defined once here, and how rows go in.

A run writes only its own rows into a table: rows of other tasks, pairs or seeds that
earlier runs put there are kept. Running one seed or one pair of a profile therefore
never loses what a run of another subset computed. (The sweep CSVs are append-only
instead: `sweep_rows.py`.)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .paths import atomic_write
from .profiles import pair_grid, plan_runs

# (encoder, task, source, target, seed): one cell of a profile's grid.
CELL_KEY = ["encoder", "task", "source", "target", "seed"]

# finetune.csv: each pair's three models (`config.MODEL_ROLES`) on both dev sets.
FINETUNE_COLUMNS = [
    "encoder", "task", "source", "target", "seed", "model", "train_langs", "eval_lang",
    "eval_role", "metric", "score", "n_examples", "run_id", "checkpoint",
]
# What identifies a row of finetune.csv (a later run of the same cell replaces it).
FINETUNE_KEY = ["encoder", "task", "source", "target", "seed", "model", "eval_lang"]

# training_curves.csv: one row per run, evaluation point and dev language. `epoch` is the
# number of epochs done at that point (fractional between epoch ends), `step` the
# optimiser steps done, `train_loss` the mean training loss since the previous point.
CURVE_COLUMNS = ["encoder", "task", "train_langs", "seed", "run_id", "epoch", "step",
                 "eval_lang", "score", "train_loss"]
CURVE_KEY = ["encoder", "task", "train_langs", "seed", "run_id", "step", "eval_lang"]

# geometry.csv: norms, ratio and angle of δ_src, δ_tgt per sweep (`geometry.geometry_row`).
GEOMETRY_COLUMNS = ["encoder", "task", "source", "target", "seed", "scope", "norm_src",
                    "norm_tgt", "ratio", "cos", "angle_deg", "n_params",
                    "ckpt_src", "ckpt_tgt", "ckpt_bi"]
# What identifies a row of geometry.csv (a later run of the same sweep replaces it).
GEOMETRY_KEY = ["encoder", "task", "source", "target", "seed", "scope"]


def _id_columns(columns) -> dict:
    # Run ids are hex strings; an all-digit one must not be read as a number.
    return {c: str for c in columns if c == "run_id" or c.startswith("ckpt_")}


def read_table(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """Return the table at `path` (run ids as strings), or an empty one with `columns`
    when there is no file. Raises ValueError naming the file when its header differs."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    table = pd.read_csv(path, dtype=_id_columns(columns))
    if list(table.columns) != list(columns):
        raise ValueError(f"{path}: header {list(table.columns)} is not {list(columns)}; "
                         "move the file away or fix its header")
    return table


def _key(row: dict, key: list[str]) -> tuple:
    return tuple(str(row[k]) for k in key)


def upsert_rows(path: str | Path, new: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Write `new` into the table at `path`: a row whose `key` values match an existing
    row replaces it in place, other new rows are appended, all other rows are kept.
    Returns the table as written (the file is replaced atomically)."""
    columns = list(new.columns)
    rows = {_key(r, key): r for r in read_table(path, columns).to_dict("records")}
    for row in new.to_dict("records"):
        rows[_key(row, key)] = row  # a dict keeps a replaced key at its old position
    merged = pd.DataFrame(list(rows.values()), columns=columns)
    with atomic_write(Path(path), "w") as handle:
        merged.to_csv(handle, index=False, float_format="%.6f")
    return merged


def profile_runs(table: pd.DataFrame, profile) -> pd.DataFrame:
    """Return the rows of `table` (one with a `run_id` column, e.g. the learning curves)
    that belong to a fine-tuning run of `profile`'s grid, in the table's order."""
    ids = {config.run_hash() for config in plan_runs(profile)}
    return table[table["run_id"].astype(str).isin(ids)].reset_index(drop=True)


def profile_cells(table: pd.DataFrame, profile) -> pd.DataFrame:
    """Return the rows of `table` whose (encoder, task, source, target, seed) is a cell
    of `profile`'s grid (and, for a table with a `scope` column, whose scope is the
    profile's), in the table's order."""
    cells = {tuple(str(v) for v in cell) for cell in pair_grid(profile)}
    keep = [_key(r, CELL_KEY) in cells for r in table[CELL_KEY].to_dict("records")]
    if "scope" in table.columns:
        keep = [k and s == profile.scope for k, s in zip(keep, table["scope"], strict=True)]
    return table[keep].reset_index(drop=True)
