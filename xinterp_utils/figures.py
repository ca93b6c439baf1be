"""Every figure and Table 1, redrawn from `results/` alone (`xinterp figures PROFILE`).

The notebooks and the `xinterp figures` command share these functions: the rows a
figure is drawn from are read back from the result files (`one_d_rows`, `two_d_rows`,
`geometry_rows`, through `analysis.profile_rows` and `tables`) and drawn with the
profile's settings (`draw_*`), so the same results give byte-identical files whichever of
the two draws them. Nothing here loads a model, needs a GPU or imports torch; Table 1
reads the data folder, not `results/`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from . import analysis, plots
from .settings import PLANE_2D, PLANES, PLANES_1D
from .sweep_rows import sweep_files
from .table1 import write_table1
from .tables import GEOMETRY_COLUMNS, profile_cells, read_table


def one_d_rows(profile, results_root: str | os.PathLike) -> pd.DataFrame:
    """Return the profile's Eq. 1/2 result rows with `norm_score` and `line` added
    (what Figs. 2, 5 and 6-9 are drawn from); empty when there are none."""
    return analysis.profile_rows(profile, results_root, PLANES_1D)


def two_d_rows(profile, results_root: str | os.PathLike) -> pd.DataFrame:
    """Return the profile's Eq. 3 rows, normalised by θ_bi's score averaged over every
    plane it was evaluated in (what Figs. 3 and 10 are drawn from); empty when none."""
    rows = analysis.profile_rows(profile, results_root, PLANES, views=False)
    if rows.empty or not (rows["plane"] == PLANE_2D).any():
        return rows.iloc[0:0]
    rows = analysis.normalise(rows)
    return rows[rows["plane"] == PLANE_2D]


def geometry_rows(profile, results_root: str | os.PathLike) -> pd.DataFrame:
    """Return the rows of `results_root`/geometry.csv that are cells of the profile's grid
    (and of its scope), in file order (what Fig. 4 is drawn from); empty without a file."""
    table = read_table(Path(results_root) / "geometry.csv", GEOMETRY_COLUMNS)
    return profile_cells(table, profile)


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
    # Notebook 06's figures; imported here because remedy_figures builds on this module's
    # readers (`two_d_rows`).
    from .remedy_figures import redraw_remedies

    start = time.perf_counter()
    remedies = redraw_remedies(profile, results_root, out_dir, log=log)
    if remedies:
        done(remedies, start)
    paths = [out_dir / f"fig{n}.{fmt}" for n in sorted(written) for fmt in ("pdf", "png")]
    if table1:
        start = time.perf_counter()
        paths.extend(write_table1(out_dir, source=profile.data))
        log(f"table 1: {time.perf_counter() - start:.1f} s")
    return paths
