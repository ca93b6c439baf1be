"""Analysis of interpolation sweeps: load result rows, select a profile's, normalise,
aggregate, and lay the 2D rows out as a grid.

Everything here reads the tidy result rows that `sweeps.py` writes (schema in
docs/ARCHITECTURE.md, "Result rows"; columns `sweep_rows.RESULT_COLUMNS`) and returns
pandas tables the figures and the claims' numbers are drawn from. No model, no torch.

Conventions (paper Section 5, Apps. B-E):

- The bilingual model θ_bi is the point α = 1 of Eq. 1 / Eq. 2 and (α1, α2) = (0, 0) of
  Eq. 3. A score is normalised by θ_bi's score on the same dev set (same encoder, task,
  pair, seed, interpolation scope and evaluation language).
- Fig. 2's lines are "the language of the monolingual end-point" and "the other
  language": for Eq. 1 the end-point is θ_src, for Eq. 2 it is θ_tgt.
- Confidence intervals of means are Student-t intervals over all rows pooled in a group
  (each row one (language pair, task, seed) observation), n - 1 degrees of freedom.
- The variance across seeds (Fig. 5) gets a chi-square interval instead
  (`variance_ci`): it is never below 0, as a variance cannot be.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .labels import TASKS
from .settings import PLANE_2D, PLANES, PLANES_1D, SCOPES
from .sweep_rows import RESULT_COLUMNS, sweep_files

EVAL_ROLES = ("source", "target")
LINES = ("endpoint language", "other language")

# Columns that must be non-empty in every row.
_REQUIRED_TEXT = ("encoder", "task", "source", "target", "plane", "scope", "eval_lang",
                  "eval_role", "metric")
# One evaluated point: two rows with the same key are the same evaluation twice.
POINT_KEY = ("encoder", "task", "source", "target", "seed", "plane", "alpha", "alpha1",
             "alpha2", "scope", "eval_lang")
# The dev set a score was measured on; the bilingual model is looked up per group.
NORM_KEY = ("encoder", "task", "source", "target", "seed", "scope", "eval_lang")
# Grid points are multiples of 0.025; rounding removes float noise such as
# 0.30000000000000004 so that equal α values group together.
_ALPHA_DECIMALS = 6
# θ_bi is evaluated once per plane; its scores should agree (it is the same model).
_BI_SPREAD_WARN = 1e-3


# --------------------------------------------------------------------------- loading


def _as_path_list(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(p.glob("*.csv"))
            if not found:
                raise FileNotFoundError(f"{p}: folder holds no *.csv result files")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such result file")
    if not out:
        raise ValueError("load_results: no result files given")
    return out


def _read_one(path: Path) -> pd.DataFrame:
    """Read one CSV as strings, with the file line of each row in `_line`."""
    rows: list[list[str]] = []
    lines: list[int] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file (no header line)")
        header = [h.strip() for h in header]
        for col in RESULT_COLUMNS:
            if col not in header:
                raise ValueError(f"{path}: missing column {col!r} in the header (line 1)")
        for row in reader:
            if not row:  # blank line
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}, line {reader.line_num}: {len(row)} fields, "
                    f"expected {len(header)} (truncated or malformed row?)"
                )
            rows.append(row)
            lines.append(reader.line_num)
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    frame["_file"] = str(path)
    frame["_line"] = np.asarray(lines, dtype=np.int64)
    return frame


def _where(frame: pd.DataFrame, bad: np.ndarray | pd.Series) -> str:
    first = frame[np.asarray(bad)].iloc[0]
    return f"{first['_file']}, line {first['_line']}"


def _numeric(frame: pd.DataFrame, col: str, *, required: np.ndarray | bool) -> pd.Series:
    """Coerce `col` to float; a non-empty non-number, or an empty required cell, is an error."""
    text = frame[col].astype(str).str.strip()
    values = pd.to_numeric(text.where(text != ""), errors="coerce").astype(float)
    bad_text = (text != "") & values.isna()
    if bad_text.any():
        where = _where(frame, bad_text)
        value = text[bad_text].iloc[0]
        raise ValueError(f"{where}: column {col!r} is not a number: {value!r}")
    missing = values.isna() & np.asarray(required)
    if missing.any():
        raise ValueError(f"{_where(frame, missing)}: column {col!r} is empty")
    return values


def _check_choice(frame: pd.DataFrame, col: str, allowed: Sequence[str]) -> None:
    bad = ~frame[col].isin(allowed)
    if bad.any():
        value = frame.loc[bad, col].iloc[0]
        raise ValueError(
            f"{_where(frame, bad)}: column {col!r} is {value!r}; expected one of {tuple(allowed)}"
        )


def load_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Read and validate result CSVs; return one DataFrame with the ARCHITECTURE.md schema.

    `paths` is a file, a folder (all its `*.csv`) or a list of either. Dtypes: `seed`
    int64; `alpha`, `alpha1`, `alpha2`, `score` float64 (empty α cells are NaN, α values
    rounded to 1e-6); `n_examples` Int64; the rest strings. Scores are fractions in
    [0, 1]. Errors name the file and the line (or the column, for a missing column).
    Extra columns are kept.
    """
    frame = pd.concat([_read_one(p) for p in _as_path_list(paths)], ignore_index=True)
    for col in _REQUIRED_TEXT:
        frame[col] = frame[col].astype(str).str.strip()
        empty = frame[col] == ""
        if empty.any():
            raise ValueError(f"{_where(frame, empty)}: column {col!r} is empty")
    _check_choice(frame, "task", TASKS)
    _check_choice(frame, "plane", PLANES)
    _check_choice(frame, "scope", SCOPES)
    _check_choice(frame, "eval_role", EVAL_ROLES)

    is_1d = frame["plane"].isin(PLANES_1D).to_numpy()
    seed = _numeric(frame, "seed", required=True)
    if (seed != np.round(seed)).any():
        raise ValueError(f"{_where(frame, seed != np.round(seed))}: column 'seed' is not an integer")
    frame["seed"] = seed.astype(np.int64)
    frame["alpha"] = _numeric(frame, "alpha", required=is_1d).round(_ALPHA_DECIMALS)
    frame["alpha1"] = _numeric(frame, "alpha1", required=~is_1d).round(_ALPHA_DECIMALS)
    frame["alpha2"] = _numeric(frame, "alpha2", required=~is_1d).round(_ALPHA_DECIMALS)
    score = _numeric(frame, "score", required=True)
    out_of_range = (score < 0) | (score > 1)
    if out_of_range.any():
        raise ValueError(
            f"{_where(frame, out_of_range)}: score {score[out_of_range].iloc[0]} outside [0, 1] "
            "(scores are fractions, not percentages)"
        )
    frame["score"] = score
    frame["n_examples"] = _numeric(frame, "n_examples", required=False).round().astype("Int64")

    # eval_role must agree with the pair: a mismatch means a sweep mislabelled its rows.
    expected_lang = np.where(frame["eval_role"] == "source", frame["source"], frame["target"])
    wrong_role = frame["eval_lang"].to_numpy() != expected_lang
    if wrong_role.any():
        row = frame[wrong_role].iloc[0]
        raise ValueError(
            f"{_where(frame, wrong_role)}: eval_role {row['eval_role']!r} but eval_lang "
            f"{row['eval_lang']!r} for pair {row['source']}->{row['target']}"
        )

    dup = frame.duplicated(list(POINT_KEY), keep=False)
    if dup.any():
        dups = frame[dup]
        group = dups.groupby(list(POINT_KEY), dropna=False, sort=False).ngroup()
        same = dups[group == group.iloc[0]]
        places = "; ".join(f"{r['_file']}, line {r['_line']}" for _, r in same.iterrows())
        raise ValueError(f"the same evaluation appears more than once: {places}")

    extras = [c for c in frame.columns if c not in RESULT_COLUMNS and not c.startswith("_")]
    return frame[list(RESULT_COLUMNS) + extras].reset_index(drop=True)


