"""Tests for xinterp_utils.analysis on small tables built from formulas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from xinterp_utils import analysis
from xinterp_utils.geometry import delta_geometry
from xinterp_utils.sweep_rows import RESULT_COLUMNS

SEEDS = (1, 2, 3)
TARGETS = ("de", "fr")
ALPHAS = (-0.5, 0.0, 0.5, 0.9, 1.0, 1.5)
GRID = (-0.5, 0.0, 1.0)
# Curvature per (plane, line): which curve a row lies on tells which label it got.
K = {("eq1", "endpoint language"): 0.05, ("eq1", "other language"): 0.20,
     ("eq2", "endpoint language"): 0.10, ("eq2", "other language"): 0.15}
C_SEED = {"de": 0.01, "fr": 0.02}  # seed slope per target: makes seeds differ


def bi_score(seed: int, lang: str) -> float:
    """θ_bi's score differs per seed and per evaluation language."""
    return 0.5 + 0.07 * seed + (0.03 if lang == "en" else 0.0)


def g(plane: str, line: str, target: str, seed: int, alpha: float) -> float:
    """Normalised score of a 1D point: 1 at α = 1."""
    ti = TARGETS.index(target)
    return 1 - (K[plane, line] + 0.05 * ti + C_SEED[target] * seed) * (1 - alpha) ** 2


def h(a1: float, a2: float) -> float:
    """Normalised score of a 2D point: 1 at (0, 0)."""
    return 1 - 0.1 * a1**2 - 0.2 * a2**2


def make_results() -> pd.DataFrame:
    rows = []
    base = {"encoder": "enc", "task": "xnli", "source": "en", "scope": "all",
            "metric": "accuracy", "n_examples": 100, "ckpt_src": "s", "ckpt_tgt": "t",
            "ckpt_bi": "b", "sweep_id": "w"}
    for target in TARGETS:
        for seed in SEEDS:
            for role, lang in (("source", "en"), ("target", target)):
                common = dict(base, target=target, seed=seed, eval_lang=lang, eval_role=role)
                for plane in ("eq1", "eq2"):
                    endpoint = (plane == "eq1") == (role == "source")
                    line = "endpoint language" if endpoint else "other language"
                    for a in ALPHAS:
                        rows.append(dict(common, plane=plane, alpha=a, alpha1=np.nan,
                                         alpha2=np.nan,
                                         score=bi_score(seed, lang) * g(plane, line, target,
                                                                        seed, a)))
                for a1 in GRID:
                    for a2 in GRID:
                        rows.append(dict(common, plane="2d", alpha=np.nan, alpha1=a1, alpha2=a2,
                                         score=bi_score(seed, lang) * h(a1, a2)))
    return pd.DataFrame(rows)[list(RESULT_COLUMNS)]


def expected_line(row) -> str | None:
    if row["plane"] == "2d":
        return None
    endpoint = (row["plane"] == "eq1") == (row["eval_role"] == "source")
    return "endpoint language" if endpoint else "other language"


# ---------------------------------------------------------------- loading


def test_load_roundtrip_coerces_dtypes(tmp_path):
    df = make_results()
    half = len(df) // 2
    df.iloc[:half].to_csv(tmp_path / "a.csv", index=False)
    df.iloc[half:].to_csv(tmp_path / "b.csv", index=False)
    loaded = analysis.load_results([tmp_path / "a.csv", tmp_path / "b.csv"])
    from_dir = analysis.load_results(tmp_path)
    assert len(loaded) == len(df) == len(from_dir)
    assert loaded["seed"].dtype == np.int64
    assert loaded["score"].dtype == np.float64
    assert str(loaded["n_examples"].dtype) == "Int64"
    two_d = loaded["plane"] == "2d"
    assert loaded.loc[two_d, "alpha"].isna().all()
    assert loaded.loc[~two_d, ["alpha1", "alpha2"]].isna().all().all()
    np.testing.assert_allclose(loaded["score"], df["score"], rtol=1e-12)
    np.testing.assert_allclose(loaded.loc[~two_d, "alpha"], df.loc[~two_d, "alpha"])


