"""Where a model lies relative to the plane of θ_bi, θ_src, θ_tgt (Eq. 3).

With δ_src = θ_src − θ_bi, δ_tgt = θ_tgt − θ_bi and a model's offset d = θ − θ_bi, its
coordinates (α1, α2) are the least-squares solution of

    min ‖d − α1·δ_src − α2·δ_tgt‖²,   i.e.   G·(α1, α2)ᵀ = (δ_src·d, δ_tgt·d)ᵀ,

G the 2 × 2 Gram matrix of δ_src, δ_tgt. θ_bi + α1·δ_src + α2·δ_tgt is then the point
of the plane nearest θ, so Eq. 3's grid at (α1, α2) is where the model "is" on the
surfaces of notebook 03; the residual r = d − α1·δ_src − α2·δ_tgt is what the plane
does not show, and ‖r‖ / ‖d‖ the fraction of the offset's norm outside it. Sums run in
float64 over the same parameters as the geometry (`interpolate.interpolated_names` of
the profile's scope), a chunk at a time. The residual is ‖d‖² − bᵀα (b the right-hand
side) where that difference is large; where it is small (a model near the plane) the
subtraction would cancel, and r is summed directly in a second pass instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch


def _chunks(states: tuple, names: list[str], chunk_size: int):
    """Yield float64 chunks (bi, src, tgt, θ) of each named tensor, aligned."""
    for key in names:
        tensors = [torch.as_tensor(s[key]) for s in states]
        if not tensors[0].is_floating_point():
            continue
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1:
            raise ValueError(f"parameter {key!r} differs in shape across the models: "
                             f"{[tuple(t.shape) for t in tensors]}")
        flat = [t.reshape(-1) for t in tensors]
        for start in range(0, flat[0].numel(), chunk_size):
            yield [f[start:start + chunk_size].to(device=flat[0].device, dtype=torch.float64)
                   for f in flat]


def plane_projection(theta_bi: Mapping, theta_src: Mapping, theta_tgt: Mapping,
                     theta: Mapping, names: Iterable[str] | None = None, *,
                     chunk_size: int = 1 << 22) -> dict[str, float]:
    """Return the coordinates of `theta` in the plane of (θ_bi, θ_src, θ_tgt).

    Keys: `alpha1`, `alpha2` (least squares, unitless: θ_src is (1, 0), θ_tgt (0, 1));
    `offset_norm` ‖θ − θ_bi‖ and `residual_norm` ‖r‖ (parameter units);
    `outside_fraction` ‖r‖ / ‖θ − θ_bi‖ (0 in the plane, 1 orthogonal to it; NaN when
    θ = θ_bi); `n_params` (entries used). State dicts map names to tensors; only
    floating-point entries of `names` (default: all of θ_bi's) count. Raises KeyError
    for a name missing from a model and ValueError when δ_src and δ_tgt do not span a
    plane (parallel or zero).
    """
    keys = list(theta_bi) if names is None else list(names)
    states = (theta_bi, theta_src, theta_tgt, theta)
    for key in keys:
        for label, sd in zip(("theta_bi", "theta_src", "theta_tgt", "theta"), states,
                             strict=True):
            if key not in sd:
                raise KeyError(f"parameter {key!r} missing from {label}")
    # Pass 1: Gram matrix of (δ_src, δ_tgt) and their products with d.
    acc = torch.zeros(6, dtype=torch.float64)
    n_params = 0
    for bi, src, tgt, th in _chunks(states, keys, chunk_size):
        ds, dt, d = src - bi, tgt - bi, th - bi
        acc += torch.stack((ds @ ds, dt @ dt, ds @ dt, ds @ d, dt @ d, d @ d)).cpu()
        n_params += bi.numel()
    if n_params == 0:
        raise ValueError("plane_projection: no floating-point parameters among the names")
    ss, tt, st, sd, td, dd = acc.tolist()
    gram = np.array([[ss, st], [st, tt]])
    # A near-singular Gram matrix: δ_src, δ_tgt (nearly) parallel, or one of them zero.
    if ss == 0 or tt == 0 or 1 - st * st / (ss * tt) < 1e-12:
        raise ValueError("plane_projection: δ_src and δ_tgt do not span a plane "
                         f"(‖δ_src‖² = {ss:.3g}, ‖δ_tgt‖² = {tt:.3g}, δ_src·δ_tgt = {st:.3g})")
    alpha1, alpha2 = np.linalg.solve(gram, np.array([sd, td])).tolist()
    rr = dd - (alpha1 * sd + alpha2 * td)
    # Relative rounding of the subtraction is ~1e-16·dd/rr: exact enough above 1e-6·dd.
    if rr <= 1e-6 * dd:  # near the plane: pass 2 sums the residual directly
        rr = 0.0
        for bi, src, tgt, th in _chunks(states, keys, chunk_size):
            r = (th - bi) - alpha1 * (src - bi) - alpha2 * (tgt - bi)
            rr += float(r @ r)
    offset, residual = math.sqrt(dd), math.sqrt(rr)
    return {"alpha1": alpha1, "alpha2": alpha2, "offset_norm": offset,
            "residual_norm": residual,
            "outside_fraction": residual / offset if offset > 0 else math.nan,
            "n_params": n_params}
