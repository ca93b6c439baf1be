"""Interpolation: exact end-points, the right plane, refusals, and resumable sweeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertModel

from xinterp_utils.analysis import grid_2d, load_results
from xinterp_utils.checkpoints import MODEL_NAME
from xinterp_utils.embedding_store import read_model_state
from xinterp_utils.geometry import geometry_row
from xinterp_utils.interpolate import (
    IncompatibleEndpoints,
    InterpolationPlane,
    check_compatible,
    interpolated_names,
)
from xinterp_utils.model import build_task_model_from_encoder
from xinterp_utils.sweep_rows import read_done
from xinterp_utils.sweep_spec import SweepSpec, plane_coordinates
from xinterp_utils.sweeps import run_sweep

from .conftest import TINY_ENCODER, TINY_HPARAMS


def _tiny_model(task="pos", seed=0, vocab=50):
    torch.manual_seed(100)
    encoder = BertModel(BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32),
                        add_pooling_layer=False)
    # transformers 5 keeps `position_ids` out of the state dict; an integer counter like
    # BatchNorm's `num_batches_tracked` stands in for the persistent integer buffers
    # other encoders carry.
    encoder.register_buffer("num_batches_tracked", torch.tensor(5))
    return build_task_model_from_encoder(encoder, task, seed)


def _random_state(model, seed):
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()}


@pytest.fixture
def plane_and_states():
    model = _tiny_model()
    bi, src, tgt = (_random_state(model, s) for s in (1, 2, 3))
    return InterpolationPlane(model, bi, src, tgt), model, bi, src, tgt


def test_end_points_are_exact(plane_and_states):
    plane, model, bi, src, tgt = plane_and_states
    for (a1, a2), expected in {(1.0, 0.0): src, (0.0, 1.0): tgt, (0.0, 0.0): bi}.items():
        plane.set_point(a1, a2)
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, expected[name]), (a1, a2, name)


def test_points_follow_equations_1_to_3(plane_and_states):
    plane, model, bi, src, tgt = plane_and_states
    name = "head.classifier.weight" if "head.classifier.weight" in bi else next(
        k for k in bi if k.startswith("head.") and bi[k].is_floating_point())
    alpha = 0.3
    plane.set_point(*plane_coordinates("eq1", alpha))  # Eq. 1
    assert torch.allclose(model.state_dict()[name], alpha * bi[name] + (1 - alpha) * src[name],
                          atol=1e-6)
    plane.set_point(*plane_coordinates("eq2", 1.4))  # Eq. 2, extrapolating past θ_bi
    assert torch.allclose(model.state_dict()[name], 1.4 * bi[name] - 0.4 * tgt[name], atol=1e-5)
    plane.set_point(-0.5, 0.7)  # Eq. 3
    expected = bi[name] - 0.5 * (src[name] - bi[name]) + 0.7 * (tgt[name] - bi[name])
    assert torch.allclose(model.state_dict()[name], expected, atol=1e-5)


def test_integer_buffers_are_never_interpolated(plane_and_states):
    plane, model, bi, src, tgt = plane_and_states
    ints = [k for k, v in bi.items() if not v.is_floating_point()]
    assert ints == ["encoder.num_batches_tracked"]
    # Make the end-points' integer buffers differ: the plane must still leave θ_bi's.
    src = {k: (v + 1 if k in ints else v) for k, v in src.items()}
    plane = InterpolationPlane(model, bi, src, tgt)
    plane.set_point(0.5, 0.25)
    for key in ints:
        assert torch.equal(model.state_dict()[key], bi[key])
        assert key not in plane.names


@pytest.mark.parametrize(("scope", "moving", "fixed"), [("encoder", "encoder.", "head."),
                                                        ("head", "head.", "encoder.")])
def test_scope_moves_only_its_part(scope, moving, fixed):
    model = _tiny_model()
    bi, src, tgt = (_random_state(model, s) for s in (1, 2, 3))
    plane = InterpolationPlane(model, bi, src, tgt, scope=scope)
    plane.set_point(1.0, 0.0)
    state = model.state_dict()
    floats = [k for k in bi if bi[k].is_floating_point()]
    assert all(torch.equal(state[k], src[k]) for k in floats if k.startswith(moving))
    assert all(torch.equal(state[k], bi[k]) for k in floats if k.startswith(fixed))
    assert set(plane.names) == {k for k in floats if k.startswith(moving)}


def test_incompatible_end_points_name_the_parameter():
    pos, ner = _tiny_model("pos"), _tiny_model("ner")
    with pytest.raises(IncompatibleEndpoints, match=r"'head\.linear\.weight'.*\(17, 16\).*\(7, 16\)"):
        check_compatible({"θ_src": pos.state_dict(), "θ_tgt": ner.state_dict()})
    small_vocab = _tiny_model("pos", vocab=40)
    with pytest.raises(IncompatibleEndpoints, match="word_embeddings"):
        InterpolationPlane(pos, pos.state_dict(), small_vocab.state_dict(), pos.state_dict())
    parser = _tiny_model("parsing")
    with pytest.raises(IncompatibleEndpoints, match="missing"):
        check_compatible({"θ_bi": pos.state_dict(), "θ_src": parser.state_dict()})


def test_plane_coordinates():
    assert plane_coordinates("eq1", 0.0) == (1.0, 0.0)
    assert plane_coordinates("eq1", 1.0) == (0.0, 0.0)
    assert plane_coordinates("eq2", 0.25) == (0.0, 0.75)
    with pytest.raises(ValueError, match="plane"):
        plane_coordinates("2d", 0.5)
    with pytest.raises(ValueError, match="scope"):
        interpolated_names({}, "decoder")


# --------------------------------------------------------------------------- real sweeps


def _spec(**changes):
    base = SweepSpec(TINY_ENCODER, "pos", "en", "de", 3, hparams=TINY_HPARAMS,
                     planes=("eq1", "eq2", "2d"), alphas_1d=(-0.5, 0.0, 0.5, 1.0),
                     alphas_2d=(0.0, 1.0, 1.5), alphas_2d_y=(0.0, 1.0),
                     max_dev_examples=TINY_HPARAMS["max_dev_examples"])
    return SweepSpec(**{**asdict(base), **changes})


@pytest.fixture(scope="module")
def swept(trained_pos_pair, tmp_path_factory):
    root, _configs, records = trained_pos_pair
    results = tmp_path_factory.mktemp("results")
    path = run_sweep(_spec(), root, results, progress=False)
    return root, records, results, path


def test_end_points_reproduce_the_stored_dev_scores(swept):
    _, records, _, path = swept
    rows = load_results(path)
    dev = {role: {lang: r["dev_scores"][lang]["score"] for lang in ("en", "de")
                  if lang in r["dev_scores"]} for role, r in records.items()}

    def score(plane, lang, **coords):
        sel = rows[(rows.plane == plane) & (rows.eval_lang == lang)]
        for key, value in coords.items():
            sel = sel[sel[key] == value]
        assert len(sel) == 1, (plane, lang, coords)
        return float(sel.score.iloc[0])

    # Stored scores are rounded to 6 decimals in the CSV.
    assert score("eq1", "en", alpha=0.0) == pytest.approx(dev["src"]["en"], abs=5e-7)
    assert score("eq2", "de", alpha=0.0) == pytest.approx(dev["tgt"]["de"], abs=5e-7)
    for lang in ("en", "de"):
        assert score("eq1", lang, alpha=1.0) == pytest.approx(dev["bi"][lang], abs=5e-7)
        assert score("eq2", lang, alpha=1.0) == pytest.approx(dev["bi"][lang], abs=5e-7)
        assert score("2d", lang, alpha1=0.0, alpha2=0.0) == pytest.approx(dev["bi"][lang],
                                                                           abs=5e-7)
    assert score("2d", "en", alpha1=1.0, alpha2=0.0) == score("eq1", "en", alpha=0.0)
    assert score("2d", "de", alpha1=0.0, alpha2=1.0) == score("eq2", "de", alpha=0.0)


def test_rows_are_tidy_and_name_their_checkpoints(swept):
    _, records, _, path = swept
    rows = load_results(path)
    # 4 α × 2 planes + 3 × 2 grid points, each on two dev sets.
    assert len(rows) == (4 * 2 + 3 * 2) * 2
    assert set(rows.eval_role) == {"source", "target"}
    assert (rows[rows.eval_lang == "en"].eval_role == "source").all()
    assert set(rows.ckpt_src) == {records["src"]["run_id"]}
    assert set(rows.ckpt_bi) == {records["bi"]["run_id"]}
    assert (rows.n_examples == TINY_HPARAMS["max_dev_examples"]).all()
    assert rows.score.between(0, 1).all()


def test_non_square_grid_is_stored_the_right_way_round(swept):
    _, _, _, path = swept
    rows = load_results(path)
    target = rows[(rows.plane == "2d") & (rows.eval_role == "target")].assign(
        norm_score=lambda d: d.score)
    a1, a2, z = grid_2d(target)
    assert list(a1) == [0.0, 1.0, 1.5] and list(a2) == [0.0, 1.0]
    assert z.shape == (2, 3)
    at = target.set_index(["alpha1", "alpha2"]).score
    for i, x in enumerate(a1):
        for j, y in enumerate(a2):
            assert z[j, i] == pytest.approx(at[(x, y)])


def test_rerun_computes_nothing_and_extension_only_new_points(swept, trained_pos_pair):
    root, _, results, path = swept
    before = path.read_bytes()
    run_sweep(_spec(), root, results, progress=False)
    assert path.read_bytes() == before
    run_sweep(_spec(alphas_1d=(-0.5, 0.0, 0.5, 1.0, 0.25)), root, results, progress=False)
    rows = load_results(path)
    assert len(rows) == len(pd.read_csv(pd.io.common.StringIO(before.decode()))) + 4
    assert rows.duplicated(["plane", "alpha", "alpha1", "alpha2", "eval_lang"]).sum() == 0


def test_a_cut_last_line_is_dropped_and_recomputed(swept, tmp_path):
    _root, _, _results, path = swept
    copy = tmp_path / "sweep.csv"
    data = path.read_bytes()
    copy.write_bytes(data[: len(data) - 7])  # a kill in the middle of the last row
    done = read_done(copy, _spec().sweep_id())
    assert copy.read_bytes() == data[: data[:-1].rfind(b"\n") + 1]
    assert len(done) == data.count(b"\n") - 2  # header and the cut row are not done


def test_killed_sweep_resumes_to_the_same_table(trained_pos_pair, tmp_path):
    root, _, _ = trained_pos_pair
    spec = _spec(planes=("2d",), alphas_2d=(-0.5, 0.0, 0.5, 1.0, 1.5), alphas_2d_y=())
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(asdict(spec)))
    straight = run_sweep(spec, root, tmp_path / "straight", progress=False)

    killed_root = tmp_path / "killed"
    target = spec.result_path(killed_root)
    cmd = [sys.executable, "-m", "xinterp_utils", "sweep", str(spec_file), str(root),
           str(killed_root), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if target.is_file() and target.read_bytes().count(b"\n") >= 7:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = load_results(target)
    assert 0 < len(partial) < 50

    run_sweep(spec, root, killed_root, progress=False)
    a = load_results(straight).sort_values(["alpha1", "alpha2", "eval_lang"])
    b = load_results(target).sort_values(["alpha1", "alpha2", "eval_lang"])
    assert len(b) == 25 * 2
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_geometry_of_the_trained_end_points(trained_pos_pair):
    root, configs, _ = trained_pos_pair
    row = geometry_row(_spec(), root)
    states = {role: read_model_state(c.run_dir(root) / MODEL_NAME) for role, c in configs.items()}
    names = interpolated_names(states["bi"], "all")
    d_src = torch.cat([(states["src"][n] - states["bi"][n]).double().flatten() for n in names])
    d_tgt = torch.cat([(states["tgt"][n] - states["bi"][n]).double().flatten() for n in names])
    assert row["norm_src"] == pytest.approx(float(d_src.norm()), rel=1e-9)
    assert row["ratio"] == pytest.approx(float(d_src.norm() / d_tgt.norm()), rel=1e-9)
    cos = float(d_src @ d_tgt / (d_src.norm() * d_tgt.norm()))
    assert row["cos"] == pytest.approx(cos, abs=1e-9)
    assert 0 < row["angle_deg"] < 180