def test_load_rejects_missing_column_naming_file_and_column(tmp_path):
    path = tmp_path / "sweep.csv"
    make_results().drop(columns=["eval_role"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"sweep\.csv.*'eval_role'"):
        analysis.load_results(path)


def test_load_rejects_non_numeric_score_naming_line(tmp_path):
    path = tmp_path / "sweep.csv"
    df = make_results().astype({"score": object})
    df.loc[1, "score"] = "0.8x"  # data row 2 = file line 3
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"sweep\.csv, line 3: column 'score' is not a number"):
        analysis.load_results(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.assign(score=d["score"] * 100), r"line 2: score .* outside \[0, 1\]"),
        (lambda d: d.assign(plane=d["plane"].where(d.index != 4, "eq3")), r"line 6: .*'plane'"),
        (lambda d: d.assign(alpha=d["alpha"].where(d.index != 0, np.nan)),
         r"line 2: column 'alpha' is empty"),
        (lambda d: d.assign(eval_role=d["eval_role"].where(d.index != 0, "target")),
         r"line 2: eval_role 'target' but eval_lang 'en'"),
        (lambda d: pd.concat([d, d.iloc[[3]]]), r"more than once: .*line 5; .*line \d+"),
    ],
)
def test_load_rejects_bad_rows(tmp_path, edit, message):
    path = tmp_path / "sweep.csv"
    edit(make_results()).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        analysis.load_results(path)


def test_load_rejects_truncated_row(tmp_path):
    path = tmp_path / "sweep.csv"
    make_results().iloc[:3].to_csv(path, index=False)
    with open(path, "a") as handle:
        handle.write("enc,xnli,en,de,1,eq1,0.5\n")  # a sweep killed mid-write
    with pytest.raises(ValueError, match=r"sweep\.csv, line 5: 7 fields"):
        analysis.load_results(path)


# ---------------------------------------------------------------- normalisation, views


def test_normalise_divides_by_same_seed_and_dev_set():
    out = analysis.endpoint_view(analysis.normalise(make_results()))
    expected = [
        h(r.alpha1, r.alpha2) if r.plane == "2d"
        else g(r.plane, r.line, r.target, r.seed, r.alpha)
        for r in out.itertuples()
    ]
    np.testing.assert_allclose(out["norm_score"], expected, rtol=1e-12)
    np.testing.assert_allclose(
        out["bi_score"], [bi_score(s, lang) for s, lang in zip(out["seed"], out["eval_lang"])]
    )


def test_normalise_names_group_without_bilingual_point():
    df = make_results()
    drop = analysis.bilingual_mask(df) & (df["seed"] == 2) & (df["eval_lang"] == "fr")
    with pytest.raises(ValueError, match=r"no bilingual point .*target=fr, seed=2.*eval_lang=fr"):
        analysis.normalise(df[~drop])


def test_normalise_gives_nan_where_the_bilingual_score_is_zero():
    df = make_results()
    group = (df["seed"] == 2) & (df["eval_lang"] == "de")
    df.loc[group & analysis.bilingual_mask(df), "score"] = 0.0
    with pytest.warns(UserWarning, match=r"bilingual score is 0.*seed=2.*eval_lang=de"):
        out = analysis.normalise(df)
    assert out.loc[group, "norm_score"].isna().all()
    assert out.loc[~group, "norm_score"].notna().all()


def test_normalise_averages_bilingual_points_of_all_planes():
    df = make_results()
    at = (df["plane"] == "2d") & (df["alpha1"] == 0) & (df["alpha2"] == 0) & (df["seed"] == 1)
    df.loc[at, "score"] += 0.006  # θ_bi scored a little differently in the 2d sweep
    with pytest.warns(UserWarning, match="differ across planes by up to 0.006"):
        out = analysis.normalise(df)
    row = out[at & (out["eval_lang"] == "de")].iloc[0]
    assert row["bi_score"] == pytest.approx(bi_score(1, "de") + 0.002)  # mean of 3 planes


