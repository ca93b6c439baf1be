"""The geometry of the two directions of Eq. 3 (App. B): ‖δ_src‖, ‖δ_tgt‖, their ratio and
the angle between them, δ_x = θ_x − θ_bi, and the `results/geometry.csv` rows made of them.

`delta_geometry` is the maths (on any three state dicts); `geometry_row` applies it to a
sweep's trained end-points over the parameters of its scope; `geometry_table` to a list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import torch

from .checkpoints import load_endpoints
from .config import MODEL_ROLES
from .interpolate import interpolated_names
from .tables import GEOMETRY_COLUMNS


def delta_geometry(
    theta_bi: Mapping,
    theta_src: Mapping,
    theta_tgt: Mapping,
    names: Iterable[str] | None = None,
    *,
    chunk_size: int = 1 << 22,
) -> dict[str, float]:
    """Return the geometry of δ_src = θ_src - θ_bi and δ_tgt = θ_tgt - θ_bi (paper App. B).

    Keys: `norm_src`, `norm_tgt` (L2 norms, parameter units), `ratio` = norm_src /
    norm_tgt, `cos` (cosine of the angle), `angle_deg` (degrees), `n_params` (entries
    used). State dicts map names to tensors (or arrays); only floating-point entries
    are used (integer buffers such as `position_ids` are skipped), restricted to `names`
    when given (e.g. the encoder's or the head's parameters). Sums are accumulated in
    float64, `chunk_size` entries at a time, on θ_bi's device, so no flattened copy of
    the whole model is ever made.
    """
    keys = list(theta_bi) if names is None else list(names)
    for key in keys:
        for label, sd in (("theta_bi", theta_bi), ("theta_src", theta_src),
                          ("theta_tgt", theta_tgt)):
            if key not in sd:
                raise KeyError(f"parameter {key!r} missing from {label}")
    acc = None
    n_params = 0
    for key in keys:
        bi = torch.as_tensor(theta_bi[key])
        if not bi.is_floating_point():
            continue
        src = torch.as_tensor(theta_src[key])
        tgt = torch.as_tensor(theta_tgt[key])
        if src.shape != bi.shape or tgt.shape != bi.shape:
            raise ValueError(
                f"parameter {key!r} differs in shape: theta_bi {tuple(bi.shape)}, "
                f"theta_src {tuple(src.shape)}, theta_tgt {tuple(tgt.shape)}"
            )
        if acc is None:
            acc = torch.zeros(3, dtype=torch.float64, device=bi.device)
        bi, src, tgt = bi.reshape(-1), src.reshape(-1), tgt.reshape(-1)
        for start in range(0, bi.numel(), chunk_size):
            stop = start + chunk_size
            b = bi[start:stop].to(torch.float64)
            ds = src[start:stop].to(device=b.device, dtype=torch.float64) - b
            dt = tgt[start:stop].to(device=b.device, dtype=torch.float64) - b
            acc += torch.stack((ds @ ds, dt @ dt, ds @ dt))
        n_params += bi.numel()
    if acc is None:
        raise ValueError("delta_geometry: no floating-point parameters among the names given")
    ss, tt, st = (float(v) for v in acc.cpu())
    norm_src, norm_tgt = math.sqrt(ss), math.sqrt(tt)
    if norm_src > 0 and norm_tgt > 0:
        cos = max(-1.0, min(1.0, st / (norm_src * norm_tgt)))
        angle = math.degrees(math.acos(cos))
    else:
        cos = angle = math.nan
    ratio = norm_src / norm_tgt if norm_tgt > 0 else (math.nan if norm_src == 0 else math.inf)
    return {"norm_src": norm_src, "norm_tgt": norm_tgt, "ratio": ratio, "cos": cos,
            "angle_deg": angle, "n_params": n_params}


def geometry_row(spec, checkpoint_root: str | Path) -> dict:
    """Return the `GEOMETRY_COLUMNS` row of one sweep's end-points (`sweep_spec.SweepSpec`):
    ‖δ_src‖, ‖δ_tgt‖ (parameter units), their ratio, cosine and angle (degrees), over the
    parameters of the spec's scope, with the three runs' ids."""
    states, records = load_endpoints(spec.configs(), checkpoint_root)
    names = interpolated_names(states["bi"], spec.scope)
    geo = delta_geometry(states["bi"], states["src"], states["tgt"], names=names)
    return {"encoder": spec.encoder, "task": spec.task, "source": spec.source,
            "target": spec.target, "seed": spec.seed, "scope": spec.scope,
            **{k: geo[k] for k in ("norm_src", "norm_tgt", "ratio", "cos", "angle_deg",
                                   "n_params")},
            **{f"ckpt_{role}": records[role]["run_id"] for role in MODEL_ROLES}}


def geometry_table(specs, checkpoint_root: str | Path, skip=frozenset()) -> pd.DataFrame:
    """Return one geometry row per distinct (encoder, task, pair, seed, scope) in `specs`,
    leaving out the specs whose (encoder, task, source, target, seed) is in `skip`."""
    seen, rows = set(), []
    for spec in specs:
        key = (spec.encoder, spec.task, spec.source, spec.target, spec.seed, spec.scope)
        if key[:5] in skip:
            continue
        if key not in seen:
            seen.add(key)
            rows.append(geometry_row(spec, checkpoint_root))
    return pd.DataFrame(rows, columns=GEOMETRY_COLUMNS)
