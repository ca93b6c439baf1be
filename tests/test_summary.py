"""summary.surface_slopes: finite-difference steepness of the 2D surface of Eq. 3."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xinterp_utils import analysis
from xinterp_utils.summary import surface_slopes

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
    return pd.DataFrame(rows)[list(analysis.RESULT_COLUMNS)]


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
