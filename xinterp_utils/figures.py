"""Every figure and Table 1, redrawn from `results/` alone (`xinterp figures PROFILE`).

The notebooks and the `xinterp figures` command share these functions: the rows a
figure is drawn from are read back from the result files (`one_d_rows`, `two_d_rows`,
`geometry_rows`) and drawn with the profile's settings (`draw_*`), so the same results
give byte-identical files whichever of the two draws them. Nothing here loads a model,
needs a GPU or imports torch; Table 1 reads the data folder, not `results/`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from . import analysis, plots
from .summary import select_profile_rows

CELL_KEY = ("encoder", "task", "source", "target", "seed")
_ID_COLUMNS = ("ckpt_src", "ckpt_tgt", "ckpt_bi")


def sweep_files(results_root: str | os.PathLike) -> list[Path]:
    """Return every sweep CSV under `results_root`/sweeps, sorted (as `sweeps.sweep_files`)."""
    return sorted(Path(results_root).glob("sweeps/**/*.csv"))


def _profile_sweep_rows(profile, results_root, planes) -> pd.DataFrame:
    files = sweep_files(results_root)
    if not files:
        return pd.DataFrame(columns=list(analysis.RESULT_COLUMNS))
    return select_profile_rows(analysis.load_results(files), profile, planes=planes)


def one_d_rows(profile, results_root: str | os.PathLike) -> pd.DataFrame:
    """Return the profile's Eq. 1/2 result rows with `norm_score` and `line` added
    (what Figs. 2, 5 and 6-9 are drawn from); empty when there are none."""
    rows = _profile_sweep_rows(profile, results_root, ("eq1", "eq2"))
    return analysis.add_views(rows) if not rows.empty else rows


def two_d_rows(profile, results_root: str | os.PathLike) -> pd.DataFrame:
    """Return the profile's Eq. 3 rows, normalised by θ_bi's score averaged over every
    plane it was evaluated in (what Figs. 3 and 10 are drawn from); empty when none."""
    rows = _profile_sweep_rows(profile, results_root, ("eq1", "eq2", "2d"))
    if rows.empty or not (rows["plane"] == "2d").any():
        return rows.iloc[0:0]
    rows = analysis.normalise(rows)
    return rows[rows["plane"] == "2d"]


def geometry_rows(profile, results_root: str | os.PathLike) -> pd.DataFrame:
    """Return the rows of `results_root`/geometry.csv that are cells of the profile's grid
    (and of its scope), in file order (what Fig. 4 is drawn from); empty without a file."""
    path = Path(results_root) / "geometry.csv"
    if not path.is_file():
        return pd.DataFrame(columns=list(CELL_KEY))
    table = pd.read_csv(path, dtype={c: str for c in _ID_COLUMNS})
    missing = [c for c in CELL_KEY if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}")
    cells = {(str(e), str(t), str(s), str(g), str(seed)) for e in profile.encoders
             for t in profile.tasks for s, g in profile.pair_tuples() for seed in profile.seeds}
    keep = [tuple(str(v) for v in r) in cells
            for r in table[list(CELL_KEY)].itertuples(index=False)]
    if "scope" in table.columns:
        keep = [k and s == profile.scope for k, s in zip(keep, table["scope"], strict=True)]
    return table[keep].reset_index(drop=True)


# ------------------------------------------------------------------ drawing


def draw_fig2(rows: pd.DataFrame, profile, out_dir) -> Figure:
    """Return Fig. 2 drawn from `one_d_rows` with the profile's scope (written to `out_dir`)."""
    return plots.fig2_aggregate_1d(rows, out_dir=out_dir, scope=profile.scope)


def draw_task_figures(rows: pd.DataFrame, profile, out_dir) -> list[Figure]:
    """Return Figs. 6-9 (one per task of the profile that has rows), written to `out_dir`."""
    present = set(rows["task"]) if not rows.empty else set()
    return [plots.fig_by_task(rows, task, out_dir=out_dir, scope=profile.scope)
            for task in profile.tasks if task in present]


