"""Results that accumulate across runs, and reruns that skip cells whose results exist."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from xinterp_utils.finetune import finetune_table
from xinterp_utils.geometry import geometry_table
from xinterp_utils.profiles import Profile, plan_runs
from xinterp_utils.resume import complete_cells
from xinterp_utils.sweep_rows import read_done, sweep_complete
from xinterp_utils.sweep_spec import plan_sweeps
from xinterp_utils.sweeps import run_sweeps
from xinterp_utils.tables import (
    FINETUNE_COLUMNS,
    FINETUNE_KEY,
    GEOMETRY_COLUMNS,
    GEOMETRY_KEY,
    profile_cells,
    read_table,
    upsert_rows,
)

from .conftest import TINY_ENCODER, TINY_HPARAMS

CELL = (TINY_ENCODER, "pos", "en", "de", 3)


def _rows(seed, score, run_id="abc"):
    return pd.DataFrame([
        {"encoder": "e", "task": "pos", "source": "en", "target": "de", "seed": seed,
         "model": model, "train_langs": "en", "eval_lang": lang, "eval_role": role,
         "metric": "accuracy", "score": score, "n_examples": 5, "run_id": run_id,
         "checkpoint": "c"}
        for model in ("src", "bi") for lang, role in (("en", "source"), ("de", "target"))],
        columns=FINETUNE_COLUMNS)


def test_upsert_keeps_other_rows_and_replaces_its_own_in_place(tmp_path):
    path = tmp_path / "finetune.csv"
    upsert_rows(path, _rows(1, 0.5), FINETUNE_KEY)
    upsert_rows(path, _rows(2, 0.6), FINETUNE_KEY)
    # A rerun of seed 1 with new scores replaces seed 1's rows and leaves seed 2's alone.
    merged = upsert_rows(path, _rows(1, 0.7), FINETUNE_KEY)
    on_disk = read_table(path, FINETUNE_COLUMNS)
    assert len(on_disk) == len(merged) == 8
    assert list(on_disk["seed"]) == [1] * 4 + [2] * 4
    assert set(on_disk[on_disk.seed == 1].score) == {0.7}
    assert set(on_disk[on_disk.seed == 2].score) == {0.6}
    assert not list(tmp_path.glob("*.tmp*"))


def test_run_ids_that_look_like_numbers_stay_strings(tmp_path):
    path = tmp_path / "finetune.csv"
    upsert_rows(path, _rows(1, 0.5, run_id="012345678901"), FINETUNE_KEY)
    assert set(read_table(path, FINETUNE_COLUMNS)["run_id"]) == {"012345678901"}


def test_a_table_with_another_header_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "finetune.csv"
    path.write_text("encoder,task,score\ne,pos,0.5\n")
    with pytest.raises(ValueError, match="finetune.csv: header"):
        upsert_rows(path, _rows(1, 0.5), FINETUNE_KEY)
    assert path.read_text() == "encoder,task,score\ne,pos,0.5\n"


def _tiny_profile(**changes) -> Profile:
    fields = {"name": "tiny", "encoders": [TINY_ENCODER], "tasks": ["pos"],
              "pairs": ["en-de"], "seeds": [3], "alphas_1d": [0.0, 0.5, 1.0],
              "alphas_2d": [0.0, 1.0], **TINY_HPARAMS}
    return Profile(**{**fields, **changes})


@pytest.fixture(scope="module")
def finished_results(trained_pos_pair, tmp_path_factory):
    """A results folder holding every result of the tiny profile's one cell, made the
    way notebooks 01, 02, 03 and 05 make them."""
    root, _, _ = trained_pos_pair
    results = tmp_path_factory.mktemp("results")
    profile = _tiny_profile()
    assert complete_cells(profile, results) == set()
    upsert_rows(results / "finetune.csv", finetune_table(profile, root), FINETUNE_KEY)
    for two_d in (False, True):
        run_sweeps(plan_sweeps(profile, two_d=two_d), root, results, progress=False)
    upsert_rows(results / "geometry.csv",
                geometry_table(plan_sweeps(profile, two_d=False), root), GEOMETRY_KEY)
    return results


def test_a_cell_with_all_its_results_is_complete(finished_results):
    assert complete_cells(_tiny_profile(), finished_results) == {CELL}


def test_other_settings_make_the_same_cell_incomplete(finished_results):
    # Another learning rate is another run (another hash): its results are not there.
    assert complete_cells(_tiny_profile(lr=3e-4), finished_results) == set()
    # A finer 1D grid has points not yet evaluated.
    assert complete_cells(_tiny_profile(alphas_1d=[0.0, 0.25, 0.5, 1.0]),
                          finished_results) == set()


@pytest.mark.parametrize("part", ["finetune.csv", "geometry.csv", "1d", "2d"])
def test_a_cell_missing_any_part_is_incomplete(finished_results, tmp_path, part):
    results = tmp_path / "results"
    shutil.copytree(finished_results, results)
    profile = _tiny_profile()
    if part in ("finetune.csv", "geometry.csv"):
        lines = (results / part).read_text().splitlines(keepends=True)
        (results / part).write_text("".join(lines[:-1]))  # one row fewer
    elif part == "1d":
        # The 1D and 2D sweeps of a cell share one CSV: drop one Eq. 2 row from it.
        spec = plan_sweeps(profile, two_d=False)[0]
        path = spec.result_path(results)
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if ",eq2,0.5," not in line))
        assert len(path.read_text().splitlines()) == len(lines) - 2  # en and de rows
        assert not sweep_complete(spec, results)
    else:
        spec = plan_sweeps(profile, two_d=True)[0]
        path = spec.result_path(results)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 5])  # the last 2D point's write was cut
        assert not sweep_complete(spec, results)
        assert path.read_bytes() == data[: len(data) - 5]  # checking does not repair
    assert complete_cells(profile, results) == set()


def test_a_rerun_without_checkpoints_skips_complete_cells(finished_results, tmp_path):
    """What a fresh clone sees: the committed results, no checkpoints."""
    profile = _tiny_profile()
    no_checkpoints = tmp_path / "checkpoints"
    done = complete_cells(profile, finished_results)
    assert plan_runs(profile, skip=done) == []
    assert finetune_table(profile, no_checkpoints, skip=done).empty
    assert geometry_table(plan_sweeps(profile, two_d=False), no_checkpoints, skip=done).empty
    before = {p: p.read_bytes() for p in finished_results.rglob("*.csv")}
    run_sweeps(plan_sweeps(profile, two_d=False) + plan_sweeps(profile, two_d=True),
               no_checkpoints, finished_results, progress=False)
    assert {p: p.read_bytes() for p in finished_results.rglob("*.csv")} == before
    # Without `skip` the same cell needs its checkpoints, and says which.
    with pytest.raises(FileNotFoundError, match="run not finished"):
        finetune_table(profile, no_checkpoints)


def test_profile_cells_keeps_the_profiles_rows_only(finished_results):
    geometry = read_table(finished_results / "geometry.csv", GEOMETRY_COLUMNS)
    extra = geometry.assign(seed=4)
    both = pd.concat([geometry, extra, geometry.assign(scope="head")], ignore_index=True)
    kept = profile_cells(both, _tiny_profile())
    assert len(kept) == 1 and kept.loc[0, "seed"] == 3 and kept.loc[0, "scope"] == "all"
    assert len(profile_cells(both, _tiny_profile(seeds=[3, 4]))) == 2


def test_read_done_repairs_only_when_asked(finished_results, tmp_path):
    spec = plan_sweeps(_tiny_profile(), two_d=False)[0]
    copy = tmp_path / "sweep.csv"
    data = spec.result_path(finished_results).read_bytes()
    copy.write_bytes(data[:-3])
    kept = read_done(copy, spec.sweep_id(), repair=False)
    assert copy.read_bytes() == data[:-3]
    assert read_done(copy, spec.sweep_id()) == kept
    assert copy.read_bytes() == data[: data[:-1].rfind(b"\n") + 1]
