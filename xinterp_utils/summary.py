"""Numbers behind the paper's claims, computed from result rows (notebooks print them).

Every function takes tidy sweep rows (`sweep_rows.RESULT_COLUMNS`; `finetune.csv` rows
for the fine-tuning ones) and returns a small DataFrame; scores are normalised by the
bilingual model of the same seed and dev set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import analysis
from .settings import PLANE_2D, PLANES_1D


def one_d_summary(df: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Return, per (`by`…, encoder, plane, line), the normalised score averaged over the
    rest (pairs, tasks, seeds) at the monolingual end-point (α = 0) and at α = 0.5, its
    minimum over α ∈ [0, 1], and the largest gap between the curve and the straight line
    from α = 0 to α = 1 (0 for a perfectly linear rise), all as fractions of the bilingual
    score. `by` adds grouping columns, e.g. ("task",) for one line per task."""
    keys = [*by, "encoder", "plane", "line"]
    rows = analysis.add_views(df[df["plane"].isin(PLANES_1D)])
    curve = rows.groupby([*keys, "alpha"])["norm_score"].mean().reset_index()
    out = []
    for key, g in curve.groupby(keys):
        inside = g[(g["alpha"] >= 0) & (g["alpha"] <= 1)].sort_values("alpha")
        at = dict(zip(inside["alpha"].round(6), inside["norm_score"], strict=True))
        start, end = at.get(0.0, np.nan), at.get(1.0, np.nan)
        straight = start + (end - start) * inside["alpha"]
        out.append({
            **dict(zip(keys, key, strict=True)),
            "at_0": start, "at_0.5": at.get(0.5, np.nan), "min_0_1": inside["norm_score"].min(),
            "max_gap_to_line": float((inside["norm_score"] - straight).abs().max()),
            "n_alpha": len(inside),
        })
    return pd.DataFrame(out)