def test_endpoint_view_labels():
    df = make_results()
    out = analysis.endpoint_view(df)
    assert out["line"].isna().tolist() == (df["plane"] == "2d").tolist()
    one_d = out["plane"] != "2d"
    assert list(out.loc[one_d, "line"]) == [expected_line(r) for _, r in df[one_d].iterrows()]
    small = pd.DataFrame({"plane": ["eq1", "eq1", "eq2", "eq2", "2d"],
                          "eval_role": ["source", "target", "source", "target", "target"]})
    lines = analysis.endpoint_view(small)["line"]
    assert list(lines[:4]) == [
        "endpoint language", "other language", "other language", "endpoint language"]
    assert pd.isna(lines[4])


# ---------------------------------------------------------------- statistics


def test_mean_ci_matches_scipy_and_hand_numbers():
    values = [0.8, 0.9, 0.85, 0.95]
    mean, lo, hi = analysis.mean_ci(values)
    ref = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(0.875)
    assert (lo, hi) == pytest.approx(ref, abs=1e-12)
    # sd = 0.0645497, sem = 0.0322749, t(0.975, 3) = 3.1824463
    assert hi - mean == pytest.approx(0.102713, abs=1e-6)
    mean90, lo90, _ = analysis.mean_ci(values, confidence=0.90)
    assert mean90 - lo90 == pytest.approx(stats.t.ppf(0.95, 3) * stats.sem(values))
    one = analysis.mean_ci([0.7])
    assert one[0] == 0.7 and math.isnan(one[1]) and math.isnan(one[2])
    assert analysis.mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="confidence"):
        analysis.mean_ci(values, confidence=95)


def test_aggregate_1d_pools_targets_and_seeds():
    agg = analysis.aggregate_1d(make_results(), by=("encoder", "plane", "line"))
    assert len(agg) == 4 * len(ALPHAS)
    for plane, line in K:
        for a in (-0.5, 0.5, 1.0):
            row = agg[(agg["plane"] == plane) & (agg["line"] == line) & (agg["alpha"] == a)]
            values = [g(plane, line, t, s, a) for t in TARGETS for s in SEEDS]
            assert row["n"].item() == len(values)
            assert row["mean"].item() == pytest.approx(np.mean(values))
            if a == 1.0:  # all rows are θ_bi: zero width
                assert row["lo"].item() == pytest.approx(1.0)
            else:
                ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                       scale=stats.sem(values))
                assert (row["lo"].item(), row["hi"].item()) == pytest.approx(ref)


def test_seed_variance_normalises_before_taking_variance():
    per_pair = analysis.seed_variance(make_results())
    # norm = 1 - (k + c_t * seed) (1 - α)^2  ->  var over seeds 1, 2, 3 = c_t^2 (1 - α)^4
    for target in TARGETS:
        part = per_pair[(per_pair["target"] == target) & (per_pair["plane"] == "eq1")]
        np.testing.assert_allclose(part["var"], C_SEED[target] ** 2 * (1 - part["alpha"]) ** 4,
                                   atol=1e-15)
        assert (part["n_seeds"] == 3).all()
    agg = analysis.normalised_variance(make_results(), by=("plane", "line"))
    row = agg[(agg["plane"] == "eq2") & (agg["line"] == "other language") & (agg["alpha"] == 0)]
    values = [c**2 for c in C_SEED.values()]  # two pairs, three seeds each: 2 + 2 dof
    assert row["mean"].item() == pytest.approx(np.mean(values))
    assert row["n"].item() == 2 and row["dof"].item() == 4
    # chi-square interval with 4 dof, quantiles from scipy: not the old t-interval
    pooled = np.mean(values)
    ref = (4 * pooled / stats.chi2.ppf(0.975, 4), 4 * pooled / stats.chi2.ppf(0.025, 4))
    assert (row["lo"].item(), row["hi"].item()) == pytest.approx(ref)
    assert (agg["lo"].dropna() >= 0).all() and (agg["lo"] <= agg["mean"]).all()
    assert (agg["mean"] <= agg["hi"]).all()


