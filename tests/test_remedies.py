"""Notebook 06's planning, lines, tables and summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xinterp_utils import remedy_summary
from xinterp_utils.lines import LineSpec, read_done, run_line
from xinterp_utils.profiles import load_profile
from xinterp_utils.remedies import (
    complete_remedy_cells,
    fewshot_config,
    line_specs,
    plan_remedies,
)
from xinterp_utils.remedy_settings import FEWSHOT_DEFAULTS
from xinterp_utils.remedy_tables import (
    LINE_COLUMNS,
    PLANE_COLUMNS,
    REMEDY_COLUMNS,
    SILVER_COLUMNS,
)
from xinterp_utils.train import train


@pytest.mark.parametrize(("value", "message"), [
    ("{k: [0]}", r"remedies.k=\[0\]: must be a non-empty list of integers >= 1"),
    ("{draws: 0}", "remedies.draws=0: must be an integer >= 1"),
    ("{pairs: [en-ru]}", r"remedies.pairs=\['en-ru'\]: \['en-ru'\] are not among"),
    ("{seeds: [7]}", "remedies.seeds"),
    ("{fewshot: {lr: 1e-5}}", "fewshot.lr='1e-5'.*write 1.0e-5"),
    ("{fewshot: {steps: 3}}", "remedies.fewshot"),
    ("{shots: 3}", r"unknown key\(s\) \['shots'\]"),
    ("[1, 2]", "must be a mapping"),
])
def test_bad_remedies_are_refused_naming_the_field(value, message):
    with pytest.raises(ValueError, match=message):
        load_profile("smoke", [f"remedies={value}"])


def test_defaults_and_the_switch():
    assert load_profile("demo").remedy_settings() is None
    on = load_profile("demo", ["remedies={}"]).remedy_settings()
    assert on.k == (10, 100, 1000) and on.draws == 3 and on.silver
    assert on.fewshot == FEWSHOT_DEFAULTS
    repro = load_profile("repro").remedy_settings()
    assert repro.pair_tuples(load_profile("repro")) == [("en", "de")]


def test_smoke_plan(data_dir):
    profile = load_profile("smoke")
    runs = plan_remedies(profile)
    # 4 tasks × (2 k × 2 draws + silver), one pair, one seed
    assert len(runs) == 4 * (2 * 2 + 1)
    assert len({r.config.run_hash() for r in runs}) == len(runs)
    few = [r for r in runs if r.remedy == "fewshot"]
    assert {(r.k, r.draw) for r in few} == {(4, 1), (4, 2), (16, 1), (16, 2)}
    for r in few:
        assert r.config.init_from.endswith(r.endpoints["src"].run_hash())
        assert r.config.train_langs == ("de",) and r.config.shot_seed == r.draw
        assert r.config.batch_size == min(profile.batch_size, r.k)
    silver = [r for r in runs if r.remedy == "silver"]
    assert all(r.config.silver_from.endswith(r.endpoints["src"].run_hash()) for r in silver)
    # Lines: the silver model and draw 1 of each k.
    assert len(line_specs(profile, runs)) == 4 * (2 + 1)
    capped = []
    plan_remedies(load_profile("smoke", ["remedies={k: [4, 500], draws: 2}"]), notes=capped)
    assert any("k=500 exceeds the pool of 128" in n for n in capped)


def test_cells_with_all_their_rows_are_complete(tmp_path, data_dir):
    profile = load_profile("smoke", ["tasks=[pos]"])
    runs = plan_remedies(profile)
    assert complete_remedy_cells(profile, tmp_path) == set()
    base = dict(zip(["encoder", "task", "source", "target", "seed"], runs[0].cell,
                    strict=True))
    scores = [{**base, "remedy": r.remedy, "eval_role": role, "run_id": r.config.run_hash()}
              for r in runs for role in ("source", "target")]
    pd.DataFrame(scores, columns=REMEDY_COLUMNS).to_csv(tmp_path / "remedies.csv", index=False)
    pd.DataFrame([{**base, "scope": "all", "run_id": r.config.run_hash()} for r in runs],
                 columns=PLANE_COLUMNS).to_csv(tmp_path / "plane_coords.csv", index=False)
    pd.DataFrame([{**base, "run_id": r.config.run_hash()} for r in runs
                  if r.remedy == "silver"], columns=SILVER_COLUMNS).to_csv(
        tmp_path / "silver.csv", index=False)
    assert complete_remedy_cells(profile, tmp_path) == set()  # the lines are missing
    for spec in line_specs(profile, runs):
        rows = [{**base, "alpha": a, "eval_lang": lang, "line_id": spec.line_id()}
                for a in spec.alphas for lang in ("en", "de")]
        path = spec.result_path(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=LINE_COLUMNS).to_csv(path, index=False)
    assert complete_remedy_cells(profile, tmp_path) == {runs[0].cell}
    # Other few-shot settings are other runs: the cell is incomplete again.
    changed = "remedies={k: [4, 16], draws: 2, fewshot: {epochs: 3}, alphas: [0.0, 0.5, 1.0]}"
    other = load_profile("smoke", ["tasks=[pos]", changed])
    assert complete_remedy_cells(other, tmp_path) == set()


def test_line_ends_are_the_two_models_and_a_rerun_only_fills_gaps(tmp_path, trained_pos_pair):
    root, configs, records = trained_pos_pair
    few = fewshot_config(configs["src"], "de", 4, 1,
                         {**FEWSHOT_DEFAULTS, "epochs": 2, "min_steps": 4})
    few_record = train(few, root, progress=False)
    spec = LineSpec("offline-small", "pos", "en", "de", 3, "fewshot", configs["src"], few,
                    (0.0, 0.5, 1.0), k=4, draw=1, max_dev_examples=few.max_dev_examples)
    path = run_line(spec, root, tmp_path, device="cpu", progress=False)
    rows = pd.read_csv(path)
    assert list(rows.columns) == LINE_COLUMNS and len(rows) == 6
    at = rows.set_index(["alpha", "eval_lang"])["score"]
    assert at[(0.0, "en")] == pytest.approx(records["src"]["dev_scores"]["en"]["score"],
                                            abs=1e-6)
    assert at[(1.0, "de")] == pytest.approx(few_record["dev_scores"]["de"]["score"], abs=1e-6)
    assert set(rows["ckpt_start"]) == {configs["src"].run_hash()}
    # Cut the last row in half, as a kill would: the rerun computes only that point.
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    assert len(read_done(path, repair=False)) == 5
    run_line(spec, root, tmp_path, device="cpu", progress=False)
    again = pd.read_csv(path)
    assert len(again) == 6 and not again.duplicated(["alpha", "eval_lang"]).any()


def _scores():
    rows = []
    for seed, (zero, bi) in {1: (0.5, 0.9), 2: (0.3, 0.8)}.items():
        rows += [{"encoder": "e", "task": "pos", "source": "en", "target": "de", "seed": seed,
                  "model": m, "eval_role": "target", "score": s}
                 for m, s in (("src", zero), ("bi", bi))]
    finetune = pd.DataFrame(rows)
    remedies = pd.DataFrame([
        {"encoder": "e", "task": "pos", "source": "en", "target": "de", "seed": seed,
         "remedy": "fewshot", "k": 10, "draw": draw, "eval_role": "target",
         "score": 0.6 + 0.01 * seed + 0.1 * draw}
        for seed in (1, 2) for draw in (1, 2)])
    return remedies, finetune


def test_variance_by_k_separates_seeds_and_draws():
    remedies, finetune = _scores()
    scores = remedy_summary.target_scores(remedies, finetune)
    assert set(scores["model"]) == {"zero-shot", "few-shot", "bi"}
    table = remedy_summary.variance_by_k(scores).set_index("model")
    few = scores[scores["model"] == "few-shot"]
    raw = few.set_index(["seed", "draw"])["score"]
    seeds = np.mean([np.var([raw[(1, d)], raw[(2, d)]], ddof=1) for d in (1, 2)])
    draws = np.mean([np.var([raw[(s, 1)], raw[(s, 2)]], ddof=1) for s in (1, 2)])
    assert seeds == pytest.approx(0.01 ** 2 / 2) and draws == pytest.approx(0.1 ** 2 / 2)
    assert table.loc["few-shot", "var_seeds"] == pytest.approx(seeds)
    assert table.loc["few-shot", "var_draws"] == pytest.approx(draws)
    assert table.loc["few-shot", "var_all"] == pytest.approx(np.var(raw, ddof=1))
    assert table.loc["zero-shot", "var_seeds"] == pytest.approx(np.var([0.5, 0.3], ddof=1))
    assert np.isnan(table.loc["zero-shot", "var_draws"])
    # θ_bi's seed variance is its raw scores' (0.9, 0.8), not 0 as its normalised one.
    assert table.loc["bi", "var_seeds"] == pytest.approx(np.var([0.9, 0.8], ddof=1))
    assert table.loc["few-shot", "mean_norm"] == pytest.approx(
        few["norm_score"].mean())
    assert table.loc["bi", "mean_norm"] == 1.0
    assert list(table.index) == ["zero-shot", "few-shot", "bi"]


def test_slope_at_a_model_on_a_linear_surface():
    a = [0.0, 0.5, 1.0, 1.5]
    grid = pd.DataFrame([{"encoder": "e", "task": "pos", "source": "en", "target": "de",
                          "seed": 1, "scope": "all", "eval_lang": "de", "eval_role": "target",
                          "plane": "2d", "alpha1": x, "alpha2": y,
                          "norm_score": 1 - 0.3 * x + 0.4 * y} for x in a for y in a])
    coords = pd.DataFrame([{"encoder": "e", "task": "pos", "source": "en", "target": "de",
                            "seed": s, "remedy": "fewshot", "k": 10, "draw": 1,
                            "alpha1": x, "alpha2": y}
                           for s, x, y in ((1, 0.7, 0.2), (1, 3.0, 0.0), (2, 0.5, 0.5))])
    out = remedy_summary.slopes_at_models(coords, grid)
    assert len(out) == 2  # seed 2 has no surface
    inside = out.iloc[0]
    assert inside["slope"] == pytest.approx(0.5) and inside["slope_zero_shot"] == pytest.approx(
        0.5)
    assert inside["surface"] == pytest.approx(1 - 0.3 * 0.7 + 0.4 * 0.2)
    assert np.isnan(out.iloc[1]["slope"])  # off the grid


def test_line_summary_measures_dips():
    rows = pd.DataFrame([{"encoder": "e", "task": "pos", "source": "en", "target": "de",
                          "seed": 1, "remedy": "silver", "k": None, "draw": None, "alpha": a,
                          "eval_role": "source", "score": s, "line_id": "x"}
                         for a, s in ((0.0, 0.8), (0.5, 0.5), (1.0, 0.8))])
    out = remedy_summary.line_summary(rows).iloc[0]
    assert (out["at_0"], out["at_1"], out["min_0_1"]) == (0.8, 0.8, 0.5)
    assert out["max_gap_to_line"] == pytest.approx(0.3)


def test_step_from_src_matches_a_direct_computation():
    # Three end-points and a model in a 50-dimensional space; the step is measured by
    # plane_projection's coordinates and the geometry's norms, then directly.
    import torch

    from xinterp_utils.plane import plane_projection

    gen = torch.Generator().manual_seed(0)
    bi, src, tgt = (torch.randn(50, generator=gen, dtype=torch.float64) for _ in range(3))
    theta = src + 0.3 * (bi - src) + 0.5 * torch.randn(50, generator=gen,
                                                          dtype=torch.float64)
    where = plane_projection({"w": bi}, {"w": src}, {"w": tgt}, {"w": theta})
    ds, dt = src - bi, tgt - bi
    cell = {"encoder": "e", "task": "pos", "source": "en", "target": "de", "seed": 1,
            "scope": "all", "ckpt_src": "s", "ckpt_tgt": "t", "ckpt_bi": "b"}
    coords = pd.DataFrame([{**cell, "remedy": "fewshot", "k": 10, "draw": 1, **where}])
    geometry = pd.DataFrame([{**cell, "norm_src": float(ds.norm()),
                              "norm_tgt": float(dt.norm()),
                              "cos": float(ds @ dt / (ds.norm() * dt.norm()))},
                             {**cell, "ckpt_bi": "other", "norm_src": 1.0, "norm_tgt": 1.0,
                              "cos": 0.0}])
    out = remedy_summary.steps_from_src(coords, geometry)
    assert len(out) == 1
    step = float((theta - src).norm())
    # The residual of θ − θ_bi off the plane is also the residual of θ − θ_src.
    A = torch.stack([ds, dt], dim=1)
    coef = torch.linalg.lstsq(A, (theta - src).unsqueeze(1)).solution
    residual = float((theta - src - (A @ coef).squeeze(1)).norm())
    assert out.loc[0, "step_norm"] == pytest.approx(step, rel=1e-9)
    assert out.loc[0, "step_rel"] == pytest.approx(step / float(ds.norm()), rel=1e-9)
    assert out.loc[0, "step_outside_fraction"] == pytest.approx(residual / step, rel=1e-9)
    assert 0.2 < out.loc[0, "step_outside_fraction"] < 0.99
    summary = remedy_summary.step_summary(out)
    assert summary.loc[0, "step_rel"] == pytest.approx(step / float(ds.norm()), rel=1e-9)
    assert summary.loc[0, "n"] == 1


def test_rerun_yardstick_places_the_other_seeds_end_points_in_each_plane(
        tmp_path, trained_pos_pair):
    # Seed 3 (the session's pair) and a real seed 4 of the same tiny recipe: each seed's
    # plane gets the other seed's three end-points, computed as plane_projection does
    # directly; a second call with the rows done computes nothing.
    from xinterp_utils.checkpoints import finished_model_path, relative_run_dir
    from xinterp_utils.config import pair_configs
    from xinterp_utils.embedding_store import read_model_state
    from xinterp_utils.interpolate import interpolated_names
    from xinterp_utils.plane import plane_projection
    from xinterp_utils.remedies import rerun_plane_table
    from xinterp_utils.remedy_tables import RERUN_COLUMNS

    from .conftest import TINY_ENCODER, TINY_HPARAMS

    root, seed3, _ = trained_pos_pair
    seed4 = pair_configs(TINY_ENCODER, "pos", "en", "de", seed=4, **TINY_HPARAMS)
    for config in seed4.values():
        train(config, root, progress=False)
    tiny = [f"{k}={v}" for k, v in TINY_HPARAMS.items()]
    profile = load_profile("smoke", ["tasks=[pos]", "pairs=[en-de]", "seeds=[3, 4]",
                                     f"encoders=[{TINY_ENCODER}]", *tiny,
                                     "remedies={k: [4], draws: 1}"])
    assert pair_configs(TINY_ENCODER, "pos", "en", "de", 3,
                        **profile.train_hparams("pos")) == seed3  # the same runs
    table = rerun_plane_table(profile, root, "all")
    assert list(table.columns) == RERUN_COLUMNS and len(table) == 6

    def state(config):
        return read_model_state(finished_model_path(root, relative_run_dir(config)))

    row = table[(table["seed"] == 4) & (table["model"] == "bi")].iloc[0]
    assert row["other_seed"] == 3 and row["run_id"] == seed3["bi"].run_hash()
    assert row["ckpt_src"] == seed4["src"].run_hash()
    own = {role: state(c) for role, c in seed4.items()}
    direct = plane_projection(own["bi"], own["src"], own["tgt"], state(seed3["bi"]),
                              interpolated_names(own["bi"], "all"))
    for key in ("alpha1", "alpha2", "outside_fraction", "offset_norm"):
        assert row[key] == pytest.approx(direct[key], rel=1e-9), key
    # An independent rerun is neither in the plane nor orthogonal to it.
    assert (table["outside_fraction"] > 0.01).all() and (table["outside_fraction"] < 1).all()
    assert rerun_plane_table(profile, root, "all", done=table).empty
    summary = remedy_summary.rerun_summary(table)
    assert list(summary["model"]) == ["src", "tgt", "bi"] and (summary["n"] == 2).all()
