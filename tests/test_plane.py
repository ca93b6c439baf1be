"""Plane coordinates of a model (notebook 06) against a direct least-squares computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xinterp_utils.plane import plane_projection

SHAPES = {"encoder.a": (7, 5), "encoder.b": (11,), "head.w": (3, 4)}


def _state(gen, dtype=torch.float32):
    state = {k: torch.randn(*s, generator=gen, dtype=dtype) for k, s in SHAPES.items()}
    state["encoder.position_ids"] = torch.arange(6)  # an integer buffer: never used
    return state


def _flat(state, names):
    return np.concatenate([state[n].double().numpy().ravel() for n in names])


@pytest.fixture
def models():
    gen = torch.Generator().manual_seed(0)
    return [_state(gen) for _ in range(4)]  # θ_bi, θ_src, θ_tgt, θ


def test_coordinates_match_numpy_lstsq(models):
    bi, src, tgt, theta = models
    names = list(SHAPES)
    got = plane_projection(bi, src, tgt, theta)
    b = _flat(bi, names)
    basis = np.stack([_flat(src, names) - b, _flat(tgt, names) - b], axis=1)
    d = _flat(theta, names) - b
    alpha, *_ = np.linalg.lstsq(basis, d, rcond=None)
    residual = np.linalg.norm(d - basis @ alpha)
    assert got["alpha1"] == pytest.approx(alpha[0], rel=1e-12, abs=1e-12)
    assert got["alpha2"] == pytest.approx(alpha[1], rel=1e-12, abs=1e-12)
    assert got["offset_norm"] == pytest.approx(np.linalg.norm(d), rel=1e-12)
    assert got["residual_norm"] == pytest.approx(residual, rel=1e-10)
    assert got["outside_fraction"] == pytest.approx(residual / np.linalg.norm(d), rel=1e-10)
    assert got["n_params"] == sum(int(np.prod(s)) for s in SHAPES.values())


def test_a_model_in_the_plane_has_its_coordinates_and_no_residual(models):
    bi, src, tgt, _ = models
    bi, src, tgt = ({k: v.double() if v.is_floating_point() else v for k, v in s.items()}
                    for s in (bi, src, tgt))
    a1, a2 = 0.3, -0.7
    theta = {k: bi[k] + a1 * (src[k] - bi[k]) + a2 * (tgt[k] - bi[k])
             if bi[k].is_floating_point() else bi[k] for k in bi}
    got = plane_projection(bi, src, tgt, theta)
    assert got["alpha1"] == pytest.approx(a1, abs=1e-12)
    assert got["alpha2"] == pytest.approx(a2, abs=1e-12)
    assert got["outside_fraction"] < 1e-12
    # The end-points themselves: θ_src is (1, 0), θ_tgt (0, 1), exactly in the plane.
    for theta, where in ((src, (1.0, 0.0)), (tgt, (0.0, 1.0))):
        got = plane_projection(bi, src, tgt, theta)
        assert (got["alpha1"], got["alpha2"]) == pytest.approx(where, abs=1e-12)
        assert got["residual_norm"] < 1e-9


def test_an_orthogonal_offset_is_entirely_outside(models):
    bi, src, tgt, _ = models
    names = list(SHAPES)
    b = _flat(bi, names)
    basis = np.stack([_flat(src, names) - b, _flat(tgt, names) - b], axis=1)
    q, _ = np.linalg.qr(basis)
    v = np.random.default_rng(1).standard_normal(len(b))
    v -= q @ (q.T @ v)  # orthogonal to the plane
    theta, start = dict(bi), 0
    for n in names:
        size = bi[n].numel()
        theta[n] = bi[n].double() + torch.from_numpy(v[start:start + size]).reshape(bi[n].shape)
        start += size
    got = plane_projection(bi, src, tgt, theta)
    assert got["outside_fraction"] == pytest.approx(1.0, abs=1e-9)
    assert abs(got["alpha1"]) < 1e-9 and abs(got["alpha2"]) < 1e-9


def test_names_restrict_the_parameters_like_the_geometry(models):
    bi, src, tgt, theta = models
    names = ["head.w"]
    got = plane_projection(bi, src, tgt, theta, names)
    b = _flat(bi, names)
    basis = np.stack([_flat(src, names) - b, _flat(tgt, names) - b], axis=1)
    alpha, *_ = np.linalg.lstsq(basis, _flat(theta, names) - b, rcond=None)
    assert (got["alpha1"], got["alpha2"]) == pytest.approx(tuple(alpha), rel=1e-12)
    assert got["n_params"] == 12
    # Chunking does not change the sums.
    small = plane_projection(bi, src, tgt, theta, names, chunk_size=5)
    assert small["alpha1"] == pytest.approx(got["alpha1"], rel=1e-12)


def test_degenerate_planes_and_missing_parameters_are_refused(models):
    bi, src, _, theta = models
    with pytest.raises(ValueError, match="do not span a plane"):
        plane_projection(bi, src, src, theta)  # δ_src = δ_tgt
    with pytest.raises(ValueError, match="do not span a plane"):
        plane_projection(bi, bi, src, theta)  # δ_src = 0
    partial = {k: v for k, v in theta.items() if k != "head.w"}
    with pytest.raises(KeyError, match="head.w.*theta"):
        plane_projection(bi, src, models[2], partial)
