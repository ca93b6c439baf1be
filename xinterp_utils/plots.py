"""The paper's figures, drawn from result tables only (no model, no GPU).

Each `fig*` function returns a `matplotlib.figure.Figure` and, given `out_dir`, writes
`fig<N>.pdf` and `fig<N>.png` there atomically. Figures are built as plain `Figure`
objects (not through pyplot), so they need no GUI backend, leave pyplot's state and a
notebook's inline backend alone, and are freed when no longer referenced; a notebook
displays a returned Figure as usual.

Inputs are result rows as returned by `analysis.load_results`; normalised scores and
the end-point view are added when missing (`analysis.add_views`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import analysis
from .paths import atomic_write
from .settings import PLANE_2D, PLANES_1D

# Figures 6-9 are Fig. 2 restricted to one task (paper appendix); edit here if the
# numbering turns out different.
TASK_FIGURE = {"xnli": 6, "ner": 7, "pos": 8, "parsing": 9}
LEVELS_2D = (0.30, 0.50, 0.70, 0.90, 0.95, 0.99)
PAPER_ANGLE_DEG = 55.0  # App. B: δ_src and δ_tgt are about 55° apart
NO_VARIANCE_NOTE = "a variance across seeds needs\ntwo or more seeds per pair:\nthese results have one"

_PANEL_W, _PANEL_H = 4.2, 3.2
_LINE_COLOR = {"endpoint language": "C0", "other language": "C3"}
_PLANE_STYLE = {"eq1": "-", "eq2": "--"}
_PLANE_LABEL = {"eq1": "Eq. 1 (θ_src↔θ_bi)", "eq2": "Eq. 2 (θ_tgt↔θ_bi)"}
# How a dev set is named in titles, by its eval_role.
ROLE_LABEL = {"target": "target language", "source": "source language"}
_X_LABEL_1D = "α (0 = monolingual end-point, 1 = bilingual)"


def save_figure(fig: Figure, out_dir: str | os.PathLike, fig_number: int) -> list[Path]:
    """Write `fig` as `fig<N>.pdf` and `fig<N>.png` in `out_dir` (atomically); return the paths."""
    # No creation date in the PDF: the same results must give byte-identical figures, so a
    # rerun that changed nothing leaves nothing to commit.
    metadata = {"pdf": {"CreationDate": None}, "png": None}
    written = []
    for fmt in ("pdf", "png"):
        path = Path(out_dir) / f"fig{fig_number}.{fmt}"
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=150, metadata=metadata[fmt])
        written.append(path)
    return written


def _finish(fig: Figure, out_dir: str | os.PathLike | None, fig_number: int) -> Figure:
    if out_dir is not None:
        save_figure(fig, out_dir, fig_number)
    return fig


def _select(df: pd.DataFrame, what: str, **equal) -> pd.DataFrame:
    """Rows where each column equals its value (None = any); an empty result is an error."""
    for col, value in equal.items():
        if value is None:
            continue
        if col not in df.columns:
            raise ValueError(f"{what}: the table has no column {col!r}")
        kept = df[df[col] == value]
        if kept.empty:
            have = sorted(map(str, df[col].dropna().unique()))
            raise ValueError(f"{what}: no rows with {col}={value!r}; the table has {have}")
        df = kept
    return df


def _new_figure(nrows: int, ncols: int, *, sharey: bool = False, extra_w: float = 0.0):
    fig = Figure(figsize=(_PANEL_W * ncols + extra_w, _PANEL_H * nrows + 0.6),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, axes


def _alpha_guides(ax) -> None:
    ax.set_xticks([-0.5, 0.0, 0.5, 1.0, 1.5])
    for x in (0.0, 1.0):
        ax.axvline(x, color="0.55", lw=0.8, ls=":", zorder=0)
    ax.axhline(1.0, color="0.8", lw=0.6, zorder=0)


def _draw_band_lines(ax, agg: pd.DataFrame) -> None:
    """One line per (plane, line) with its shaded CI; labels name both."""
    for plane in PLANES_1D:
        for line in analysis.LINES:
            part = agg[(agg["plane"] == plane) & (agg["line"] == line)].sort_values("alpha")
            if part.empty:
                continue
            x = part["alpha"].to_numpy(float)
            ax.plot(x, part["mean"].to_numpy(float), color=_LINE_COLOR[line],
                    ls=_PLANE_STYLE[plane], lw=1.5, label=f"{_PLANE_LABEL[plane]}: {line}")
            ax.fill_between(x, part["lo"].to_numpy(float), part["hi"].to_numpy(float),
                            color=_LINE_COLOR[line], alpha=0.15, lw=0)


def _legend_below(fig: Figure, axes) -> None:
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        # Two columns only when there is room: a single panel is narrower than two labels.
        ncols = 2 if np.shape(axes)[-1] > 1 else 1
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize="small")


def _plot_1d(df: pd.DataFrame, fig_number: int, title: str, scope: str,
             confidence: float) -> Figure:
    df = _select(df[df["plane"].isin(PLANES_1D)], f"figure {fig_number}", scope=scope)
    agg = analysis.aggregate_1d(df, by=("encoder", "source", "plane", "line"),
                                confidence=confidence)
    encoders = sorted(agg["encoder"].unique())
    sources = sorted(agg["source"].unique())
    fig, axes = _new_figure(len(encoders), len(sources), sharey=True,
                            extra_w=1.2 if len(sources) == 1 else 0.0)
    for r, encoder in enumerate(encoders):
        for c, source in enumerate(sources):
            ax = axes[r, c]
            part = agg[(agg["encoder"] == encoder) & (agg["source"] == source)]
            _draw_band_lines(ax, part)
            _alpha_guides(ax)
            ax.set_title(f"{encoder}, source {source}", fontsize="medium")
            ax.set_xlabel(_X_LABEL_1D)
            if c == 0:
                ax.set_ylabel("score / bilingual score")
    _legend_below(fig, axes)
    pct = round(confidence * 100)
    fig.suptitle(f"Figure {fig_number}: {title} (mean, {pct}% CI)")
    return fig


def fig2_aggregate_1d(df: pd.DataFrame, out_dir: str | os.PathLike | None = None, *,
                      scope: str = "all", confidence: float = 0.95) -> Figure:
    """Return Fig. 2: 1D interpolation aggregated over pairs, tasks and seeds.

    One panel per encoder (rows) x source language (columns); x = α, y = normalised
    score; four lines (Eq. 1 / Eq. 2 x end-point / other language) with shaded CIs.
    """
    return _finish(_plot_1d(df, 2, "1D interpolation, all tasks", scope, confidence),
                   out_dir, 2)


def fig_by_task(df: pd.DataFrame, task: str, fig_number: int | None = None,
                out_dir: str | os.PathLike | None = None, *, scope: str = "all",
                confidence: float = 0.95) -> Figure:
    """Return Fig. 2 restricted to `task` (Figs. 6-9; number from TASK_FIGURE by default)."""
    if fig_number is None:
        if task not in TASK_FIGURE:
            raise ValueError(f"unknown task {task!r}; expected one of {tuple(TASK_FIGURE)}")
        fig_number = TASK_FIGURE[task]
    sub = _select(df, f"figure {fig_number}", task=task)
    return _finish(_plot_1d(sub, fig_number, f"1D interpolation, {task}", scope, confidence),
                   out_dir, fig_number)


def contour_panel(ax, rows: pd.DataFrame, title: str, *, clip_to_grid: bool = True):
    """Draw the filled and labelled contours of one Eq. 3 surface (`rows`: one dev set's
    grid, score or norm_score) on `ax`, with the three end-points marked; return the
    filled contour set for a colour bar. `clip_to_grid` fixes the axes to the grid's
    extent; without it they grow to show points drawn later outside the grid."""
    a1, a2, z = analysis.grid_2d(rows)
    if len(a1) < 2 or len(a2) < 2:
        raise ValueError(f"{title}: a contour needs at least 2 values of alpha1 and alpha2, "
                         f"got {len(a1)} x {len(a2)}")
    z = np.ma.masked_invalid(z)
    filled = ax.contourf(a1, a2, z, levels=LEVELS_2D, extend="both", cmap="viridis")
    lines = ax.contour(a1, a2, z, levels=LEVELS_2D, colors="k", linewidths=0.6)
    ax.clabel(lines, fmt="%.2f", fontsize="x-small")
    for (x, y), name in (((0, 0), r"$\theta_{bi}$"), ((1, 0), r"$\theta_{src}$"),
                         ((0, 1), r"$\theta_{tgt}$")):
        ax.plot([x], [y], marker="o", color="white", mec="k", ms=6, ls="none", clip_on=False,
                zorder=5)
        ax.annotate(name, (x, y), xytext=(5, 5), textcoords="offset points", fontsize="medium",
                    annotation_clip=False, zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.75})
    if clip_to_grid:
        ax.set_xlim(a1.min(), a1.max())
        ax.set_ylim(a2.min(), a2.max())
    ax.set_xlabel(r"$\alpha_1$ (along $\delta_{src}$)")
    ax.set_ylabel(r"$\alpha_2$ (along $\delta_{tgt}$)")
    ax.set_title(title, fontsize="medium")
    ax.set_aspect("equal", adjustable="box" if clip_to_grid else "datalim")
    return filled


def _prepare_2d(df: pd.DataFrame, what: str, scope: str) -> pd.DataFrame:
    rows = _select(df[df["plane"] == PLANE_2D] if "plane" in df.columns else df, what, scope=scope)
    if rows.empty:
        raise ValueError(f"{what}: no 2d rows in the table")
    if "norm_score" not in rows.columns:
        # The bilingual point (0, 0) lies in the 2d plane itself.
        rows = analysis.normalise(rows)
    return rows


def fig3_2d(df: pd.DataFrame, out_dir: str | os.PathLike | None = None, *,
            encoder: str | None = None, task: str | None = None, source: str | None = None,
            target: str | None = None, scope: str = "all",
            eval_roles: Sequence[str] = ("target", "source"), fig_number: int = 3) -> Figure:
    """Return Fig. 3: contours of the normalised score over (α1, α2) for one pair.

    One panel per evaluation role (target, then source language), seeds averaged,
    levels LEVELS_2D; θ_bi, θ_src, θ_tgt marked at (0,0), (1,0), (0,1). The arguments
    must leave one (encoder, task, source, target) in the table.
    """
    what = f"figure {fig_number}"
    rows = _select(_prepare_2d(df, what, scope), what, encoder=encoder, task=task,
                   source=source, target=target)
    configs = rows[["encoder", "task", "source", "target"]].drop_duplicates()
    if len(configs) > 1:
        found = [" ".join(map(str, c)) for c in configs.itertuples(index=False)]
        raise ValueError(f"{what}: pick one of (encoder task source target): {found}")
    enc, tsk, src, tgt = configs.iloc[0]
    fig, axes = _new_figure(1, len(eval_roles), extra_w=1.0)
    filled = None
    for ax, role in zip(axes[0], eval_roles, strict=True):
        part = _select(rows, what, eval_role=role)
        filled = contour_panel(ax, part, f"{tsk} {src}→{tgt}: {ROLE_LABEL[role]}")
    fig.colorbar(filled, ax=list(axes[0]), label="score / bilingual score", shrink=0.8)
    fig.suptitle(f"Figure {fig_number}: 2D interpolation, {enc}")
    return _finish(fig, out_dir, fig_number)


def fig10_2d_grid(df: pd.DataFrame, out_dir: str | os.PathLike | None = None, *,
                  scope: str = "all", eval_role: str = "target", ncols: int = 4,
                  fig_number: int = 10) -> Figure:
    """Return Fig. 10: Fig. 3's contours for every (encoder, task, source, target), one panel each."""
    what = f"figure {fig_number}"
    rows = _select(_prepare_2d(df, what, scope), what, eval_role=eval_role)
    configs = rows[["encoder", "task", "source", "target"]].drop_duplicates().sort_values(
        ["encoder", "task", "source", "target"])
    n = len(configs)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = _new_figure(nrows, ncols, extra_w=1.0)
    flat = list(axes.ravel())
    filled = None
    for ax, (enc, tsk, src, tgt) in zip(flat, configs.itertuples(index=False), strict=False):
        part = rows[(rows["encoder"] == enc) & (rows["task"] == tsk) & (rows["source"] == src)
                    & (rows["target"] == tgt)]
        filled = contour_panel(ax, part, f"{enc}\n{tsk} {src}→{tgt}")
    for ax in flat[n:]:
        ax.set_axis_off()
    fig.colorbar(filled, ax=flat[:n], shrink=0.8,
                 label=f"score / bilingual score ({ROLE_LABEL[eval_role]})")
    fig.suptitle(f"Figure {fig_number}: 2D interpolation, {ROLE_LABEL[eval_role]} evaluation")
    return _finish(fig, out_dir, fig_number)


