"""Notebook 06's figures (fig11 – fig13), drawn from result tables only (no model, no GPU).

As in `plots.py`: each function returns a `matplotlib.figure.Figure` and, given
`out_dir`, writes `fig<N>.pdf` and `fig<N>.png` there atomically and byte-identically
for the same tables (`plots.save_figure`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plots import ROLE_LABEL, contour_panel, save_figure

_REMEDY_MARKER = {"fewshot": "o", "silver": "*"}


def _k_colors(ks) -> dict:
    """One colour per few-shot k, from light (few shots) to dark (many)."""
    from matplotlib import colormaps

    ks = sorted(k for k in ks if pd.notna(k))
    cmap = colormaps["autumn_r"]
    return {k: cmap(0.25 + 0.75 * i / max(1, len(ks) - 1)) for i, k in enumerate(ks)}


def _label(remedy: str, k) -> str:
    return "θ_silver" if remedy == "silver" else f"few-shot k={int(k)}"


def fig11_remedies_on_surfaces(grid: pd.DataFrame, coords: pd.DataFrame,
                               out_dir: str | os.PathLike | None = None, *,
                               fig_number: int = 11) -> Figure:
    """Return fig11: the normalised target and source surfaces of Eq. 3 (notebook 03's
    grid, seeds averaged; one row per task) with every remedy model of the grid's seeds
    marked at its plane coordinates (`plane_coords.csv`): few-shot models as circles
    coloured by k, θ_silver as stars. `grid` holds one (encoder, source, target)."""
    tasks = sorted(set(grid["task"]))
    if not tasks:
        raise ValueError(f"figure {fig_number}: no 2D rows")
    roles = [r for r in ("target", "source") if r in set(grid["eval_role"])]
    colors = _k_colors(pd.to_numeric(coords["k"], errors="coerce").unique())
    fig = Figure(figsize=(4.4 * len(roles) + 1.4, 3.6 * len(tasks) + 0.8),
                 layout="constrained")
    axes = fig.subplots(len(tasks), len(roles), squeeze=False)
    filled, seen = None, {}
    for i, task in enumerate(tasks):
        rows = grid[grid["task"] == task]
        marks = coords[(coords["task"] == task) & coords["seed"].isin(set(rows["seed"]))]
        for j, role in enumerate(roles):
            ax = axes[i, j]
            filled = contour_panel(ax, rows[rows["eval_role"] == role],
                                   f"{task}: {ROLE_LABEL[role]}", clip_to_grid=False)
            for r in marks.to_dict("records"):
                k = pd.to_numeric(r["k"], errors="coerce")
                color = "tab:blue" if r["remedy"] == "silver" else colors[k]
                label = _label(r["remedy"], k)
                handle = ax.scatter([r["alpha1"]], [r["alpha2"]], s=70 if r["remedy"] ==
                                    "silver" else 30, marker=_REMEDY_MARKER[r["remedy"]],
                                    color=color, edgecolors="k", linewidths=0.6, zorder=7)
                seen.setdefault(label, handle)
    fig.colorbar(filled, ax=list(axes.ravel()), shrink=0.7, label="score / bilingual score")
    if seen:
        order = sorted(seen, key=lambda s: (s.startswith("θ"), len(s), s))
        fig.legend([seen[s] for s in order], order, loc="outside lower center",
                   ncols=min(4, len(order)), fontsize="small")
    enc, src, tgt = grid[["encoder", "source", "target"]].iloc[0]
    fig.suptitle(f"Figure {fig_number}: few-shot and silver models in the plane of θ_bi, "
                 f"θ_src, θ_tgt ({enc}, {src}→{tgt})")
    if out_dir is not None:
        save_figure(fig, out_dir, fig_number)
    return fig


def _categories(scores: pd.DataFrame) -> list[tuple]:
    """(model, k) categories in display order: zero-shot, few-shot by k, silver, bi."""
    order = {"zero-shot": 0, "few-shot": 1, "silver": 2, "bi": 3}
    cats = scores[["model", "k"]].drop_duplicates().to_records(index=False).tolist()
    return sorted(cats, key=lambda c: (order[c[0]], -1 if pd.isna(c[1]) else c[1]))


def _cat_label(model: str, k) -> str:
    if model == "few-shot":
        return f"k={int(k)}"
    return {"zero-shot": "0-shot", "silver": "silver", "bi": "θ_bi"}[model]


def fig12_target_vs_k(scores: pd.DataFrame, variance: pd.DataFrame,
                      out_dir: str | os.PathLike | None = None, *,
                      fig_number: int = 12) -> Figure:
    """Return fig12: per task (rows), left: the normalised target score of every model
    (`remedy_summary.target_scores`; one dot per seed and draw, the bar its mean) for
    zero-shot, few-shot by k, silver and θ_bi; right: the variance of the raw target score
    across seeds (at a fixed draw) and across draws (at a fixed seed)
    (`remedy_summary.variance_by_k`)."""
    tasks = sorted(set(scores["task"]))
    if not tasks:
        raise ValueError(f"figure {fig_number}: no target scores")
    fig = Figure(figsize=(10.0, 2.9 * len(tasks) + 0.8), layout="constrained")
    axes = fig.subplots(len(tasks), 2, squeeze=False)
    for i, task in enumerate(tasks):
        part = scores[scores["task"] == task]
        cats = _categories(part)
        ax, vax = axes[i]
        for x, (model, k) in enumerate(cats):
            pts = part[(part["model"] == model)
                       & ((part["k"] == k) if pd.notna(k) else part["k"].isna())]
            jitter = np.linspace(-0.18, 0.18, len(pts)) if len(pts) > 1 else np.zeros(1)
            ax.scatter(x + jitter, pts["norm_score"], s=14, color="0.35", zorder=3)
            ax.hlines(pts["norm_score"].mean(), x - 0.3, x + 0.3, color="C3", lw=2)
        ax.set_xticks(range(len(cats)), [_cat_label(*c) for c in cats])
        ax.axhline(1.0, color="0.8", lw=0.6, zorder=0)
        ax.set_ylabel(f"{task}: target score /\nbilingual score")
        var = variance[variance["task"] == task]
        width = 0.38
        for x, (model, k) in enumerate(cats):
            row = var[(var["model"] == model)
                      & ((var["k"] == k) if pd.notna(k) else var["k"].isna())]
            if row.empty:
                continue
            for shift, col, color, name in ((-width / 2, "var_seeds", "C0", "across seeds"),
                                            (width / 2, "var_draws", "C1", "across draws")):
                value = float(row[col].mean())
                if np.isfinite(value):
                    vax.bar(x + shift, value, width, color=color,
                            label=name if x == 0 or col == "var_draws" else None)
        vax.set_xticks(range(len(cats)), [_cat_label(*c) for c in cats])
        vax.set_ylabel("variance of the\nraw target score")
    handles, labels = [], []
    for ax in axes[:, 1]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    fig.suptitle(f"Figure {fig_number}: target score and its variance, zero-shot → few-shot "
                 "(k shots) → silver → bilingual")
    if out_dir is not None:
        save_figure(fig, out_dir, fig_number)
    return fig


def fig13_lines(lines: pd.DataFrame, out_dir: str | os.PathLike | None = None, *,
                fig_number: int = 13) -> Figure:
    """Return fig13: the 1D lines θ(α) = (1 − α)·θ_src + α·θ_remedy, raw dev score vs α
    (seeds and plotted draws averaged), one column per task, rows target and source; one
    line per remedy (few-shot by k, silver)."""
    tasks = sorted(set(lines["task"]))
    if not tasks:
        raise ValueError(f"figure {fig_number}: no line rows")
    rows = lines.assign(k=pd.to_numeric(lines["k"], errors="coerce"))
    colors = _k_colors(rows["k"].unique())
    fig = Figure(figsize=(3.6 * len(tasks) + 0.6, 6.6), layout="constrained")
    axes = fig.subplots(2, len(tasks), squeeze=False)
    for j, task in enumerate(tasks):
        for i, role in enumerate(("target", "source")):
            ax = axes[i, j]
            part = rows[(rows["task"] == task) & (rows["eval_role"] == role)]
            for (remedy, k), g in part.groupby(["remedy", "k"], dropna=False):
                curve = g.groupby("alpha")["score"].mean()
                color = "tab:blue" if remedy == "silver" else colors[k]
                ax.plot(curve.index, curve.to_numpy(), marker=".", color=color,
                        ls="--" if remedy == "silver" else "-", label=_label(remedy, k))
            for x in (0.0, 1.0):
                ax.axvline(x, color="0.55", lw=0.8, ls=":", zorder=0)
            ax.set_title(f"{task}: {ROLE_LABEL[role]}", fontsize="medium")
            ax.set_xlabel("α (0 = θ_src, 1 = remedy model)")
            if j == 0:
                ax.set_ylabel("dev score")
    handles, labels = [], []
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda n: (labels[n].startswith("θ"),
                                                       len(labels[n]), labels[n]))
    fig.legend([handles[n] for n in order], [labels[n] for n in order],
               loc="outside lower center", ncols=min(4, len(labels)), fontsize="small")
    fig.suptitle(f"Figure {fig_number}: from the zero-shot model to the remedy models")
    if out_dir is not None:
        save_figure(fig, out_dir, fig_number)
    return fig