def draw_fig3(grid: pd.DataFrame, profile, out_dir) -> Figure:
    """Return Fig. 3 for the profile's first encoder, first task and first 2D pair."""
    source, target = profile.pairs_2d_tuples()[0]
    return plots.fig3_2d(grid, out_dir=out_dir, encoder=profile.encoders[0],
                         task=profile.tasks[0], source=source, target=target,
                         scope=profile.scope)


def draw_fig10(grid: pd.DataFrame, profile, out_dir) -> Figure:
    """Return Fig. 10 (the target surface of every 2D configuration), written to `out_dir`."""
    return plots.fig10_2d_grid(grid, out_dir=out_dir, scope=profile.scope, eval_role="target")


def draw_fig5(rows: pd.DataFrame, profile, out_dir) -> Figure:
    """Return Fig. 5 drawn from `one_d_rows` with the profile's scope (written to `out_dir`)."""
    return plots.fig5_variance(rows, out_dir=out_dir, scope=profile.scope)


def draw_fig4(geometry: pd.DataFrame, profile, out_dir) -> Figure:
    """Return Fig. 4 drawn from `geometry_rows` with the profile's scope."""
    return plots.fig4_norm_angle(geometry, out_dir=out_dir, scope=profile.scope)


def redraw(profile, results_root: str | os.PathLike, out_dir: str | os.PathLike, *,
           table1: bool = True, log: Callable[[str], None] = print) -> list[Path]:
    """Redraw every figure the results in `results_root` support, and Table 1, into `out_dir`.

    Figures are those of notebooks 02-06 (Figs. 2-13) with the profile's grid and
    settings; a figure whose rows are absent (no 2D sweeps, no geometry.csv, a task not
    run) is skipped with a line saying so. Table 1 comes from the profile's data source
    (`table1=False` leaves it out). Returns the paths written. Raises FileNotFoundError
    when `results_root` does not exist or holds neither sweeps nor geometry.csv.
    """
    results_root, out_dir = Path(results_root), Path(out_dir)
    if not results_root.is_dir():
        raise FileNotFoundError(f"results folder {results_root} does not exist; run the "
                                "notebooks (run_all.sh) first or pass --results")
    if not sweep_files(results_root) and not (results_root / "geometry.csv").is_file():
        raise FileNotFoundError(f"results folder {results_root} has no sweeps/**/*.csv and "
                                "no geometry.csv: nothing to draw figures from")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[int] = []

    def done(numbers, start):
        written.extend(numbers)
        log(f"fig{', fig'.join(map(str, numbers))}: {time.perf_counter() - start:.1f} s")

    def skip(numbers, why):
        log(f"fig{', fig'.join(map(str, numbers))}: skipped ({why})")

    start = time.perf_counter()
    rows = one_d_rows(profile, results_root)
    if rows.empty:
        skip([2, 5, *plots.TASK_FIGURE.values()], "no Eq. 1/2 rows of this profile")
    else:
        draw_fig2(rows, profile, out_dir)
        tasks = [t for t in profile.tasks if t in set(rows["task"])]
        draw_task_figures(rows, profile, out_dir)
        draw_fig5(rows, profile, out_dir)
        done([2, 5, *(plots.TASK_FIGURE[t] for t in tasks)], start)
    start = time.perf_counter()
    grid = two_d_rows(profile, results_root)
    if grid.empty:
        skip([3, 10], "no 2D rows of this profile")
    else:
        draw_fig3(grid, profile, out_dir)
        draw_fig10(grid, profile, out_dir)
        done([3, 10], start)
    start = time.perf_counter()
    geometry = geometry_rows(profile, results_root)
    if geometry.empty:
        skip([4], "no geometry.csv rows of this profile")
    else:
        draw_fig4(geometry, profile, out_dir)
        done([4], start)
    from .remedy_figures import redraw_remedies  # notebook 06's figures

    start = time.perf_counter()
    remedies = redraw_remedies(profile, results_root, out_dir, log=log)
    if remedies:
        done(remedies, start)
    paths = [out_dir / f"fig{n}.{fmt}" for n in sorted(written) for fmt in ("pdf", "png")]
    if table1:
        from .table1 import write_table1

        start = time.perf_counter()
        paths.extend(write_table1(out_dir, source=profile.data))
        log(f"table 1: {time.perf_counter() - start:.1f} s")
    return paths
