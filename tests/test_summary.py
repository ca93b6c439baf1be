"""summary: the 1D summary (Eq. 1/2 curves), the seed variance at the end-points, and
surface_slopes (finite-difference steepness of the 2D surface of Eq. 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xinterp_utils.summary import (
    endpoints_by_target,
    finetune_seed_spread,
    geometry_by_target,
    one_d_summary,
    pooled_seed_variance,
    scope_comparison,
    surface_slopes,
    variance_f_test,
    variance_summary,
    zero_shot_variance_tests,
)
from xinterp_utils.sweep_rows import RESULT_COLUMNS

GRID = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def surface_rows(score_of, bi_score: float) -> pd.DataFrame:
    """2D rows whose normalised score is score_of(role, α1, α2), for two seeds that differ
    only by their bilingual score (so normalising must undo the difference)."""
    rows = []
    base = {"encoder": "enc", "task": "ner", "source": "en", "target": "de", "scope": "all",
            "metric": "span_f1", "n_examples": 50, "ckpt_src": "s", "ckpt_tgt": "t",
            "ckpt_bi": "b", "sweep_id": "w", "plane": "2d", "alpha": np.nan}
    for seed, bi in ((1, bi_score), (2, 2 * bi_score)):
        for role, lang in (("source", "en"), ("target", "de")):
            for a1 in GRID:
                for a2 in GRID:
                    rows.append(dict(base, seed=seed, eval_lang=lang, eval_role=role,
                                     alpha1=a1, alpha2=a2, score=bi * score_of(role, a1, a2)))
    return pd.DataFrame(rows)[list(RESULT_COLUMNS)]


def test_plane_surface_has_the_same_slope_everywhere():
    df = surface_rows(lambda role, a1, a2: 1 + 0.3 * a1 - 0.4 * a2, bi_score=0.4)
    out = surface_slopes(df)
    assert sorted(out["eval_role"]) == ["source", "target"]
    for col in ("slope_zero_shot", "slope_bilingual", "slope_median_0_1"):
        np.testing.assert_allclose(out[col], 0.5, rtol=1e-9)


def test_steep_target_at_zero_shot_and_flat_source():
    # target falls off quadratically towards θ_src = (1, 0); source is flat in α1.
    def score(role, a1, a2):
        return 1 - 0.5 * a1**2 if role == "target" else 1 - 0.1 * a2**2

    out = surface_slopes(surface_rows(score, bi_score=0.6)).set_index("eval_role")
    # α1 = 1 is an interior grid point: central difference over ±0.25 is exact for a
    # quadratic: |d/dα1 (1 − 0.5 α1²)| = 1 at α1 = 1.
    assert out.loc["target", "slope_zero_shot"] == pytest.approx(1.0)
    assert out.loc["target", "slope_bilingual"] == pytest.approx(0.0, abs=1e-12)
    assert out.loc["source", "slope_zero_shot"] == pytest.approx(0.0, abs=1e-12)
    assert out.loc["target", "pair"] == "en-de"


ALPHAS = (-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25)


def line_rows(curve_of, seeds=(1, 2)) -> pd.DataFrame:
    """Eq. 1 rows whose normalised score is curve_of(task, role, seed, α); each seed's
    bilingual score is 0.5 * seed, which normalising must undo."""
    rows = []
    base = {"encoder": "enc", "source": "en", "target": "de", "scope": "all",
            "metric": "acc", "n_examples": 50, "ckpt_src": "s", "ckpt_tgt": "t",
            "ckpt_bi": "b", "sweep_id": "w", "plane": "eq1", "alpha1": np.nan,
            "alpha2": np.nan}
    for task in ("ner", "pos"):
        for seed in seeds:
            for role, lang in (("source", "en"), ("target", "de")):
                for a in ALPHAS:
                    score = 0.5 * seed * curve_of(task, role, seed, a)
                    rows.append(dict(base, task=task, seed=seed, eval_lang=lang,
                                     eval_role=role, alpha=a, score=score))
    return pd.DataFrame(rows)[list(RESULT_COLUMNS)]


def test_one_d_summary_reads_end_points_midpoint_and_gap_per_task():
    # source flat at 0.9 then 1 at α = 1 for ner; target a parabola below the chord.
    def curve(task, role, seed, a):
        if a == 1.0:
            return 1.0
        if role == "source":
            return 0.9 if task == "ner" else 0.98
        return 0.4 + 0.6 * a - (0.2 if task == "ner" else 0.0) * a * (1 - a) * 4

    out = one_d_summary(line_rows(curve), by=["task"]).set_index(["task", "line"])
    ner_tgt = out.loc[("ner", "other language")]
    assert ner_tgt["at_0"] == pytest.approx(0.4)
    assert ner_tgt["at_0.5"] == pytest.approx(0.7 - 0.2)
    assert ner_tgt["max_gap_to_line"] == pytest.approx(0.2)  # the parabola's depth at 0.5
    assert ner_tgt["n_alpha"] == 5  # α outside [0, 1] is not summarised
    assert out.loc[("pos", "other language"), "max_gap_to_line"] == pytest.approx(0.0)
    assert out.loc[("ner", "endpoint language"), "min_0_1"] == pytest.approx(0.9)
    # without `by`, tasks are averaged
    pooled = one_d_summary(line_rows(curve)).set_index("line")
    assert pooled.loc["endpoint language", "at_0"] == pytest.approx((0.9 + 0.98) / 2)


def test_variance_summary_is_the_seed_variance_of_normalised_scores():
    # seed 1 and seed 2 differ by ±d at α = 0 on the target, agree at α = 1
    def curve(task, role, seed, a):
        d = {"ner": 0.1, "pos": 0.05}[task] if role == "target" and a == 0.0 else 0.0
        return (0.5 if a < 1 else 1.0) + (d if seed == 1 else -d)

    out = variance_summary(line_rows(curve), by=["task"]).set_index(["task", "line"])
    # sample variance (ddof=1) of {x + d, x − d} is 2 d²
    assert out.loc[("ner", "other language"), "var_at_0"] == pytest.approx(2 * 0.1**2)
    assert out.loc[("pos", "other language"), "var_at_0"] == pytest.approx(2 * 0.05**2)
    assert out.loc[("ner", "other language"), "var_at_1"] == pytest.approx(0.0, abs=1e-15)
    assert out.loc[("ner", "endpoint language"), "var_at_0"] == pytest.approx(0.0, abs=1e-15)
    pooled = variance_summary(line_rows(curve)).set_index("line")
    assert pooled.loc["other language", "var_at_0"] == pytest.approx((0.02 + 0.005) / 2)
    single = variance_summary(line_rows(curve, seeds=(1,)))
    assert single["var_at_0"].isna().all()


def test_finetune_seed_spread_is_the_within_pair_std_averaged_over_pairs():
    rows = []
    # en-de: zero-shot scores 0.2, 0.4 (std √0.02); en-ru: 0.5, 0.5 (std 0); source 0.8 flat.
    for target, zero_shot in (("de", (0.2, 0.4)), ("ru", (0.5, 0.5))):
        for seed, score in zip((1, 2), zero_shot, strict=True):
            rows.append({"task": "ner", "source": "en", "target": target, "seed": seed,
                         "model": "src", "eval_role": "target", "score": score})
            rows.append({"task": "ner", "source": "en", "target": target, "seed": seed,
                         "model": "src", "eval_role": "source", "score": 0.8})
    out = finetune_seed_spread(pd.DataFrame(rows)).set_index(["model", "eval_role"])
    # pooling the pairs instead would give the std of {0.2, 0.4, 0.5, 0.5}, not this
    assert out.loc[("src", "target"), "seed_std"] == pytest.approx(np.sqrt(0.02) / 2)
    assert out.loc[("src", "target"), "mean"] == pytest.approx(0.4)
    assert out.loc[("src", "target"), "cv"] == pytest.approx(np.sqrt(0.02) / 2 / 0.4)
    assert out.loc[("src", "source"), "seed_std"] == pytest.approx(0.0)
    one_seed = finetune_seed_spread(pd.DataFrame(rows).query("seed == 1"))
    assert one_seed["seed_std"].isna().all()


def _finetune_rows(zero_shot: dict, source: tuple) -> pd.DataFrame:
    """finetune.csv rows of θ_src for pairs en-<target>, seeds 1..n: `zero_shot[target]`
    its target scores, `source` its English scores (one run per seed, shared by pairs)."""
    rows = []
    for target, scores in zero_shot.items():
        for seed, (score, on_en) in enumerate(zip(scores, source, strict=True), start=1):
            common = {"encoder": "e", "task": "pos", "source": "en", "target": target,
                      "seed": seed, "model": "src", "train_langs": "en",
                      "run_id": f"run{seed}"}
            rows.append(dict(common, eval_lang=target, eval_role="target", score=score))
            rows.append(dict(common, eval_lang="en", eval_role="source", score=on_en))
    return pd.DataFrame(rows)


def test_endpoints_by_target_averages_each_model_over_seeds_per_target():
    rows = _finetune_rows({"de": (0.60, 0.62, 0.64), "ru": (0.50, 0.50, 0.53)},
                          source=(0.900, 0.902, 0.904))
    # θ_bi on German for two seeds only; nothing for θ_tgt or for θ_bi on Russian yet
    for seed, score in ((1, 0.70), (2, 0.74)):
        rows.loc[len(rows)] = {"encoder": "e", "task": "pos", "source": "en",
                               "target": "de", "seed": seed, "model": "bi",
                               "train_langs": "en+de", "run_id": f"bi{seed}",
                               "eval_lang": "de", "eval_role": "target", "score": score}
    out = endpoints_by_target(rows).set_index("target")
    assert out.loc["de", "zero_shot"] == pytest.approx(0.62)
    assert out.loc["ru", "zero_shot"] == pytest.approx(1.53 / 3)
    assert out.loc["de", "src_on_source"] == pytest.approx(0.902)
    assert out.loc["de", "bi_on_target"] == pytest.approx(0.72)
    assert out.loc["de", "gap"] == pytest.approx(0.10)
    assert np.isnan(out.loc["ru", "bi_on_target"]) and np.isnan(out.loc["ru", "gap"])
    assert out["tgt_on_target"].isna().all()
    assert out["n_seeds"].tolist() == [3, 3]


def test_geometry_by_target_means_and_angle_spread_per_target():
    geometry = pd.DataFrame({
        "task": "ner", "target": ["de", "de", "zh", "zh"], "seed": [1, 2, 1, 2],
        "norm_src": [10.0, 12.0, 11.0, 11.0], "norm_tgt": [10.0, 10.0, 12.0, 14.0],
        "ratio": [1.0, 1.2, 11 / 12, 11 / 14], "angle_deg": [50.0, 54.0, 60.0, 60.0]})
    out = geometry_by_target(geometry).set_index("target")
    assert out.loc["de", "norm_src"] == pytest.approx(11.0)
    assert out.loc["zh", "ratio"] == pytest.approx((11 / 12 + 11 / 14) / 2)
    assert out.loc["de", "angle_std"] == pytest.approx(np.sqrt(8.0))
    assert out.loc["zh", "angle_std"] == pytest.approx(0.0)
    assert out["n_seeds"].tolist() == [2, 2]


def test_pooled_seed_variance_counts_a_shared_run_once():
    rows = _finetune_rows({"de": (0.60, 0.62, 0.64), "ru": (0.50, 0.50, 0.53)},
                          source=(0.900, 0.902, 0.904))
    zero_shot = pooled_seed_variance(rows, "src", "target").iloc[0]
    # (0.0008 + 0.0006) / (2 + 2): each target around its own mean
    assert zero_shot["variance"] == pytest.approx(3.5e-4)
    assert (zero_shot["dof"], zero_shot["n_samples"]) == (4, 2)
    source = pooled_seed_variance(rows, "src", "source").iloc[0]
    # θ_src on English is the same three runs in both pairs: 2 degrees of freedom, not 4
    assert source["variance"] == pytest.approx(4e-6)
    assert (source["dof"], source["n_samples"]) == (2, 1)


def test_variance_f_test_against_the_closed_form():
    rows = _finetune_rows({"de": (0.60, 0.62, 0.64), "ru": (0.50, 0.50, 0.53)},
                          source=(0.900, 0.902, 0.904))
    out = variance_f_test(rows, ("src", "target"), ("src", "source")).iloc[0]
    assert out["ratio"] == pytest.approx(87.5)
    assert out["sd_num"] == pytest.approx(np.sqrt(3.5e-4))
    assert out["sd_den"] == pytest.approx(0.002)
    assert (out["dof_num"], out["dof_den"]) == (4, 2)
    # F(d1, 2) has CDF (d1 x / (d1 x + 2)) ** (d1 / 2)
    assert out["p_value"] == pytest.approx(1 - (350 / 352) ** 2)
    both = zero_shot_variance_tests(rows)  # no θ_bi rows: only the source comparison
    assert both[["target", "against"]].values.tolist() == [
        ["all", "θ_src on the source"], ["de", "θ_src on the source"],
        ["ru", "θ_src on the source"]]
    assert both.iloc[0]["ratio"] == pytest.approx(87.5)
    one_target = zero_shot_variance_tests(rows[rows["target"] == "de"])
    assert one_target["target"].tolist() == ["all"]  # not repeated per target
    # a single seed per sample leaves nothing to test
    assert variance_f_test(rows.query("seed == 1"), ("src", "target"),
                           ("src", "source")).empty


def test_plateau_summary_on_hand_made_curves():
    from xinterp_utils.summary import plateau_summary
    from xinterp_utils.tables import CURVE_COLUMNS

    def run(run_id, scores):
        return [{"encoder": "e", "task": "pos", "train_langs": "en", "seed": 1,
                 "run_id": run_id, "epoch": (i + 1) / 2, "step": 10 * (i + 1),
                 "eval_lang": "en", "score": s, "train_loss": 1.0}
                for i, s in enumerate(scores)]

    curves = pd.DataFrame(run("a", [0.5, 0.80, 0.795]) + run("b", [0.5, 0.80, 0.78]),
                          columns=CURVE_COLUMNS)
    table = plateau_summary(curves).set_index("run_id")
    assert table.loc["a", "best"] == 0.80 and table.loc["a", "best_epoch"] == 1.0
    assert table.loc["a", "last"] == 0.795 and table.loc["a", "on_plateau"]
    assert table.loc["b", "last_minus_best"] == pytest.approx(-0.02)
    assert not table.loc["b", "on_plateau"]
    empty = plateau_summary(pd.DataFrame(columns=CURVE_COLUMNS))
    assert empty.empty and "run_id" in empty.columns and "on_plateau" in empty.columns


def _endpoint_case():
    """Eq. 1 and Eq. 2 rows at α = 0, 0.5, 1 for en-de, and the finetune.csv rows of the
    three models, whose scores agree with the sweep at the end-points."""
    scores = {("src", "en"): 0.9, ("src", "de"): 0.4, ("tgt", "en"): 0.5,
              ("tgt", "de"): 0.8, ("bi", "en"): 0.88, ("bi", "de"): 0.78}
    model_at = {("eq1", 0.0): "src", ("eq2", 0.0): "tgt", ("eq1", 1.0): "bi",
                ("eq2", 1.0): "bi"}
    base = {"encoder": "enc", "task": "pos", "source": "en", "target": "de", "seed": 1}
    rows = []
    for plane in ("eq1", "eq2"):
        for alpha in (0.0, 0.5, 1.0):
            for role, lang in (("source", "en"), ("target", "de")):
                model = model_at.get((plane, alpha))
                rows.append(dict(base, plane=plane, alpha=alpha, eval_lang=lang, eval_role=role,
                                 score=scores[(model, lang)] if model else 0.6))
    finetune = pd.DataFrame([dict(base, model=model, eval_lang=lang, score=score)
                             for (model, lang), score in scores.items()])
    return pd.DataFrame(rows), finetune


def test_endpoint_check_counts_the_end_point_rows_and_their_largest_difference():
    from xinterp_utils.summary import endpoint_check

    rows, finetune = _endpoint_case()
    assert endpoint_check(rows, finetune) == (8, 0.0)
    rows.loc[(rows["plane"] == "eq2") & (rows["alpha"] == 1.0), "score"] += 4e-6
    checked, worst = endpoint_check(rows, finetune)
    assert checked == 8 and worst == pytest.approx(4e-6)


def test_endpoint_check_refuses_a_mismatch_and_a_missing_model():
    from xinterp_utils.summary import endpoint_check

    rows, finetune = _endpoint_case()
    shifted = rows.copy()
    shifted.loc[(shifted["plane"] == "eq1") & (shifted["alpha"] == 0.0), "score"] += 0.01
    with pytest.raises(ValueError, match="differs from its fine-tuning score by 1.0e-02"):
        endpoint_check(shifted, finetune)
    with pytest.raises(ValueError, match="2 of 8 end-point rows have no row in finetune.csv"):
        endpoint_check(rows, finetune[finetune["model"] != "tgt"])


def test_profile_runs_keeps_the_learning_curves_of_the_profiles_runs_only():
    # The committed curves hold POS en-de seed 1's three runs and, from the convergence
    # check, θ_src trained twice as long (5b1b10389d1f), which is no run of the profile.
    from xinterp_utils.paths import repo_root
    from xinterp_utils.profiles import load_profile
    from xinterp_utils.tables import profile_runs

    curves = pd.read_csv(repo_root() / "results" / "training_curves.csv",
                         dtype={"run_id": str})
    profile = load_profile("repro", ["tasks=[pos]", "pairs=[en-de]", "seeds=[1]",
                                     "remedies=null"])
    kept = profile_runs(curves, profile)
    assert set(kept["run_id"]) == {"8e43981c4169", "467875165df2", "8206d1b57453"}
    assert len(kept) == (curves["run_id"].isin(set(kept["run_id"]))).sum()
    assert "5b1b10389d1f" in set(curves["run_id"])


def _eq1_rows(scope: str, seed: int, score_of) -> list[dict]:
    base = {"encoder": "enc", "task": "pos", "source": "en", "target": "de", "scope": scope,
            "metric": "accuracy", "n_examples": 50, "ckpt_src": "s", "ckpt_tgt": "t",
            "ckpt_bi": "b", "sweep_id": "w", "plane": "eq1", "alpha1": np.nan,
            "alpha2": np.nan, "seed": seed}
    return [dict(base, eval_lang=lang, eval_role=role, alpha=a, score=score_of(role, a))
            for role, lang in (("source", "en"), ("target", "de"))
            for a in (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)]


def test_scope_comparison_measures_each_scope_against_all():
    def all_(role, a):
        return 0.9 if role == "source" else 0.6 + 0.3 * a  # target rises 0.6 → 0.9

    def encoder(role, a):
        return all_(role, a) + (0.02 if a == 0.25 else 0.0)

    def head(role, a):
        return 0.9 - 0.01 * (1 - a) if role == "target" else 0.9

    rows = []
    for seed in (1, 2):
        rows += _eq1_rows("all", seed, all_) + _eq1_rows("encoder", seed, encoder)
        rows += _eq1_rows("head", seed, head)
    rows += _eq1_rows("all", 3, lambda role, a: 0.0)  # no other scope for seed 3
    out = scope_comparison(pd.DataFrame(rows)[list(RESULT_COLUMNS)]).set_index(
        ["eval_role", "scope"])
    target = out.xs("target")
    assert target.loc["encoder", "max_diff_from_all"] == pytest.approx(0.02)
    assert target.loc["encoder", "span_0_1"] == pytest.approx(0.3)
    assert target.loc["head", "span_0_1"] == pytest.approx(0.01)
    assert target.loc["head", "at_0"] == pytest.approx(0.89)
    # head against all: 0.89 vs 0.6 at α = 0 (α outside [0, 1] never counts)
    assert target.loc["head", "max_diff_from_all"] == pytest.approx(0.29)
    assert target.loc["all", "max_diff_from_all"] == 0.0
    # seed 3 has only scope=all: left out, so every row averages the same two seeds
    assert set(out["n_seeds"]) == {2}
    assert target.loc["all", "at_0"] == pytest.approx(0.6)
    assert target.loc["all", "span_0_1"] == pytest.approx(0.3)
    assert out.xs("source").loc["encoder", "max_diff_from_all"] == pytest.approx(0.02)
