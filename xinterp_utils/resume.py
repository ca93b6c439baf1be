"""Which cells of a profile's grid already have all their results, so a rerun skips them.

Checkpoints are large and stay on the machine that trained them; the results tables and
sweep CSVs are small and are committed. A cell (encoder, task, source, target, seed)
whose results are all present, for the very runs and sweep settings the profile asks
for, needs no checkpoint: a rerun on a fresh clone, or after the checkpoints were
deleted, leaves it alone instead of retraining its three models. A cell missing any
part (a fine-tuning row, its geometry row, a point of its 1D sweep or, where the
profile plans one, of its 2D sweep) is recomputed from its checkpoints, trained first
where they are missing, so its numbers always come from one set of models.
"""

from __future__ import annotations

from pathlib import Path

from .config import MODEL_ROLES
from .sweep_rows import sweep_complete
from .sweep_spec import plan_sweeps
from .tables import FINETUNE_COLUMNS, GEOMETRY_COLUMNS, read_table


def complete_cells(profile, results_root: str | Path) -> set[tuple]:
    """Return the (encoder, task, source, target, seed) cells of `profile` whose
    fine-tuning rows, geometry row and sweeps in `results_root` are all complete and
    carry the run ids (config hashes) that the profile's settings give."""
    results_root = Path(results_root)
    finetune = read_table(results_root / "finetune.csv", FINETUNE_COLUMNS)
    geometry = read_table(results_root / "geometry.csv", GEOMETRY_COLUMNS)
    scored = {(r["encoder"], r["task"], r["source"], r["target"], int(r["seed"]), r["model"],
               r["eval_role"], r["run_id"]) for r in finetune.to_dict("records")}
    measured = {(r["encoder"], r["task"], r["source"], r["target"], int(r["seed"]), r["scope"],
                 r["ckpt_src"], r["ckpt_tgt"], r["ckpt_bi"]) for r in geometry.to_dict("records")}
    grids_2d = {_cell(spec): spec for spec in plan_sweeps(profile, two_d=True)}
    done = set()
    for spec in plan_sweeps(profile, two_d=False):
        cell = _cell(spec)
        ids = {role: config.run_hash() for role, config in spec.configs().items()}
        if not all((*cell, role, eval_role, ids[role]) in scored
                   for role in MODEL_ROLES for eval_role in ("source", "target")):
            continue
        if (*cell, spec.scope, ids["src"], ids["tgt"], ids["bi"]) not in measured:
            continue
        if not sweep_complete(spec, results_root):
            continue
        if cell in grids_2d and not sweep_complete(grids_2d[cell], results_root):
            continue
        done.add(cell)
    return done


def _cell(spec) -> tuple:
    return (spec.encoder, spec.task, spec.source, spec.target, spec.seed)
