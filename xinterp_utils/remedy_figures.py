"""Notebook 06's figures (fig11 – fig13) redrawn from `results/` alone.

Like `figures.py`: the rows are read back from the result files and drawn with the
profile's settings, so notebook 06 and `xinterp figures` write byte-identical files.
Imports no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from . import remedy_plots
from .figures import two_d_rows
from .remedy_summary import target_scores, variance_by_k
from .remedy_tables import in_cells, read_lines, read_remedy_table

REMEDY_FIGURES = (11, 12, 13)


def _cells(profile) -> list[tuple]:
    settings = profile.remedy_settings()
    return [] if settings is None else settings.cells(profile)


def _scoped_rows(profile, results_root, name: str) -> pd.DataFrame:
    """Return the profile's rows (its remedy cells and scope) of the remedy table `name`."""
    rows = in_cells(read_remedy_table(results_root, name), _cells(profile))
    return rows[rows["scope"] == profile.scope].reset_index(drop=True) if len(rows) else rows


def plane_rows(profile, results_root) -> pd.DataFrame:
    """Return the profile's rows of `plane_coords.csv` (its remedy cells and scope)."""
    return _scoped_rows(profile, results_root, "plane")


def rerun_rows(profile, results_root) -> pd.DataFrame:
    """Return the profile's rows of `plane_reruns.csv` (its remedy cells and scope)."""
    return _scoped_rows(profile, results_root, "reruns")


def score_rows(profile, results_root) -> pd.DataFrame:
    """Return `remedy_summary.target_scores` for the profile's remedy cells: remedy
    models from `remedies.csv`, zero-shot and θ_bi from `finetune.csv`."""
    remedies = in_cells(read_remedy_table(results_root, "remedies"), _cells(profile))
    path = Path(results_root) / "finetune.csv"
    if remedies.empty or not path.is_file():
        return pd.DataFrame()
    # Read directly: finetune.FINETUNE_COLUMNS lives beside torch code.
    return target_scores(remedies, pd.read_csv(path, dtype={"run_id": str}))


def line_rows(profile, results_root) -> pd.DataFrame:
    """Return the profile's line rows (its remedy cells and scope)."""
    rows = in_cells(read_lines(results_root), _cells(profile))
    return rows[rows["scope"] == profile.scope].reset_index(drop=True) if len(rows) else rows


def surface_rows(profile, results_root) -> pd.DataFrame:
    """Return the normalised 2D rows (`figures.two_d_rows`) of the first remedy pair that
    has a 2D grid, for the profile's first encoder; empty when there is none."""
    grid = two_d_rows(profile, results_root)
    settings = profile.remedy_settings()
    if grid.empty or settings is None:
        return grid.iloc[0:0] if len(grid) else grid
    grid = grid[grid["encoder"] == profile.encoders[0]]
    for source, target in settings.pair_tuples(profile):
        part = grid[(grid["source"] == source) & (grid["target"] == target)
                    & grid["task"].isin(settings.task_list(profile))]
        if not part.empty:
            return part
    return grid.iloc[0:0]


def draw_fig11(grid: pd.DataFrame, coords: pd.DataFrame, profile, out_dir):
    """Return fig11 (remedy models on the 2D surfaces), written to `out_dir`."""
    return remedy_plots.fig11_remedies_on_surfaces(grid, coords, out_dir=out_dir)


def draw_fig12(scores: pd.DataFrame, profile, out_dir):
    """Return fig12 (target score and variance by model and k), written to `out_dir`."""
    first = scores[scores["encoder"] == profile.encoders[0]]
    return remedy_plots.fig12_target_vs_k(first, variance_by_k(first), out_dir=out_dir)


def draw_fig13(lines: pd.DataFrame, profile, out_dir):
    """Return fig13 (lines θ_src → remedy models), written to `out_dir`."""
    return remedy_plots.fig13_lines(lines[lines["encoder"] == profile.encoders[0]],
                                    out_dir=out_dir)


def redraw_remedies(profile, results_root: str | os.PathLike, out_dir: str | os.PathLike,
                    log: Callable[[str], None] = print) -> list[int]:
    """Draw fig11 – fig13 from `results_root` into `out_dir` where the results support
    them (remedies on, rows present); log a line for each figure skipped and why.
    Returns the figure numbers written."""
    if profile.remedy_settings() is None:
        log("fig11-fig13: skipped (remedies are off for this profile)")
        return []
    written = []
    coords, grid = plane_rows(profile, results_root), surface_rows(profile, results_root)
    if coords.empty or grid.empty:
        log("fig11: skipped (" + ("no plane_coords.csv rows" if coords.empty else
                                  "no 2D grid for a remedy pair") + ")")
    else:
        draw_fig11(grid, coords, profile, out_dir)
        written.append(11)
    scores = score_rows(profile, results_root)
    if scores.empty:
        log("fig12: skipped (no remedies.csv rows of this profile)")
    else:
        draw_fig12(scores, profile, out_dir)
        written.append(12)
    lines = line_rows(profile, results_root)
    if lines.empty:
        log("fig13: skipped (no remedy line rows of this profile)")
    else:
        draw_fig13(lines, profile, out_dir)
        written.append(13)
    return written
