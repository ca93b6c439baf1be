"""What a sweep is (`SweepSpec`: a pair's three end-points and the grids evaluated between
them) and which sweeps a profile asks for (`plan_sweeps`).

Free of torch, like `config.py`: planning and `xinterp plan` build specs without a model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import TrainConfig, identity_hparams, pair_configs, with_train_fields
from .paths import encoder_slug
from .profiles import pair_grid
from .settings import PLANE_2D, PLANES_1D

# The fields of a spec that list what to evaluate, not how: extending a grid keeps the id.
_GRID_FIELDS = ("planes", "alphas_1d", "alphas_2d", "alphas_2d_y")


def plane_coordinates(plane: str, alpha: float) -> tuple[float, float]:
    """Return (α1, α2) of Eq. 1 (`eq1`) or Eq. 2 (`eq2`) at `alpha`: Eq. 1 is the point
    (1 − α, 0) of Eq. 3's plane, Eq. 2 the point (0, 1 − α)."""
    if plane == "eq1":
        return (round(1.0 - alpha, 12), 0.0)
    if plane == "eq2":
        return (0.0, round(1.0 - alpha, 12))
    raise ValueError(f"plane={plane!r}: expected one of {PLANES_1D} (use (α1, α2) for 2d)")


# max_dev_examples and eval_batch_size: TrainConfig's settings, applied to the sweep's
# evaluation of its points.
@dataclass(frozen=True)
@with_train_fields("max_dev_examples", "eval_batch_size")
class SweepSpec:
    """One sweep: the pair's three runs (through `hparams`) and the grids to evaluate."""

    encoder: str
    task: str
    source: str
    target: str
    seed: int
    hparams: dict = field(default_factory=dict)  # TrainConfig fields shared by the 3 runs
    planes: tuple[str, ...] = PLANES_1D
    alphas_1d: tuple[float, ...] = ()
    alphas_2d: tuple[float, ...] = ()  # both axes when `alphas_2d_y` is empty
    alphas_2d_y: tuple[float, ...] = ()
    scope: str = "all"

    def configs(self) -> dict[str, TrainConfig]:
        """Return the three end-point runs (keys src, tgt, bi)."""
        return pair_configs(self.encoder, self.task, self.source, self.target, self.seed,
                            **self.hparams)

    def sweep_id(self) -> str:
        """Return a 12-hex-digit hash of what a point's score depends on (every row carries it).

        The grids are not part of it: extending a grid evaluates only the new points.
        """
        what = {k: v for k, v in asdict(self).items() if k not in _GRID_FIELDS}
        what["hparams"] = identity_hparams(what["hparams"])
        blob = json.dumps(what, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def points(self) -> list[tuple[str, float | None, float, float]]:
        """Return (plane, alpha, α1, α2) for every point, in evaluation order (alpha is
        None on the 2D grid)."""
        out = []
        for plane in self.planes:
            if plane in PLANES_1D:
                for alpha in self.alphas_1d:
                    out.append((plane, float(alpha), *plane_coordinates(plane, alpha)))
            elif plane == PLANE_2D:
                ys = self.alphas_2d_y or self.alphas_2d
                for a2 in ys:
                    for a1 in self.alphas_2d:
                        out.append((plane, None, float(a1), float(a2)))
            else:
                raise ValueError(f"SweepSpec.planes: unknown plane {plane!r}")
        return out

    def result_path(self, results_root: str | Path) -> Path:
        """Return the CSV this sweep appends to."""
        return (Path(results_root) / "sweeps" / encoder_slug(self.encoder) / self.task /
                f"{self.source}-{self.target}" / f"seed{self.seed}-{self.scope}.csv")

    def to_dict(self) -> dict:
        """Return the spec as JSON-ready data (`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SweepSpec:
        """Rebuild a spec from `to_dict` output (JSON lists become the grids' tuples)."""
        return cls(**{k: tuple(v) if k in _GRID_FIELDS else v for k, v in data.items()})


def plan_sweeps(profile, *, two_d: bool) -> list[SweepSpec]:
    """Return the profile's 1D sweeps (Eq. 1 and 2, every pair) or its 2D sweeps
    (Eq. 3, the profile's `pairs_2d` and `seeds_2d`), one per (encoder, task, pair, seed)."""
    grid = (pair_grid(profile, pairs=profile.pairs_2d_tuples(), seeds=profile.seeds_2d_list())
            if two_d else pair_grid(profile))
    return [SweepSpec(encoder, task, source, target, seed, hparams=profile.train_hparams(task),
                      planes=(PLANE_2D,) if two_d else PLANES_1D,
                      alphas_1d=tuple(profile.alphas_1d),
                      alphas_2d=tuple(profile.alphas_2d) if two_d else (),
                      scope=profile.scope, max_dev_examples=profile.max_dev_examples)
            for encoder, task, source, target, seed in grid]