def variance_summary(df: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Return the normalised variance across seeds (mean over the rest: pairs, tasks) at
    the monolingual end-point (α = 0) and at the bilingual one (α = 1), per (`by`…,
    encoder, plane, line); NaN where there is a single seed. Unitless."""
    keys = [*by, "encoder", "plane", "line"]
    agg = analysis.normalised_variance(df[df["plane"].isin(PLANES_1D)],
                                       by=[*by, "encoder", "scope", "plane", "line"])
    agg = agg[agg["alpha"].round(6).isin([0.0, 1.0])]
    table = agg.pivot_table(index=keys, columns="alpha",
                            values="mean", dropna=False)
    table.columns = [f"var_at_{a:g}" for a in table.columns]
    return table.reset_index()


def scope_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """Return footnote 2's comparison of Eq. 1 with every parameter, only the encoder or
    only the head interpolated (the rest held at θ_bi), per (task, eval_role, scope):
    the raw score at α = 0 and its span (max − min) over α ∈ [0, 1], averaged over pairs
    and seeds, and the largest |score − scope=all's score| at the same α, pair and seed
    (`max_diff_from_all`, NaN where scope=all has no such point). Only the (pair, seed)
    curves that every scope of the task has count, so the rows compare the same models
    (scope=all is swept for more pairs than the others). Scores in the task's metric,
    [0, 1]; `n_seeds` counts the (pair, seed) curves behind each row."""
    cell = ["encoder", "task", "source", "target", "seed", "eval_role"]
    rows = df[(df["plane"] == "eq1") & (df["alpha"] >= 0) & (df["alpha"] <= 1)].copy()
    rows["alpha"] = rows["alpha"].round(6)
    scopes_of_task = rows.groupby("task")["scope"].transform("nunique")
    scopes_of_curve = rows.groupby(cell)["scope"].transform("nunique")
    rows = rows[scopes_of_curve == scopes_of_task]
    points = rows.groupby([*cell, "scope", "alpha"])["score"].mean()
    reference = points.xs("all", level="scope") if "all" in rows["scope"].values else None
    out = []
    for (task, role, scope), g in points.groupby(level=["task", "eval_role", "scope"]):
        curves = g.droplevel("scope")
        per_curve = curves.groupby(level=cell)
        span = per_curve.agg(lambda c: c.max() - c.min())
        at_0 = curves[curves.index.get_level_values("alpha") == 0.0]
        diff = np.nan
        if reference is not None:
            both = pd.concat({"this": curves, "all": reference}, axis=1, join="inner")
            diff = float((both["this"] - both["all"]).abs().max()) if len(both) else np.nan
        out.append({"task": task, "eval_role": role, "scope": scope,
                    "at_0": float(at_0.mean()), "span_0_1": float(span.mean()),
                    "max_diff_from_all": diff, "n_seeds": len(span)})
    return pd.DataFrame(out, columns=["task", "eval_role", "scope", "at_0", "span_0_1",
                                      "max_diff_from_all", "n_seeds"])


def _grid_value(z: np.ndarray, a1: np.ndarray, a2: np.ndarray, x: float, y: float) -> float:
    """Return z[j, i] at (α1, α2) = (x, y), or NaN where the grid lacks that point."""
    i, j = np.isclose(a1, x).nonzero()[0], np.isclose(a2, y).nonzero()[0]
    return float(z[j[0], i[0]]) if len(i) and len(j) else np.nan


def surface_slopes(df: pd.DataFrame) -> pd.DataFrame:
    """Return, per (encoder, task, pair, eval_role), the steepness of the normalised 2D
    surface (Eq. 3): the gradient magnitude |∇score| (fraction of the bilingual score per
    unit α, seeds averaged, finite differences on the grid) at the zero-shot end-point
    (α1, α2) = (1, 0), at the bilingual one (0, 0), and its median over the grid points
    inside [0, 1]², for comparison."""
    rows = analysis.normalise(df[df["plane"] == PLANE_2D])
    out = []
    keys = ["encoder", "task", "source", "target", "eval_role"]
    for (encoder, task, source, target, role), g in rows.groupby(keys):
        a1, a2, z = analysis.grid_2d(g)
        if len(a1) < 2 or len(a2) < 2:
            continue
        d_a2, d_a1 = np.gradient(z, a2, a1)  # z[j, i] with α2 along axis 0
        magnitude = np.hypot(d_a1, d_a2)
        inside = magnitude[np.ix_((a2 >= 0) & (a2 <= 1), (a1 >= 0) & (a1 <= 1))]
        out.append({"encoder": encoder, "task": task, "pair": f"{source}-{target}",
                    "eval_role": role,
                    "slope_zero_shot": _grid_value(magnitude, a1, a2, 1.0, 0.0),
                    "slope_bilingual": _grid_value(magnitude, a1, a2, 0.0, 0.0),
                    "slope_median_0_1": float(np.nanmedian(inside)) if inside.size else np.nan})
    return pd.DataFrame(out)


def finetune_seed_spread(finetune: pd.DataFrame) -> pd.DataFrame:
    """Return, per (task, model, eval_role) of `finetune.csv` rows, the standard deviation
    across seeds of the raw dev score within each (source, target) pair, averaged over the
    pairs (`seed_std`, a fraction like the scores), with the mean score (`mean`) and their
    ratio (`cv`, unitless); `seed_std` is NaN where pairs have a single seed."""
    keys = ["task", "model", "eval_role"]
    per_pair = (finetune.groupby([*keys, "source", "target"])["score"]
                .agg(["mean", "std"]).reset_index())
    out = per_pair.groupby(keys)[["mean", "std"]].mean().reset_index()
    return out.rename(columns={"std": "seed_std"}).assign(cv=lambda d: d.seed_std / d["mean"])


# (model, dev set) of each end-point column, in the order the paper discusses them.
ENDPOINT_COLUMNS = {"src_on_source": ("src", "source"), "bi_on_source": ("bi", "source"),
                    "zero_shot": ("src", "target"), "tgt_on_target": ("tgt", "target"),
                    "bi_on_target": ("bi", "target")}


def endpoints_by_target(finetune: pd.DataFrame) -> pd.DataFrame:
    """Return, per (task, target) of `finetune.csv` rows, each fine-tuned end-point's raw
    dev score averaged over seeds (`ENDPOINT_COLUMNS`, fractions like the scores), the
    zero-shot gap `bi_on_target − zero_shot`, and `n_seeds` (seeds with a zero-shot
    score); a column is NaN where its model is not trained yet."""
    keys = ["task", "target"]
    out = finetune[keys].drop_duplicates().set_index(keys)
    for column, (model, role) in ENDPOINT_COLUMNS.items():
        hit = finetune[(finetune["model"] == model) & (finetune["eval_role"] == role)]
        out[column] = hit.groupby(keys)["score"].mean()
    out["gap"] = out["bi_on_target"] - out["zero_shot"]
    zero_shot = finetune[(finetune["model"] == "src") & (finetune["eval_role"] == "target")]
    out["n_seeds"] = zero_shot.groupby(keys)["seed"].nunique()
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    return out.reset_index().sort_values(keys, ignore_index=True)


def geometry_by_target(geometry: pd.DataFrame) -> pd.DataFrame:
    """Return, per (task, target) of `geometry.csv` rows, ‖δ_src‖ and ‖δ_tgt‖ (L2 norms
    of the fine-tuning updates), their ratio and the angle between them (degrees), each
    averaged over seeds, with the angle's standard deviation across seeds (degrees)."""
    keys = ["task", "target"]
    grouped = geometry.groupby(keys)
    out = grouped[["norm_src", "norm_tgt", "ratio", "angle_deg"]].mean()
    out["angle_std"] = grouped["angle_deg"].std()
    out["n_seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def pooled_seed_variance(finetune: pd.DataFrame, model: str, eval_role: str,
                         by: Sequence[str] = ("task",)) -> pd.DataFrame:
    """Return, per (`by`…), the variance across seeds of the raw dev score of `model`
    ("src", "tgt", "bi") on `eval_role`'s dev set, pooled over the samples it has: one per
    (encoder, training languages, dev language), so θ_src on the source, which every pair
    shares, is one sample of its seeds and the zero-shot scores are one per target.
    Σ squared deviations from each sample's mean / Σ (seeds − 1). Columns `variance`
    (score², scores being fractions), `dof` (the divisor) and `n_samples` (those with two
    seeds or more)."""
    sample = ["encoder", "train_langs", "eval_lang"]
    rows = finetune[(finetune["model"] == model) & (finetune["eval_role"] == eval_role)]
    # A run scored on a dev set is one observation, however many pairs list it.
    rows = rows.drop_duplicates([*by, *sample, "run_id"])
    rows = rows.assign(dev=rows["score"] - rows.groupby([*by, *sample])["score"]
                       .transform("mean"))
    out = []
    for key, g in rows.groupby(list(by)):
        seeds = g.groupby(sample)["seed"].nunique()
        dof = int((seeds - 1).sum())
        out.append({**dict(zip(by, key, strict=True)),
                    "variance": float((g["dev"] ** 2).sum() / dof) if dof else np.nan,
                    "dof": dof, "n_samples": int((seeds > 1).sum())})
    return pd.DataFrame(out, columns=[*by, "variance", "dof", "n_samples"])


def variance_f_test(finetune: pd.DataFrame, numerator: tuple[str, str],
                    denominator: tuple[str, str], by: Sequence[str] = ("task",)
                    ) -> pd.DataFrame:
    """Return, per (`by`…), the one-sided F test that the seed variance of `numerator`
    ((model, eval_role), e.g. ("src", "target"): the zero-shot model) exceeds that of
    `denominator`, each pooled over pairs (`pooled_seed_variance`): both standard
    deviations (score units), the variance ratio, its degrees of freedom and the p-value
    P(F ≥ ratio). Pairing the two on the same seeds is ignored, as a plain F test does."""
    num = pooled_seed_variance(finetune, *numerator, by=by)
    den = pooled_seed_variance(finetune, *denominator, by=by)
    both = num.merge(den, on=list(by), suffixes=("_num", "_den"))
    both = both[(both["dof_num"] > 0) & (both["dof_den"] > 0)]
    ratio = (both["variance_num"] / both["variance_den"]).astype(float)
    return pd.DataFrame({
        **{col: both[col] for col in by},
        "sd_num": np.sqrt(both["variance_num"]), "sd_den": np.sqrt(both["variance_den"]),
        "ratio": ratio, "dof_num": both["dof_num"], "dof_den": both["dof_den"],
        "p_value": stats.f.sf(ratio, both["dof_num"].astype(float),
                              both["dof_den"].astype(float)),
    }).reset_index(drop=True)


# Claim 4's comparisons: the zero-shot model against θ_src on the source and against θ_bi
# on the same target.
ZERO_SHOT_AGAINST = {"θ_src on the source": ("src", "source"),
                     "θ_bi on the target": ("bi", "target")}


def zero_shot_variance_tests(finetune: pd.DataFrame) -> pd.DataFrame:
    """Return the F tests of Claim 4 (`variance_f_test` of the zero-shot model
    against each of ZERO_SHOT_AGAINST), per task pooled over pairs (`target` "all") and
    per (task, target), sorted by task, comparison and target; standard deviations in
    score units. Empty where no sample has two seeds."""
    parts = []
    for name, other in ZERO_SHOT_AGAINST.items():
        pooled = variance_f_test(finetune, ("src", "target"), other).assign(target="all")
        per_pair = variance_f_test(finetune, ("src", "target"), other, by=("task", "target"))
        # a task with one target would repeat its pooled row
        per_pair = per_pair[per_pair.groupby("task")["target"].transform("nunique") > 1]
        parts += [df.assign(against=name) for df in (pooled, per_pair)]
    out = pd.concat(parts, ignore_index=True).sort_values(["task", "against", "target"],
                                                          ignore_index=True)
    return out[["task", "target", "against", "sd_num", "sd_den", "ratio", "dof_num",
                "dof_den", "p_value"]].rename(columns={"sd_num": "sd_zero_shot",
                                                       "sd_den": "sd_other"})


def plateau_summary(curves: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """Return, per run and dev language of `curves` (`finetune.CURVE_COLUMNS` rows), the
    best dev score and the epoch it came at, the last score, ``last_minus_best`` (≤ 0)
    and ``on_plateau``: the last evaluation is within `tolerance` (absolute score) of
    the best, i.e. more training of the same kind no longer helps."""
    keys = ["encoder", "task", "train_langs", "seed", "run_id", "eval_lang"]
    columns = [*keys, "points", "best", "best_epoch", "last", "last_epoch",
               "last_minus_best", "on_plateau"]
    out = []
    for key, group in curves.sort_values("step").groupby(keys, sort=False):
        best = group.loc[group["score"].idxmax()]
        last = group.iloc[-1]
        out.append({**dict(zip(keys, key, strict=True)), "points": len(group),
                    "best": float(best["score"]), "best_epoch": float(best["epoch"]),
                    "last": float(last["score"]), "last_epoch": float(last["epoch"]),
                    "last_minus_best": float(last["score"] - best["score"]),
                    "on_plateau": bool(best["score"] - last["score"] <= tolerance)})
    return pd.DataFrame(out, columns=columns)  # no runs (all complete): no rows


# The model each 1D end-point is: α = 0 is the monolingual model of its plane, α = 1 θ_bi.
_ENDPOINT_MODEL = {("eq1", 0.0): "src", ("eq2", 0.0): "tgt", ("eq1", 1.0): "bi",
                   ("eq2", 1.0): "bi"}
_ENDPOINT_KEY = ["encoder", "task", "source", "target", "seed", "model", "eval_lang"]


def endpoint_check(rows: pd.DataFrame, finetune: pd.DataFrame,
                   tolerance: float = 1e-5) -> tuple[int, float]:
    """Return (rows checked, largest absolute difference) between the Eq. 1/2 sweep rows
    at α = 0 and α = 1 (the end-point models themselves) and the dev scores that
    `finetune.csv` (`finetune`) records for the same model, pair, seed and dev set.

    Raises ValueError when an end-point row has no fine-tuning row, or when a score
    differs by more than `tolerance` (scores are fractions; the CSVs keep six decimals).
    """
    one_d = rows[rows["plane"].isin(PLANES_1D)]
    ends = one_d[one_d["alpha"].isin([0.0, 1.0])]
    ends = ends.assign(model=[_ENDPOINT_MODEL[(p, a)]
                              for p, a in zip(ends["plane"], ends["alpha"], strict=True)])
    check = ends.merge(finetune, on=_ENDPOINT_KEY, suffixes=("_sweep", "_finetune"))
    worst = float((check["score_sweep"] - check["score_finetune"]).abs().max())
    if len(check) != len(ends):
        raise ValueError(f"{len(ends) - len(check)} of {len(ends)} end-point rows have no "
                         "row in finetune.csv; run notebook 01 for this profile first")
    if not worst < tolerance:
        raise ValueError(f"an end-point's sweep score differs from its fine-tuning score by "
                         f"{worst:.1e} (> {tolerance:g}): the sweep did not load the models "
                         "that notebook 01 scored")
    return len(check), worst