# --------------------------------------------------------------------------- views


def bilingual_mask(df: pd.DataFrame) -> pd.Series:
    """Return a boolean Series: True on rows evaluating θ_bi (α = 1 of eq1/eq2, (0, 0) of 2d)."""
    one_d = df["plane"].isin(PLANES_1D) & np.isclose(df["alpha"].astype(float), 1.0)
    two_d = (
        (df["plane"] == PLANE_2D)
        & np.isclose(df["alpha1"].astype(float), 0.0)
        & np.isclose(df["alpha2"].astype(float), 0.0)
    )
    return one_d | two_d


def _group_name(values: Sequence, key: Sequence[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(key, values, strict=True))


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of `df` with `bi_score` and `norm_score` = score / bi_score (unitless).

    `bi_score` is θ_bi's score on the same dev set: same (encoder, task, source, target,
    seed, scope, eval_lang). θ_bi is evaluated in each plane (α = 1 of eq1/eq2, (0, 0) of
    2d); these are the same model, so their mean is used (with a warning if they differ
    by more than 1e-3). A group with no bilingual point is an error naming the group; a
    bilingual score of 0 (an untrained or collapsed model) gives NaN for that group, with
    a warning naming it, so the other groups can still be drawn.
    """
    key = list(NORM_KEY)
    bi = df.loc[bilingual_mask(df)].groupby(key, sort=False)["score"].agg(["mean", "min", "max"])
    spread = bi["max"] - bi["min"]
    if (spread > _BI_SPREAD_WARN).any():
        name = _group_name(spread.idxmax(), key)
        warnings.warn(
            f"bilingual scores differ across planes by up to {spread.max():.4g} ({name}); "
            "using their mean",
            stacklevel=2,
        )
    bi = bi["mean"].rename("bi_score").reset_index()
    out = df.drop(columns=["bi_score", "norm_score"], errors="ignore")
    merged = out[key].merge(bi, on=key, how="left", validate="many_to_one")
    missing = merged["bi_score"].isna().to_numpy()
    if missing.any():
        groups = out.loc[missing, key].drop_duplicates()
        names = [_group_name(g, key) for g in groups.itertuples(index=False)]
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        raise ValueError(
            f"no bilingual point (eq1/eq2 alpha=1 or 2d alpha1=alpha2=0) for {names[0]}{more}"
        )
    zero = (merged["bi_score"] == 0).to_numpy()
    if zero.any():
        groups = out.loc[zero, key].drop_duplicates()
        names = [_group_name(g, key) for g in groups.itertuples(index=False)]
        warnings.warn(
            f"bilingual score is 0, normalised scores set to NaN for {len(names)} group(s): "
            + "; ".join(names[:3]) + (" …" if len(names) > 3 else ""),
            stacklevel=2,
        )
    out = out.copy()
    out["bi_score"] = merged["bi_score"].to_numpy()
    bi_score = np.where(zero, np.nan, out["bi_score"].to_numpy())
    out["norm_score"] = out["score"].to_numpy() / bi_score
    return out


def endpoint_view(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of `df` with `line` in {"endpoint language", "other language"}.

    Eq. 1's monolingual end-point is θ_src, so source-language evaluation is the
    "endpoint language"; Eq. 2's is θ_tgt, so target-language evaluation is. 2d rows have
    no end-point: their `line` is missing (NaN).
    """
    plane = df["plane"].to_numpy()
    role = df["eval_role"].to_numpy()
    eq1, eq2 = PLANES_1D
    endpoint = ((plane == eq1) & (role == "source")) | ((plane == eq2) & (role == "target"))
    line = np.where(endpoint, LINES[0], LINES[1]).astype(object)
    line[~np.isin(plane, PLANES_1D)] = None
    out = df.copy()
    out["line"] = line
    return out


