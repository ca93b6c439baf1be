"""Tests for xinterp_utils.plots: figures drawn from small formula-built tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from xinterp_utils import analysis, plots, remedy_plots
from xinterp_utils.sweep_rows import RESULT_COLUMNS

ALPHAS = (-0.5, 0.0, 0.5, 1.0, 1.5)
A1 = (-0.5, 0.0, 0.5, 1.0, 1.5)  # 5 x 3: a transposed grid would not fit
A2 = (0.0, 0.5, 1.0)


def make_results(encoders=("mbert", "xlmr"), tasks=("xnli", "ner"),
                 pairs=(("en", "de"), ("en", "fr"), ("ar", "de")), seeds=(1, 2)):
    """Scores = bilingual score x a smooth function of α that is 1 at θ_bi."""
    rows = []
    for ei, enc in enumerate(encoders):
        for ti, task in enumerate(tasks):
            for source, target in pairs:
                for seed in seeds:
                    for role, lang in (("source", source), ("target", target)):
                        bi = 0.6 + 0.05 * seed + 0.02 * ti + (0.03 if role == "source" else 0)
                        common = {"encoder": enc, "task": task, "source": source,
                                  "target": target, "seed": seed, "scope": "all",
                                  "eval_lang": lang, "eval_role": role, "metric": "m",
                                  "n_examples": 10}
                        for plane, k in (("eq1", 0.1), ("eq2", 0.2)):
                            k += 0.03 * seed + 0.02 * ei + 0.05 * ti
                            k += 0.1 if role == "target" else 0.0
                            for a in ALPHAS:
                                rows.append(dict(common, plane=plane, alpha=a,
                                                 score=bi * (1 - k * (1 - a) ** 2)))
                        for a1 in A1:
                            for a2 in A2:
                                norm = 1 - 0.1 * a1**2 - (0.2 + 0.1 * ti) * a2**2
                                rows.append(dict(common, plane="2d", alpha1=a1, alpha2=a2,
                                                 score=bi * norm))
    return pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)


@pytest.fixture(scope="module")
def results():
    return make_results()


def _panels(fig: Figure):
    """Data axes (titled), leaving out colourbars and switched-off slots."""
    return [ax for ax in fig.axes if ax.get_title() and ax.axison]


def _data_lines(ax):
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def _assert_written(out_dir, number):
    pdf, png = out_dir / f"fig{number}.pdf", out_dir / f"fig{number}.png"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert not list(out_dir.glob(".*.tmp"))  # no temporary file left behind


def test_fig2_panels_lines_and_files(results, tmp_path):
    fig = plots.fig2_aggregate_1d(results, out_dir=tmp_path)
    assert isinstance(fig, Figure)
    panels = _panels(fig)
    assert len(panels) == 4  # 2 encoders x 2 sources
    assert {ax.get_title() for ax in panels} == {
        "mbert, source ar", "mbert, source en", "xlmr, source ar", "xlmr, source en"}
    for ax in panels:
        assert len(_data_lines(ax)) == 4
        assert ax.get_ylabel() in ("score / bilingual score", "")
    _assert_written(tmp_path, 2)


def test_same_results_give_byte_identical_files(results, tmp_path):
    # a PDF creation date would make every rerun a change to commit
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        out.mkdir()
        plots.fig2_aggregate_1d(results, out_dir=out)
    for name in ("fig2.pdf", "fig2.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert b"CreationDate" not in (first / "fig2.pdf").read_bytes()


def test_fig_by_task_plots_only_that_task(results, tmp_path):
    fig = plots.fig_by_task(results, "ner", out_dir=tmp_path)
    assert plots.TASK_FIGURE["ner"] == 7
    _assert_written(tmp_path, 7)
    ax = next(a for a in _panels(fig) if a.get_title() == "xlmr, source en")
    line = next(ln for ln in _data_lines(ax) if ln.get_label().endswith("other language")
                and ln.get_linestyle() == "--")  # Eq. 2, other language
    agg = analysis.aggregate_1d(results[results["task"] == "ner"],
                                by=("encoder", "source", "plane", "line"))
    want = agg[(agg["encoder"] == "xlmr") & (agg["source"] == "en") & (agg["plane"] == "eq2")
               & (agg["line"] == "other language")].sort_values("alpha")
    np.testing.assert_allclose(line.get_xdata(), want["alpha"])
    np.testing.assert_allclose(line.get_ydata(), want["mean"])
    all_tasks = analysis.aggregate_1d(results, by=("encoder", "source", "plane", "line"))
    assert not np.allclose(all_tasks["mean"], agg["mean"])  # the task filter matters


def test_grid_2d_orientation_non_square():
    rows = pd.DataFrame([(a1, a2, a1 - 2 * a2) for a1 in A1 for a2 in A2],
                        columns=["alpha1", "alpha2", "value"]).sample(frac=1, random_state=0)
    a1, a2, z = analysis.grid_2d(rows, value="value")
    np.testing.assert_array_equal(a1, A1)
    np.testing.assert_array_equal(a2, A2)
    assert z.shape == (len(A2), len(A1))
    for i, x in enumerate(A1):
        for j, y in enumerate(A2):
            assert z[j, i] == pytest.approx(x - 2 * y)


def test_grid_2d_refuses_mixed_dev_sets():
    rows = pd.DataFrame({"alpha1": [0, 1], "alpha2": [0, 0], "eval_lang": ["en", "de"],
                         "norm_score": [1.0, 0.9]})
    with pytest.raises(ValueError, match="eval_lang"):
        analysis.grid_2d(rows)


def test_fig3_contours_axes_and_files(results, tmp_path):
    with pytest.raises(ValueError, match="pick one"):
        plots.fig3_2d(results)
    fig = plots.fig3_2d(results, encoder="mbert", task="xnli", source="en", target="de",
                        out_dir=tmp_path)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == [
        "xnli en→de: target language", "xnli en→de: source language"]
    for ax in panels:
        assert ax.get_xlim() == (-0.5, 1.5) and ax.get_ylim() == (0.0, 1.0)  # α1 on x
        texts = {t.get_text() for t in ax.texts}
        assert {r"$\theta_{bi}$", r"$\theta_{src}$", r"$\theta_{tgt}$"} <= texts
        markers = {(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in ax.get_lines()}
        assert markers == {(0, 0), (1, 0), (0, 1)}
    _assert_written(tmp_path, 3)


def test_fig11_marks_remedy_models_even_outside_the_grid(results, tmp_path):
    grid = analysis.normalise(results[(results["plane"] == "2d") & (results["encoder"] == "mbert")
                                      & (results["source"] == "en")
                                      & (results["target"] == "de")])
    coords = pd.DataFrame([
        {"task": "xnli", "seed": 1, "remedy": "fewshot", "k": 10, "alpha1": 0.8, "alpha2": 0.1},
        {"task": "xnli", "seed": 2, "remedy": "fewshot", "k": 100, "alpha1": 0.5, "alpha2": 0.4},
        # beyond the grid's α2 ≤ 1: the axes must grow to show it, not clip it
        {"task": "ner", "seed": 1, "remedy": "silver", "k": None, "alpha1": 0.2, "alpha2": 1.4},
        {"task": "ner", "seed": 9, "remedy": "silver", "k": None, "alpha1": 0.0, "alpha2": 0.0},
    ])
    fig = remedy_plots.fig11_remedies_on_surfaces(grid, coords, out_dir=tmp_path)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == [
        "ner: target language", "ner: source language",
        "xnli: target language", "xnli: source language"]
    for ax in panels:
        texts = {t.get_text() for t in ax.texts}
        assert {r"$\theta_{bi}$", r"$\theta_{src}$", r"$\theta_{tgt}$"} <= texts
        marked = sorted(tuple(map(float, pc.get_offsets()[0])) for pc in ax.collections
                        if isinstance(pc, PathCollection))  # the scatter marks
        # seed 9 has no grid: its model is not marked on the surface averaged over 1-2
        expected = [(0.2, 1.4)] if ax.get_title().startswith("ner") else [(0.5, 0.4),
                                                                           (0.8, 0.1)]
        assert marked == expected
        assert ax.get_ylim()[1] >= max(y for _, y in expected)
    _assert_written(tmp_path, 11)


def test_fig10_one_panel_per_config(results, tmp_path):
    sub = results[results["encoder"] == "mbert"]
    fig = plots.fig10_2d_grid(sub, out_dir=tmp_path, ncols=4)
    assert len(_panels(fig)) == 6  # 2 tasks x 3 pairs
    assert sum(not ax.axison for ax in fig.axes) == 2  # 2 x 4 grid, 2 slots unused
    _assert_written(tmp_path, 10)


def test_fig5_variance_lines(results, tmp_path):
    fig = plots.fig5_variance(results, out_dir=tmp_path)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["mbert", "xlmr"]
    want = analysis.normalised_variance(results, by=("encoder", "plane", "line"))
    for ax, enc in zip(panels, ("mbert", "xlmr"), strict=True):
        lines = _data_lines(ax)
        assert len(lines) == 4
        eq1_end = next(ln for ln in lines if ln.get_label().startswith("Eq. 1")
                       and ln.get_label().endswith("endpoint language"))
        ref = want[(want["encoder"] == enc) & (want["plane"] == "eq1")
                   & (want["line"] == "endpoint language")].sort_values("alpha")
        np.testing.assert_allclose(eq1_end.get_ydata(), ref["mean"])
        # seeds 1, 2 differ by 0.03 in curvature: var = 0.03^2 (1 - α)^4 / 2
        np.testing.assert_allclose(ref["mean"], 0.03**2 * (1 - ref["alpha"]) ** 4 / 2,
                                   atol=1e-12)
    _assert_written(tmp_path, 5)
    assert all(ax.get_ylim()[0] == 0 for ax in panels)


def test_fig5_with_one_seed_says_so_instead_of_an_empty_axis(results, tmp_path):
    fig = plots.fig5_variance(results[results["seed"] == 1], out_dir=tmp_path)
    for ax in _panels(fig):
        assert not _data_lines(ax)
        assert [t.get_text() for t in ax.texts] == [plots.NO_VARIANCE_NOTE]
        assert ax.get_ylim() == (0, 1)
    _assert_written(tmp_path, 5)


def test_fig4_scatter(tmp_path):
    geometry = pd.DataFrame({
        "encoder": ["mbert"] * 5 + ["xlmr"] * 3,
        "task": ["xnli", "xnli", "ner", "ner", "pos", "xnli", "ner", "ner"],
        "ratio": [1.1, 0.9, 1.3, 1.2, 1.0, 0.8, 1.4, 1.5],
        "angle_deg": [50, 55, 60, 58, 53, 52, 57, 61.0],
    })
    fig = plots.fig4_norm_angle(geometry, out_dir=tmp_path)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["mbert", "xlmr"]
    counts = [sum(len(c.get_offsets()) for c in ax.collections) for ax in panels]
    assert counts == [5, 3]
    assert [len(ax.collections) for ax in panels] == [3, 2]  # one colour per task present
    xnli = next(c for c in panels[0].collections if c.get_label() == "xnli")
    np.testing.assert_allclose(np.asarray(xnli.get_offsets()), [[50, 1.1], [55, 0.9]])
    _assert_written(tmp_path, 4)
    with pytest.raises(ValueError, match="angle_deg"):
        plots.fig4_norm_angle(geometry.drop(columns=["angle_deg"]))
