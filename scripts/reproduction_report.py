"""The numbers REPRODUCTION.md quotes, per claim of the paper, from a profile's results.

Usage: python scripts/reproduction_report.py [PROFILE] [key=value ...]   (default: repro)

Reads the profile's rows of its `results/` (sweeps, finetune.csv, geometry.csv: only
the profile's encoders, tasks, pairs and seeds) and writes
`<results>/claims.md`: one table per claim, per task, averaged over pairs and seeds
unless a column says otherwise. Scores are normalised by the bilingual model of the same
seed and dev set (1.00 = θ_bi), as in the paper's figures.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from xinterp_utils.analysis import profile_rows
from xinterp_utils.paths import atomic_write, repo_root
from xinterp_utils.profiles import load_profile
from xinterp_utils.settings import PLANE_2D, PLANES_1D, SCOPES
from xinterp_utils.summary import (
    endpoints_by_target,
    finetune_seed_spread,
    geometry_by_target,
    one_d_summary,
    scope_comparison,
    surface_slopes,
    variance_summary,
    zero_shot_variance_tests,
)
from xinterp_utils.tables import FINETUNE_COLUMNS, GEOMETRY_COLUMNS, profile_cells, read_table


def rising_fraction(rows: pd.DataFrame) -> pd.DataFrame:
    """Return, per (task, plane, line), the fraction of consecutive α steps in [0, 1] on
    which the mean normalised score does not fall (1.0 = monotone from α = 0 to 1)."""
    inside = rows[(rows["alpha"] >= 0) & (rows["alpha"] <= 1)]
    curve = inside.groupby(["task", "plane", "line", "alpha"])["norm_score"].mean()
    out = []
    for (task, plane, line), c in curve.groupby(level=[0, 1, 2]):
        steps = np.diff(c.sort_index(level="alpha").to_numpy())
        out.append({"task": task, "plane": plane, "line": line,
                    "rising_steps": float(np.mean(steps >= -1e-12))})
    return pd.DataFrame(out)


def variance_at_zero(one_d: pd.DataFrame, role_of_line: pd.DataFrame,
                     by: Sequence[str] = ("task",)) -> pd.DataFrame:
    """Return, per (`by`…, plane), the variance across seeds of the normalised score at
    α = 0 on the source and on the target dev set and their ratio; a one-row note where
    no such group has two seeds yet. `by` ("task",) pools the pairs; ("task", "target")
    gives one row per pair."""
    variance = variance_summary(one_d, by=list(by)).merge(role_of_line, on=["plane", "line"])
    # At α = 1 every seed's normalised score is 1 by construction, so the comparison that
    # means something is between the two dev sets at the monolingual end (α = 0).
    variance = (variance.pivot_table(index=[*by, "plane"], columns="eval_role",
                                     values="var_at_0")
                .rename(columns={"source": "var_source_at_0", "target": "var_target_at_0"})
                .reset_index())
    variance.columns.name = None
    if not {"var_source_at_0", "var_target_at_0"} <= set(variance.columns):
        return pd.DataFrame({"note": ["a variance across seeds needs two seeds or more"]})
    variance["target_over_source"] = variance["var_target_at_0"] / variance["var_source_at_0"]
    return variance


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """Return `df` as a GitHub markdown table with floats rounded to `digits`."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(profile) -> str:
    """Return the claims report of `profile`'s results as markdown."""
    results = repo_root() / profile.results
    rows = profile_rows(profile, results)
    one_d = rows[rows["plane"].isin(PLANES_1D)]
    finetune_path, geometry_path = results / "finetune.csv", results / "geometry.csv"
    raw = pd.DataFrame({"note": [f"{finetune_path.name} not written yet (notebook 01)"]})
    spread = f_tests = endpoints = raw
    if finetune_path.is_file():
        finetune = profile_cells(read_table(finetune_path, FINETUNE_COLUMNS), profile)
        raw = (finetune.groupby(["task", "model", "eval_role"])["score"]
               .agg(["mean", "std"]).reset_index())
        spread = finetune_seed_spread(finetune)
        f_tests = zero_shot_variance_tests(finetune)
        endpoints = endpoints_by_target(finetune)
    # which dev set each (plane, line) is, as analysis.endpoint_view labelled the rows
    role_of_line = one_d[["plane", "line", "eval_role"]].drop_duplicates()
    lines_1d = (one_d_summary(one_d, by=["task"])
                .merge(rising_fraction(one_d), on=["task", "plane", "line"])
                .merge(role_of_line, on=["plane", "line"]))
    lines_1d = lines_1d[["task", "plane", "eval_role", "at_0", "at_0.5", "min_0_1",
                         "max_gap_to_line", "rising_steps", "n_alpha"]]
    variance = variance_at_zero(one_d, role_of_line)
    # Per target language: the pooled tables above average over the pairs.
    eq1 = one_d[one_d["plane"] == "eq1"]
    by_pair = (one_d_summary(eq1, by=["task", "target"])
               .merge(role_of_line, on=["plane", "line"]))
    by_pair = by_pair[["task", "target", "eval_role", "at_0", "at_0.5", "min_0_1",
                       "max_gap_to_line"]].sort_values(["task", "eval_role", "target"])
    variance_by_pair = variance_at_zero(eq1, role_of_line, by=("task", "target"))
    scoped = pd.concat([profile_rows(dataclasses.replace(profile, scope=scope), results,
                                     planes=("eq1",), views=False) for scope in SCOPES])
    no_scopes = "no scope=encoder or scope=head sweeps yet (scripts/scope_sweeps.py)"
    scopes = (scope_comparison(scoped) if scoped["scope"].nunique() > 1
              else pd.DataFrame({"note": [no_scopes]}))
    two_d = rows[rows["plane"] == PLANE_2D]
    slopes = surface_slopes(two_d) if not two_d.empty else pd.DataFrame()
    geo = pd.DataFrame({"note": [f"{geometry_path.name} not written yet (notebook 05)"]})
    geo_by_pair = geo
    if geometry_path.is_file():
        geometry = profile_cells(read_table(geometry_path, GEOMETRY_COLUMNS), profile)
        geo_by_pair = geometry_by_target(geometry)
        geo = (geometry.groupby("task")
               [["norm_src", "norm_tgt", "ratio", "angle_deg"]].agg(["mean", "std"]))
        geo.columns = [f"{a}_{b}" for a, b in geo.columns]
        geo = geo.reset_index()

    n = rows.groupby("task")[["source", "target", "seed"]].nunique().reset_index()
    parts = [
        f"# Claims report: profile `{profile.name}`",
        "",
        (f"Encoders {profile.encoders}; pairs {profile.pairs}; seeds {profile.seeds}; "
        f"training cap {profile.max_train_examples} sentences per language, dev cap "
        f"{profile.max_dev_examples}; {len(profile.alphas_1d)} α on Eq. 1/2, "
        f"{len(profile.alphas_2d)}² on Eq. 3 for {profile.pairs_2d} (seeds "
        f"{profile.seeds_2d}). Generated by `scripts/reproduction_report.py`."),
        "", "Coverage (distinct targets and seeds with sweep rows):", "", markdown(n), "",
        "## Fine-tuned end-points (raw dev scores, mean and std over pairs and seeds)", "",
        markdown(raw), "",
        ("Per target language, mean over seeds: θ_src and θ_bi on the source dev set; the "
         "zero-shot model (θ_src), θ_tgt and θ_bi on the target dev set; `gap` = θ_bi − "
         "zero-shot on the target."), "",
        markdown(endpoints), "",
        "## 1D lines (normalised by θ_bi; α = 0 is the monolingual model, α = 1 is θ_bi)",
        "",
        ("`max_gap_to_line`: largest distance between the curve and the straight line "
        "from α = 0 to α = 1; `rising_steps`: fraction of α steps in [0, 1] on which the "
        "mean curve does not fall."), "", markdown(lines_1d), "",
        "## Eq. 1 per target language (normalised by θ_bi)", "",
        markdown(by_pair), "",
        "Variance across seeds at α = 0 of Eq. 1, per target language:", "",
        markdown(variance_by_pair, digits=5), "",
        "## Variance across seeds of the normalised score (Fig. 5)", "",
        ("At α = 0 of each line (Eq. 1: θ_src, so the target column is the zero-shot "
         "model; Eq. 2: θ_tgt), on the source and on the target dev set."), "",
        markdown(variance, digits=5), "",
        ("Raw dev scores of the fine-tuned models: standard deviation across seeds within "
         "a pair, averaged over pairs; `cv` = seed_std / mean."), "",
        markdown(spread, digits=4), "",
        ("One-sided F tests that the zero-shot model's seed variance (raw score on the "
         "target) exceeds another model's: variances pooled within pairs, a run shared by "
         "pairs (θ_src on the source) counted once; per task over the pairs, then per "
         "target language."), "",
        markdown(f_tests, digits=4), "",
        "## Footnote 2: Eq. 1 with only the encoder or only the head interpolated", "",
        ("Raw scores; parameters outside the scope stay at θ_bi. `span_0_1`: max − min "
         "over α ∈ [0, 1]; `max_diff_from_all`: largest |difference| from the scope=all "
         "curve at the same α and seed."), "", markdown(scopes, digits=4), "",
        "## Geometry (App. B): ‖δ_src‖, ‖δ_tgt‖, ratio and angle (degrees)", "",
        markdown(geo), "",
        "Per target language (means over seeds; `angle_std` across seeds, degrees):", "",
        markdown(geo_by_pair), "",
    ]
    if not slopes.empty:
        parts += ["## Steepness of the 2D surface (Eq. 3), |∇ normalised score| per unit α",
                  "", markdown(slopes), ""]
    return "\n".join(parts)


def main(argv: list[str]) -> None:
    """Write `<results>/claims.md` for the profile named in argv (default repro)."""
    name = argv[0] if argv and "=" not in argv[0] else "repro"
    overrides = [a for a in argv if "=" in a]
    profile = load_profile(name, overrides)
    text = report(profile)
    path = repo_root() / profile.results / "claims.md"
    with atomic_write(path, "w") as handle:
        handle.write(text)
    print(text)
    print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1:])