def add_views(df: pd.DataFrame) -> pd.DataFrame:
    """Return `df` with `norm_score` and `line` added where they are missing."""
    if "norm_score" not in df.columns:
        df = normalise(df)
    if "line" not in df.columns:
        df = endpoint_view(df)
    return df


def select_profile_rows(df: pd.DataFrame, profile, planes: Sequence[str] = PLANES
                        ) -> pd.DataFrame:
    """Return the rows of `df` that belong to `profile`'s grid (encoders, tasks, pairs,
    seeds, scope) and to `planes`."""
    pairs = {tuple(p) for p in profile.pair_tuples()}
    keep = (
        df["encoder"].isin(profile.encoders) & df["task"].isin(profile.tasks)
        & df["seed"].isin(profile.seeds) & (df["scope"] == profile.scope)
        & df["plane"].isin(planes)
        & pd.Series([(s, t) in pairs for s, t in zip(df["source"], df["target"], strict=True)],
                    index=df.index)
    )
    return df[keep].reset_index(drop=True)


def profile_rows(profile, results_root: str | os.PathLike, planes: Sequence[str] = PLANES, *,
                 views: bool = True) -> pd.DataFrame:
    """Return `profile`'s result rows from the sweep CSVs under `results_root`, restricted
    to `planes`; with `views`, `norm_score` (score / θ_bi's score on the same dev set,
    averaged over the planes it was evaluated in) and `line` added (`add_views`). Empty,
    with `RESULT_COLUMNS`, when there are no rows."""
    files = sweep_files(results_root)
    if not files:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    rows = select_profile_rows(load_results(files), profile, planes=planes)
    return add_views(rows) if views and not rows.empty else rows


