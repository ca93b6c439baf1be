"""The six notebooks execute headless under papermill on the smoke profile, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from xinterp_utils.notebooks import notebook_paths, run
from xinterp_utils.sweep_rows import sweep_files

FIGURES = ["fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "fig10", "fig11",
           "fig12", "fig13"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("smoke")
    overrides = [f"checkpoints={out / 'checkpoints'}", f"results={out / 'results'}",
                 f"figures={out / 'figures'}"]
    executed = run("smoke", overrides, out_dir=out / "executed")
    return out, executed


def test_all_six_notebooks_ran(smoke_run):
    _, executed = smoke_run
    assert [p.name for p in executed] == [p.name for p in notebook_paths()]
    assert len(executed) == 6
    for path in executed:
        nb = json.loads(path.read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, path.name
        params = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert params and 'profile = "smoke"' in "".join(params[0]["source"])


def test_executed_notebooks_show_figures_and_tidy_output(smoke_run):
    _, executed = smoke_run
    outputs = {p.name[:2]: [o for c in json.loads(p.read_text())["cells"]
                            for o in c.get("outputs", [])] for p in executed}
    # Notebooks 02-06 draw figures; each shows at least one inline PNG.
    for number in ("02", "03", "04", "05", "06"):
        assert any("image/png" in o.get("data", {}) for o in outputs[number]), number
    streams = "".join("".join(o["text"]) for nb in outputs.values() for o in nb
                      if o["output_type"] == "stream")
    assert "\r" not in streams and "\x1b[" not in streams
    assert "IProgress not found" not in streams
    assert "it/s" in streams or "step/s" in streams  # the bars' final states remain


def test_every_figure_and_table_is_written(smoke_run):
    out, _ = smoke_run
    for name in FIGURES:
        for ext in ("pdf", "png"):
            path = out / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
    table1 = pd.read_csv(out / "figures" / "table1.csv")
    assert len(table1) == 27  # 9 UD + 9 WikiANN + 9 XNLI languages


def test_results_tables(smoke_run):
    out, _ = smoke_run
    finetune = pd.read_csv(out / "results" / "finetune.csv")
    assert len(finetune) == 4 * 3 * 2  # tasks × models × dev sets
    assert finetune["score"].between(0, 1).all()
    pos = finetune[finetune.task == "pos"].set_index(["model", "eval_role"])["score"]
    # Even tiny training shows the paper's gap: bilingual beats zero-shot on the target.
    assert pos[("bi", "target")] > pos[("src", "target")]

    sweeps = pd.concat(pd.read_csv(p) for p in sweep_files(out / "results"))
    # 4 tasks × (5 α on Eq. 1 and Eq. 2 + a 2 × 2 grid) × 2 dev sets
    assert len(sweeps) == 4 * (5 * 2 + 4) * 2
    assert sweeps.duplicated(["task", "plane", "alpha", "alpha1", "alpha2", "eval_lang"]).sum() == 0

    geometry = pd.read_csv(out / "results" / "geometry.csv")
    assert len(geometry) == 4
    assert geometry["angle_deg"].between(0, 180).all() and (geometry["ratio"] > 0).all()


# Recorded by scripts/record_smoke_outputs.py from a clean smoke run. Tolerances absorb
# floating-point differences between machines (BLAS kernels, thread counts); a wrong
# interpolation, normalisation or metric moves these numbers by far more.
RECORDED = json.loads((Path(__file__).parent / "data" / "smoke_recorded.json").read_text())
SCORE_TOL = 0.03  # absolute, on scores in [0, 1]


def _by(records, keys):
    return {tuple(r[k] for k in keys): r for r in records}


def test_finetune_scores_match_the_recorded_run(smoke_run):
    out, _ = smoke_run
    got = _by(pd.read_csv(out / "results" / "finetune.csv").to_dict("records"),
              ["task", "model", "eval_lang"])
    want = _by(RECORDED["finetune"], ["task", "model", "eval_lang"])
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key]["score"] == pytest.approx(row["score"], abs=SCORE_TOL), key


def test_sweep_scores_match_the_recorded_run(smoke_run):
    out, _ = smoke_run
    keys = ["task", "plane", "alpha", "alpha1", "alpha2", "eval_lang"]
    sweeps = pd.concat(pd.read_csv(p) for p in sweep_files(out / "results"))
    # NaN α (2d rows have no α, 1d rows no α1/α2) must compare equal as keys.
    got = _by(sweeps[[*keys, "score"]].fillna(-99).to_dict("records"), keys)
    want = _by(pd.DataFrame(RECORDED["sweeps"]).fillna(-99).to_dict("records"), keys)
    assert got.keys() == want.keys()
    far = {k: (got[k]["score"], w["score"]) for k, w in want.items()
           if abs(got[k]["score"] - w["score"]) > SCORE_TOL}
    assert not far, f"{len(far)} sweep points moved, e.g. {next(iter(far.items()))}"


def test_geometry_matches_the_recorded_run(smoke_run):
    out, _ = smoke_run
    got = _by(pd.read_csv(out / "results" / "geometry.csv").to_dict("records"), ["task"])
    for task, row in _by(RECORDED["geometry"], ["task"]).items():
        for col in ("norm_src", "norm_tgt", "ratio"):
            assert got[task][col] == pytest.approx(row[col], rel=0.02), (task, col)
        assert got[task]["angle_deg"] == pytest.approx(row["angle_deg"], abs=1.0), task


def test_remedy_tables(smoke_run):
    out, _ = smoke_run
    results = out / "results"
    remedies = pd.read_csv(results / "remedies.csv")
    # 4 tasks × (2 k × 2 draws + 1 silver) models × 2 dev sets
    assert len(remedies) == 4 * 5 * 2 and remedies["score"].between(0, 1).all()
    assert set(remedies["k"].dropna()) == {4, 16}
    silver = pd.read_csv(results / "silver.csv")
    assert len(silver) == 4 and silver["agreement"].between(0, 1).all()
    coords = pd.read_csv(results / "plane_coords.csv")
    assert len(coords) == 4 * 5 and coords["outside_fraction"].between(0, 1).all()
    lines = pd.concat(pd.read_csv(p) for p in (results / "remedies" / "lines").rglob("*.csv"))
    assert len(lines) == 4 * 3 * 3 * 2  # 4 tasks × 3 lines × 3 α × 2 dev sets


def test_remedy_figures_redraw_byte_identically(smoke_run, tmp_path):
    from xinterp_utils.profiles import load_profile
    from xinterp_utils.remedy_figures import redraw_remedies

    out, _ = smoke_run
    profile = load_profile("smoke", [f"results={out / 'results'}"])
    assert redraw_remedies(profile, out / "results", tmp_path, log=lambda line: None) == [
        11, 12, 13]
    for n in (11, 12, 13):
        for fmt in ("pdf", "png"):
            name = f"fig{n}.{fmt}"
            assert (tmp_path / name).read_bytes() == (out / "figures" / name).read_bytes()


def test_remedies_match_the_recorded_run(smoke_run):
    out, _ = smoke_run
    results = out / "results"
    keys = ["task", "remedy", "k", "draw", "eval_lang"]
    got = _by(pd.read_csv(results / "remedies.csv")[[*keys, "score"]].fillna(-99)
              .to_dict("records"), keys)
    want = _by(pd.DataFrame(RECORDED["remedies"]).fillna(-99).to_dict("records"), keys)
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key]["score"] == pytest.approx(row["score"], abs=SCORE_TOL), key
    silver = _by(pd.read_csv(results / "silver.csv").to_dict("records"), ["task"])
    for task, row in _by(RECORDED["silver"], ["task"]).items():
        assert silver[task]["agreement"] == pytest.approx(row["agreement"], abs=SCORE_TOL)
    keys = ["task", "remedy", "k", "draw"]
    coords = _by(pd.read_csv(results / "plane_coords.csv").fillna(-99).to_dict("records"), keys)
    for key, row in _by(pd.DataFrame(RECORDED["plane"]).fillna(-99).to_dict("records"),
                        keys).items():
        for col in ("alpha1", "alpha2", "outside_fraction"):
            assert coords[key][col] == pytest.approx(row[col], abs=0.05), (key, col)


def test_remedies_report_is_written_from_the_results(smoke_run, tmp_path):
    import importlib.util

    out, _ = smoke_run
    path = Path(__file__).parent.parent / "scripts" / "remedies_report.py"
    spec = importlib.util.spec_from_file_location("remedies_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["smoke", "--results", str(out / "results"), "--out", str(tmp_path / "R.md")]
    assert module.main(args) == 0
    text = (tmp_path / "R.md").read_text()
    assert "No rows yet" not in text  # every section has its table
    assert text.count("\n| task |") >= 7
    assert "| step_rel | step_outside_fraction |" in text  # plane_coords joined to geometry
    assert "_Needs two seeds or more; the `smoke` profile's remedies have 1._" in text
    assert module.main([*args[:-1], str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == text  # deterministic


def test_only_reruns_the_named_notebooks_on_the_results_there(smoke_run):
    # `run_all.sh --only 05`: after a full run, one notebook reruns alone, on the results
    # the others wrote, and replaces only its own executed copy.
    out, executed = smoke_run
    others = {p.name: p.stat().st_mtime_ns for p in executed if not p.name.startswith("05")}
    overrides = [f"checkpoints={out / 'checkpoints'}", f"results={out / 'results'}",
                 f"figures={out / 'figures'}"]
    again = run("smoke", overrides, only=["05"], out_dir=out / "executed")
    assert [p.name for p in again] == ["05_norm_angle.ipynb"]
    nb = json.loads(again[0].read_text())
    assert not [o for c in nb["cells"] for o in c.get("outputs", [])
                if o.get("output_type") == "error"]
    assert {p.name: p.stat().st_mtime_ns for p in executed
            if not p.name.startswith("05")} == others
    with pytest.raises(ValueError, match=r"only=\['7'\]"):
        run("smoke", overrides, only=["05", "7"], out_dir=out / "executed")