def fig5_variance(df: pd.DataFrame, out_dir: str | os.PathLike | None = None, *,
                  scope: str = "all", confidence: float = 0.95) -> Figure:
    """Return Fig. 5: variance across seeds of the normalised score vs α, one panel per encoder.

    Lines: Eq. 1 / Eq. 2 x end-point / other language, the seed variance pooled over
    pairs and tasks with its shaded chi-square interval, which never goes below 0 (see
    `analysis.normalised_variance` and `analysis.variance_ci`; `analysis.seed_variance`
    for the normalisation); the y axis starts at 0. A panel whose results hold one seed
    per pair says so (`NO_VARIANCE_NOTE`) instead of drawing lines.
    """
    what = "figure 5"
    rows = _select(df[df["plane"].isin(PLANES_1D)], what, scope=scope)
    agg = analysis.normalised_variance(rows, by=("encoder", "plane", "line"),
                                       confidence=confidence)
    encoders = sorted(agg["encoder"].unique())
    fig, axes = _new_figure(1, len(encoders), sharey=True)
    for ax, encoder in zip(axes[0], encoders, strict=True):
        part = agg[agg["encoder"] == encoder]
        if part["mean"].notna().any():
            _draw_band_lines(ax, part)
            ax.set_ylim(bottom=0)  # a variance is never negative
        else:
            # One seed per pair (e.g. a first stage of a run): say so rather than draw an
            # empty axis that reads as "no variance".
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            ax.text(0.5, 0.5, NO_VARIANCE_NOTE, transform=ax.transAxes, ha="center",
                    va="center", fontsize="medium", color="0.3")
        ax.set_xticks([-0.5, 0.0, 0.5, 1.0, 1.5])
        for x in (0.0, 1.0):
            ax.axvline(x, color="0.55", lw=0.8, ls=":", zorder=0)
        ax.set_title(encoder, fontsize="medium")
        ax.set_xlabel(_X_LABEL_1D)
    axes[0, 0].set_ylabel("variance across seeds of\nscore / bilingual score")
    _legend_below(fig, axes)
    fig.suptitle(f"Figure 5: variance across seeds\n(pooled, {round(confidence * 100)}% "
                 "χ² interval)")
    return _finish(fig, out_dir, 5)