def grid_2d(df: pd.DataFrame, value: str = "norm_score"
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (alpha1_values, alpha2_values, Z) with Z[j, i] = mean `value` at (α1[i], α2[j]).

    `df` holds the 2d rows of one (encoder, task, source, target, scope, eval_lang); seeds
    are averaged. Missing grid points are NaN. Z has shape (len(α2), len(α1)), the
    layout `contour(α1, α2, Z)` expects (α1 on x, α2 on y).
    """
    rows = df[df["plane"] == PLANE_2D] if "plane" in df.columns else df
    if rows.empty:
        raise ValueError("grid_2d: no 2d rows")
    for col in ("encoder", "task", "source", "target", "scope", "eval_lang"):
        if col in rows.columns and rows[col].nunique() > 1:
            raise ValueError(f"grid_2d: rows mix several {col} values "
                             f"{sorted(map(str, rows[col].unique()))}; select one first")
    table = rows.pivot_table(index="alpha2", columns="alpha1", values=value, aggfunc="mean")
    table = table.sort_index(axis=0).sort_index(axis=1)
    return (table.columns.to_numpy(float), table.index.to_numpy(float),
            table.to_numpy(float))


# --------------------------------------------------------------------------- statistics


def _t_halfwidth(std: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = np.where(n > 1, n - 1, np.nan)
        quantile = stats.t.ppf(0.5 + confidence / 2, dof)
        return quantile * np.asarray(std, dtype=float) / np.sqrt(n)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Return (mean, lo, hi): the mean and its Student-t confidence interval (n - 1 dof).

    NaNs are dropped. With one value the bounds are NaN; with none, all three are NaN.
    Units are those of `values`.
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        _t_halfwidth(np.array([np.nan]), np.array([0]), confidence)  # validates confidence
        return (math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    h = float(_t_halfwidth(np.array([std]), np.array([arr.size]), confidence)[0])
    return (mean, mean - h, mean + h)


def _aggregate(df: pd.DataFrame, by: Sequence[str], value: str, confidence: float) -> pd.DataFrame:
    """Mean, t-interval and count of `value` per `by` group (NaN values excluded)."""
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"cannot group by {missing}: no such column(s) in the table")
    grouped = df.groupby(list(by), sort=True, dropna=False)[value]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    h = _t_halfwidth(out["std"].to_numpy(), out["n"].to_numpy(), confidence)
    out["lo"] = out["mean"] - h
    out["hi"] = out["mean"] + h
    return out[list(by) + ["mean", "lo", "hi", "n"]]


DEFAULT_BY_1D = ("encoder", "source", "scope", "plane", "line")


def aggregate_1d(
    df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY_1D, confidence: float = 0.95
) -> pd.DataFrame:
    """Return mean and CI of `norm_score` per α over the 1D rows (eq1/eq2) of `df`.

    Rows are grouped by `by` + `alpha`; everything not in `by` (targets, tasks, seeds)
    is pooled. Columns: `by`, `alpha`, `mean`, `lo`, `hi` (score / bilingual score) and
    `n` (rows pooled). `norm_score` and `line` are computed if `df` lacks them.
    """
    one_d = df[df["plane"].isin(PLANES_1D)]
    if one_d.empty:
        raise ValueError("aggregate_1d: no eq1/eq2 rows in the table")
    one_d = add_views(one_d)
    return _aggregate(one_d, [*by, "alpha"], "norm_score", confidence)


SEED_VARIANCE_KEY = ("encoder", "task", "source", "target", "plane", "scope", "eval_role",
                     "line", "alpha")
DEFAULT_BY_VARIANCE = ("encoder", "scope", "plane", "line")


def seed_variance(df: pd.DataFrame) -> pd.DataFrame:
    """Return the variance across seeds of the normalised score, per pair, task and α.

    Scores are normalised first (each seed by its own bilingual model's score on the
    same dev set), then the sample variance across seeds is taken (ddof=1): this is the
    paper's Fig. 5 "variance normalised by the bilingual score", unitless. Columns:
    SEED_VARIANCE_KEY, `var`, `n_seeds`; `var` is NaN with fewer than two seeds.
    """
    one_d = df[df["plane"].isin(PLANES_1D)]
    if one_d.empty:
        raise ValueError("seed_variance: no eq1/eq2 rows in the table")
    one_d = add_views(one_d)
    grouped = one_d.groupby(list(SEED_VARIANCE_KEY), sort=True)["norm_score"]
    return grouped.agg(var=lambda s: s.var(ddof=1), n_seeds="count").reset_index()


def variance_ci(var, dof, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Return (lo, hi): the chi-square confidence interval of a variance σ².

    `var` is an estimate of σ² with `dof` degrees of freedom (a sample variance of n
    values has n - 1; a pooled one the sum of its parts'). Under normal observations
    dof·var/σ² ~ χ²(dof), so the interval is

        [dof·var / χ²_{(1+c)/2}(dof),  dof·var / χ²_{(1-c)/2}(dof)]

    with c = `confidence` and χ²_q(ν) the q-quantile. Both bounds are ≥ 0 for var ≥ 0
    and the interval is not symmetric about `var`. NaN where dof < 1 or var is NaN.
    Arrays broadcast; units are those of `var`.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    var = np.asarray(var, dtype=float)
    dof = np.asarray(dof, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        nu = np.where(dof >= 1, dof, np.nan)
        upper_q = stats.chi2.ppf(0.5 + confidence / 2, nu)
        lower_q = stats.chi2.ppf(0.5 - confidence / 2, nu)
        return nu * var / upper_q, nu * var / lower_q


def normalised_variance(
    df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY_VARIANCE, confidence: float = 0.95
) -> pd.DataFrame:
    """Return the seed variance of the normalised score (see `seed_variance`) pooled per α.

    Per-pair variances s²_i (n_i seeds each) are pooled across everything not in `by`
    (pairs, tasks): `mean` = Σ(n_i - 1)·s²_i / Σ(n_i - 1), which is their plain mean when
    every pair has the same number of seeds. `lo`, `hi` are its chi-square interval
    (`variance_ci`) with `dof` = Σ(n_i - 1) degrees of freedom, which treats the pooled
    pairs as sharing one variance. Columns: `by`, `alpha`, `mean`, `lo`, `hi`, `n` (pairs
    x tasks pooled; pairs with one seed are left out), `dof`. Unitless, all ≥ 0.
    """
    per_pair = seed_variance(df)
    keys = [*by, "alpha"]
    missing = [c for c in keys if c not in per_pair.columns]
    if missing:
        raise ValueError(f"cannot group by {missing}: no such column(s) in the table")
    has_var = per_pair["var"].notna()
    per_pair["dof"] = np.where(has_var, per_pair["n_seeds"] - 1, 0)
    per_pair["weighted"] = np.where(has_var, per_pair["var"] * per_pair["dof"], 0.0)
    out = per_pair.groupby(keys, sort=True, dropna=False).agg(
        weighted=("weighted", "sum"), dof=("dof", "sum"), n=("var", "count")).reset_index()
    dof = out["dof"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean"] = np.where(dof > 0, out["weighted"].to_numpy(float) / dof, np.nan)
    out["lo"], out["hi"] = variance_ci(out["mean"].to_numpy(), dof, confidence)
    return out[keys + ["mean", "lo", "hi", "n", "dof"]]