def test_variance_ci_is_the_chi_square_interval_on_hand_made_numbers():
    # Three seeds scoring 0.9, 1.0, 1.2: s² = (0.1333² + 0.0333² + 0.1667²) / 2 = 0.07 / 3.
    s2 = float(np.var([0.9, 1.0, 1.2], ddof=1))
    assert s2 == pytest.approx(0.07 / 3)
    # With 2 dof the chi-square quantile has a closed form: χ²_q(2) = -2 ln(1 - q).
    q_hi, q_lo = -2 * math.log(0.025), -2 * math.log(0.975)  # 7.3778, 0.050636
    lo, hi = analysis.variance_ci(s2, 2)
    assert float(lo) == pytest.approx(2 * s2 / q_hi) and float(lo) == pytest.approx(0.0063253, abs=1e-7)
    assert float(hi) == pytest.approx(2 * s2 / q_lo) and float(hi) == pytest.approx(0.921617, abs=1e-6)
    assert 0 <= float(lo) < s2 < float(hi)
    # A symmetric t-interval on these numbers would have gone below 0; this one cannot.
    for var in (0.0, 1e-9, 0.5):
        lo, hi = analysis.variance_ci(var, 3, confidence=0.9)
        assert 0 <= float(lo) <= var <= float(hi)
    lo, hi = analysis.variance_ci([0.1, 0.2], [0, 1])  # one seed: no interval
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and not np.isnan(lo[1])
    with pytest.raises(ValueError, match="confidence"):
        analysis.variance_ci(0.1, 2, confidence=95)


def test_fig5_band_stays_above_zero_where_the_t_interval_did_not():
    # Two pairs with very different seed variances: the mean ± t·sem dips below 0.
    rows = make_results()
    agg = analysis.normalised_variance(rows, by=("plane", "line"))
    part = agg[(agg["plane"] == "eq1") & (agg["line"] == "other language")]
    per_pair = analysis.seed_variance(rows)
    t_lo = []
    for alpha in part["alpha"]:
        values = per_pair[(per_pair["plane"] == "eq1") & (per_pair["line"] == "other language")
                          & (per_pair["alpha"] == alpha)]["var"]
        t_lo.append(analysis.mean_ci(values)[1])
    assert min(t_lo) < 0  # the old band went below zero here
    assert (part["lo"] >= 0).all()


# ---------------------------------------------------------------- geometry


def _dicts(delta_src, delta_tgt, base=None):
    base = torch.zeros(len(delta_src)) if base is None else base
    bi = {"w": base, "position_ids": torch.arange(4)}
    src = {"w": base + torch.tensor(delta_src), "position_ids": torch.arange(4) * 1000}
    tgt = {"w": base + torch.tensor(delta_tgt), "position_ids": torch.arange(4) - 7}
    return bi, src, tgt


def test_geometry_orthogonal_and_ratio():
    geo = delta_geometry(*_dicts([2.0, 0.0, 0.0], [0.0, 1.0, 0.0],
                                          base=torch.tensor([0.3, -1.0, 5.0])))
    assert geo["angle_deg"] == pytest.approx(90.0)
    assert geo["ratio"] == pytest.approx(2.0)
    assert (geo["norm_src"], geo["norm_tgt"]) == pytest.approx((2.0, 1.0))
    assert geo["n_params"] == 3  # position_ids (integer buffer) ignored


def test_geometry_sixty_degrees_chunked_and_named():
    half = math.sqrt(3) / 2
    bi, src, tgt = _dicts([1.0, 0.0], [0.5, half])
    # a second tensor, excluded by `names`, would change the angle if it were used
    bi["head"], src["head"], tgt["head"] = torch.zeros(2), torch.tensor([0.0, 9.0]), torch.zeros(2)
    geo = delta_geometry(bi, src, tgt, names=["w", "position_ids"], chunk_size=1)
    assert geo["angle_deg"] == pytest.approx(60.0)
    assert geo["cos"] == pytest.approx(0.5)
    assert geo["ratio"] == pytest.approx(1.0)
    full = delta_geometry(bi, src, tgt)
    assert full["norm_src"] == pytest.approx(math.sqrt(82.0))


def test_geometry_rejects_shape_mismatch():
    bi, src, tgt = _dicts([1.0, 0.0], [0.0, 1.0])
    tgt["w"] = torch.zeros(3)
    with pytest.raises(ValueError, match="'w' differs in shape"):
        delta_geometry(bi, src, tgt)
    with pytest.raises(KeyError, match="'missing'"):
        delta_geometry(bi, src, tgt, names=["missing"])