def fig4_norm_angle(geometry_df: pd.DataFrame, out_dir: str | os.PathLike | None = None, *,
                    scope: str | None = "all") -> Figure:
    """Return Fig. 4: ‖δ_src‖/‖δ_tgt‖ against the angle between δ_src and δ_tgt (degrees).

    `geometry_df` has one row per (pair, seed) with `task`, `ratio`, `angle_deg` (as from
    `analysis.delta_geometry`) and optionally `encoder` (one panel each) and `scope`
    (filtered to `scope`). Colour = task; guides at ratio 1 and at the paper's ≈55°.
    """
    what = "figure 4"
    missing = [c for c in ("task", "ratio", "angle_deg") if c not in geometry_df.columns]
    if missing:
        raise ValueError(f"{what}: geometry table lacks column(s) {missing}")
    rows = geometry_df
    if scope is not None and "scope" in rows.columns:
        rows = _select(rows, what, scope=scope)
    if rows.empty:
        raise ValueError(f"{what}: empty geometry table")
    encoders = sorted(rows["encoder"].unique()) if "encoder" in rows.columns else [None]
    tasks = sorted(rows["task"].unique())
    colors = {t: f"C{i}" for i, t in enumerate(tasks)}
    fig, axes = _new_figure(1, len(encoders), sharey=True)
    for ax, encoder in zip(axes[0], encoders, strict=True):
        part = rows if encoder is None else rows[rows["encoder"] == encoder]
        for task in tasks:
            pts = part[part["task"] == task]
            if not pts.empty:
                ax.scatter(pts["angle_deg"].to_numpy(float), pts["ratio"].to_numpy(float),
                           color=colors[task], s=22, alpha=0.8, label=task)
        ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
        ax.axvline(PAPER_ANGLE_DEG, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel("angle between δ_src and δ_tgt (degrees)")
        ax.set_title(encoder if encoder is not None else "all encoders", fontsize="medium")
    axes[0, 0].set_ylabel("‖δ_src‖ / ‖δ_tgt‖")
    _legend_below(fig, axes)
    fig.suptitle("Figure 4: relative norm and angle of δ_src, δ_tgt (one point per pair, seed)")
    return _finish(fig, out_dir, 4)
