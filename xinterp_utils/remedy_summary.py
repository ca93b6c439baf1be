"""Numbers behind notebook 06's questions, from result tables alone (no model, no torch).

Inputs are the tidy tables notebook 06 writes (`remedies.csv`, `plane_coords.csv`,
`silver.csv`, the line CSVs) and notebook 01's `finetune.csv`; every function returns a
small DataFrame. Scores are fractions; "normalised" means divided by θ_bi's score of
the same seed on the same dev set, as in the paper's figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .analysis import grid_2d

CELL = ["encoder", "task", "source", "target", "seed"]
PAIR = ["encoder", "task", "source", "target"]
# The order models are listed in: zero-shot, few-shot by k, silver, bilingual.
MODEL_ORDER = {"zero-shot": 0, "few-shot": 1, "silver": 2, "bi": 3}


def target_scores(remedies: pd.DataFrame, finetune: pd.DataFrame) -> pd.DataFrame:
    """Return one row per model on the target dev set: the remedy models of `remedies`
    and, for the same cells, zero-shot (θ_src) and θ_bi from `finetune`. Columns: CELL,
    `model` (zero-shot, few-shot, silver, bi), `k` (0 for zero-shot, NaN for silver and
    bi), `draw` (NaN where there is none), `score`, `bi_score` and `norm_score` =
    score / bi_score (NaN where θ_bi scores 0)."""
    target = remedies[remedies["eval_role"] == "target"]
    cells = target[CELL].drop_duplicates()
    ft = finetune[finetune["eval_role"] == "target"].merge(cells, on=CELL)
    bi = ft[ft["model"] == "bi"][[*CELL, "score"]].rename(columns={"score": "bi_score"})
    zero = ft[ft["model"] == "src"].assign(model="zero-shot", k=0, draw=np.nan)
    both = ft[ft["model"] == "bi"].assign(model="bi", k=np.nan, draw=np.nan)
    new = target.assign(model=target["remedy"].map({"fewshot": "few-shot",
                                                    "silver": "silver"}))
    keep = [*CELL, "model", "k", "draw", "score"]
    rows = pd.concat([zero[keep], new[keep], both[keep]], ignore_index=True)
    rows = rows.merge(bi, on=CELL, how="left")
    rows["k"] = _int_column(rows["k"])
    rows["draw"] = _int_column(rows["draw"])
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["norm_score"] = np.where(rows["bi_score"] > 0, rows["score"] / rows["bi_score"],
                                      np.nan)
    return rows


def _int_column(values: pd.Series) -> pd.Series:
    """Return `values` (k or draw: whole numbers, empty for silver and the end-points) as
    nullable integers, so tables print 16, not 16.0."""
    return pd.to_numeric(values, errors="coerce").round().astype("Int64")


def _var(values: pd.Series) -> float:
    return float(values.var(ddof=1)) if values.notna().sum() > 1 else np.nan


def variance_by_k(scores: pd.DataFrame) -> pd.DataFrame:
    """Return, per (encoder, task, pair, model, k) of `target_scores` rows, the mean
    raw target score (`mean_score`, a fraction), the mean normalised one (`mean_norm`)
    and three variances of the raw target score (fraction², ddof = 1): across seeds at a
    fixed draw, averaged over draws (`var_seeds`); across draws at a fixed seed,
    averaged over seeds (`var_draws`, NaN for models without draws); across every
    (seed, draw) model (`var_all`); with the counts `n_seeds`, `n_draws`, `n_models`.
    Zero-shot is k = 0; variances are NaN where fewer than two values exist."""
    # Raw scores, as Claim 4 (notebook 04) compares variances: divided by its own seed's
    # θ_bi score, θ_bi's variance would be 0 by construction and the comparison the
    # hypothesis needs (remedy models' seed variance against θ_bi's) would be lost.
    out = []
    keys = [*PAIR, "model", "k"]
    for key, g in scores.groupby(keys, dropna=False, sort=False):
        by_draw = [_var(d["score"]) for _, d in g.groupby(g["draw"].fillna(-1))]
        by_seed = [_var(s["score"]) for _, s in g.groupby("seed")] \
            if g["draw"].notna().any() else []
        out.append({**dict(zip(keys, key, strict=True)),
                    "mean_score": float(g["score"].mean()),
                    "mean_norm": float(g["norm_score"].mean()),
                    "var_seeds": float(np.nanmean(by_draw)) if np.isfinite(by_draw).any()
                    else np.nan,
                    "var_draws": float(np.nanmean(by_seed)) if by_seed
                    and np.isfinite(by_seed).any() else np.nan,
                    "var_all": _var(g["score"]),
                    "n_seeds": g["seed"].nunique(), "n_draws": int(g["draw"].nunique()),
                    "n_models": len(g)})
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["_order"] = table["model"].map(MODEL_ORDER)
    return (table.sort_values([*PAIR, "_order", "k"]).drop(columns="_order")
            .reset_index(drop=True))


def plane_summary(coords: pd.DataFrame) -> pd.DataFrame:
    """Return, per (encoder, task, pair, remedy, k), the mean and spread over seeds and
    draws of the plane coordinates (`alpha1`, `alpha2`, unitless) and of the fraction of
    the offset outside the plane (`outside_fraction`), with the count `n`."""
    rows = coords.assign(k=_int_column(coords["k"]))
    agg = rows.groupby([*PAIR, "remedy", "k"], dropna=False).agg(
        alpha1=("alpha1", "mean"), alpha1_std=("alpha1", "std"),
        alpha2=("alpha2", "mean"), alpha2_std=("alpha2", "std"),
        outside_fraction=("outside_fraction", "mean"), n=("alpha1", "size"))
    return agg.reset_index()


def rerun_summary(reruns: pd.DataFrame) -> pd.DataFrame:
    """Return, per (encoder, task, pair, model) of `plane_reruns.csv` rows (another seed's
    θ_src, θ_tgt or θ_bi in a seed's plane), the means over (seed, other seed) of
    `alpha1`, `alpha2` (unitless) and `outside_fraction`, and their count `n`: the
    yardstick for the remedy models' outside fraction."""
    order = {"src": 0, "tgt": 1, "bi": 2}
    agg = (reruns.groupby([*PAIR, "model"]).agg(
        alpha1=("alpha1", "mean"), alpha2=("alpha2", "mean"),
        outside_fraction=("outside_fraction", "mean"), n=("alpha1", "size")).reset_index())
    agg["_order"] = agg["model"].map(order)
    return agg.sort_values([*PAIR, "_order"]).drop(columns="_order").reset_index(drop=True)


def steps_from_src(coords: pd.DataFrame, geometry: pd.DataFrame) -> pd.DataFrame:
    """Return `coords` (plane_coords rows) with the step each remedy model took from
    θ_src: `step_norm` ‖θ − θ_src‖ (parameter units, the coordinates' scope), `step_rel`
    that length over ‖δ_src‖ = ‖θ_src − θ_bi‖ (unitless), and `step_outside_fraction`
    ‖r‖ / ‖θ − θ_src‖, the share of the step orthogonal to the plane (0: the step stays in
    the plane). ‖δ_src‖, ‖δ_tgt‖ and their cosine come from the `geometry.csv` row of the
    same three checkpoints and scope; models without one are dropped."""
    ends = ["ckpt_src", "ckpt_tgt", "ckpt_bi"]
    geo = geometry[[*CELL, "scope", *ends, "norm_src", "norm_tgt", "cos"]]
    rows = coords.merge(geo, on=[*CELL, "scope", *ends])
    # θ − θ_src = (α1 − 1)·δ_src + α2·δ_tgt + r, with r orthogonal to both δ.
    a, b = rows["alpha1"] - 1.0, rows["alpha2"]
    in_plane_sq = ((a * rows["norm_src"]) ** 2 + (b * rows["norm_tgt"]) ** 2
                   + 2 * a * b * rows["norm_src"] * rows["norm_tgt"] * rows["cos"])
    step = np.sqrt(in_plane_sq.clip(lower=0) + rows["residual_norm"] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out_share = np.where(step > 0, rows["residual_norm"] / step, np.nan)
    return rows.assign(step_norm=step, step_rel=step / rows["norm_src"],
                       step_outside_fraction=out_share).drop(
        columns=["norm_src", "norm_tgt", "cos"])


def step_summary(steps: pd.DataFrame) -> pd.DataFrame:
    """Return, per (encoder, task, pair, remedy, k), the means over seeds and draws of
    `steps_from_src`'s `step_rel` and `step_outside_fraction` (unitless), with `n`."""
    rows = steps.assign(k=_int_column(steps["k"]))
    return (rows.groupby([*PAIR, "remedy", "k"], dropna=False)
            .agg(step_rel=("step_rel", "mean"),
                 step_outside_fraction=("step_outside_fraction", "mean"),
                 n=("step_rel", "size")).reset_index())


def _bilinear(a1: np.ndarray, a2: np.ndarray, z: np.ndarray, x: float, y: float) -> float:
    """Return z (shape len(a2) × len(a1)) interpolated bilinearly at (x, y); NaN
    outside the grid."""
    from scipy.interpolate import RegularGridInterpolator

    f = RegularGridInterpolator((a2, a1), z, bounds_error=False, fill_value=np.nan)
    return float(f([[y, x]])[0])


def slopes_at_models(coords: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Return, for every remedy model of `coords` whose cell has a 2D surface in `grid`
    (notebook 03's normalised Eq. 3 rows, `figures.two_d_rows`), on each evaluation
    role: its position (α1, α2), the surface's normalised score there (`surface`), and
    the steepness |∇ score| (fraction of θ_bi's score per unit α; finite differences
    on the grid as `summary.surface_slopes`, interpolated bilinearly) at the model
    (`slope`) and at the zero-shot model (1, 0) (`slope_zero_shot`). Models off the
    grid get NaN. The surface is the average over the grid's seeds; only models of those
    seeds are listed."""
    out = []
    for (enc, task, src, tgt, role), g in grid.groupby(["encoder", "task", "source",
                                                      "target", "eval_role"]):
        a1, a2, z = grid_2d(g)
        if len(a1) < 2 or len(a2) < 2:
            continue
        d_a2, d_a1 = np.gradient(z, a2, a1)
        slope = np.hypot(d_a1, d_a2)
        here = coords[(coords["encoder"] == enc) & (coords["task"] == task)
                      & (coords["source"] == src) & (coords["target"] == tgt)
                      & coords["seed"].isin(set(g["seed"]))]
        for r in here.to_dict("records"):
            out.append({"encoder": enc, "task": task, "source": src, "target": tgt,
                        "seed": r["seed"], "remedy": r["remedy"], "k": r["k"],
                        "draw": r["draw"], "eval_role": role, "alpha1": r["alpha1"],
                        "alpha2": r["alpha2"],
                        "surface": _bilinear(a1, a2, z, r["alpha1"], r["alpha2"]),
                        "slope": _bilinear(a1, a2, slope, r["alpha1"], r["alpha2"]),
                        "slope_zero_shot": _bilinear(a1, a2, slope, 1.0, 0.0)})
    table = pd.DataFrame(out, columns=["encoder", "task", "source", "target", "seed",
                                       "remedy", "k", "draw", "eval_role", "alpha1",
                                       "alpha2", "surface", "slope", "slope_zero_shot"])
    return table.assign(k=_int_column(table["k"]), draw=_int_column(table["draw"]))


def line_summary(lines: pd.DataFrame) -> pd.DataFrame:
    """Return, per (encoder, task, pair, remedy, k, eval_role), averaged over the lines'
    seeds and draws: the raw score at θ_src (`at_0`) and at the remedy model (`at_1`),
    the lowest score between them (`min_0_1`: below both ends means a barrier), and the
    largest gap between the curve and the straight line from α = 0 to α = 1
    (`max_gap_to_line`), all fractions; `n_lines` counts the lines."""
    out = []
    keys = [*PAIR, "remedy", "k", "eval_role"]
    rows = lines.assign(k=_int_column(lines["k"]))
    for key, g in rows.groupby(keys, dropna=False):
        per_line = []
        for _, line in g.groupby("line_id"):
            inside = line[(line["alpha"] >= 0) & (line["alpha"] <= 1)].sort_values("alpha")
            at = dict(zip(inside["alpha"].round(6), inside["score"], strict=True))
            start, end = at.get(0.0, np.nan), at.get(1.0, np.nan)
            straight = start + (end - start) * inside["alpha"]
            per_line.append((start, end, inside["score"].min(),
                             float((inside["score"] - straight).abs().max())))
        values = np.array(per_line, dtype=float)
        out.append({**dict(zip(keys, key, strict=True)), "at_0": values[:, 0].mean(),
                    "at_1": values[:, 1].mean(), "min_0_1": values[:, 2].mean(),
                    "max_gap_to_line": values[:, 3].mean(), "n_lines": len(per_line)})
    return pd.DataFrame(out)
