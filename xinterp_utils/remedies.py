"""Notebook 06's library side: plan the remedy runs, train them, tabulate and place them.

For each cell (encoder, task, source, target, seed) of the profile's `remedies` slice:

- few-shot models: θ_src fine-tuned further on k target examples, for every k (capped
  at the pool: `pool_size`) and draw d = 1 … `draws` (shots drawn with seed d);
- a silver model θ_silver: θ_bi's recipe (same initialisation and seed) with the
  target labels replaced by θ_src's predictions (`silver.py`).

Every remedy model is a `train.train` run with its own content-hashed identity, placed
in the plane of its cell's θ_bi, θ_src, θ_tgt (`plane.plane_projection`) and joined to
θ_src by a 1D line (`lines.py`). Result tables (`remedies.csv`, `silver.csv`,
`plane_coords.csv`) accumulate like `finetune.csv`; a cell whose rows are all present
for the run ids the profile gives is skipped without checkpoints
(`complete_remedy_cells`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .checkpoints import MODEL_NAME, finished_model_path, read_record, relative_run_dir
from .config import TrainConfig, pair_configs
from .embedding_store import read_model_state
from .encoders import load_tokenizer
from .fewshot import eligible_examples, fewshot_schedule
from .interpolate import interpolated_names
from .jobs import run_jobs
from .lines import LineSpec, line_complete
from .plane import plane_projection
from .remedy_tables import (
    CELL,
    PLANE_COLUMNS,
    REMEDY_COLUMNS,
    RERUN_COLUMNS,
    SILVER_COLUMNS,
    read_remedy_table,
)
from .train import ensure_dev_scores, load_features, train

REMEDIES = ("fewshot", "silver")


@dataclass(frozen=True)
class RemedyRun:
    """One remedy model: its cell, kind (`remedy`), k and draw (few-shot only), its
    TrainConfig and the cell's three end-points (`endpoints`: src, tgt, bi)."""

    encoder: str
    task: str
    source: str
    target: str
    seed: int
    remedy: str
    config: TrainConfig
    endpoints: dict
    k: int | None = None
    draw: int | None = None

    @property
    def cell(self) -> tuple:
        """Return (encoder, task, source, target, seed)."""
        return (self.encoder, self.task, self.source, self.target, self.seed)


def remedy_cells(profile) -> list[tuple]:
    """Return the (encoder, task, source, target, seed) cells the profile's remedies
    cover (none when they are off)."""
    settings = profile.remedy_settings()
    return [] if settings is None else settings.cells(profile)


_POOLS: dict[tuple, int] = {}


def pool_size(config: TrainConfig) -> int:
    """Return how many target training examples a few-shot run of θ_tgt's config
    `config` can draw from: the capped training set less the sentences the featuriser
    drops (counted from the cached features; remembered per process)."""
    key = (config.encoder, config.task, config.train_langs, config.max_train_examples,
           config.max_length, config.data_source)
    if key not in _POOLS:
        (lang,) = config.train_langs
        feats, _ = load_features(config, load_tokenizer(config.encoder), lang, "train")
        _POOLS[key] = len(eligible_examples(feats))
    return _POOLS[key]


def fewshot_config(src: TrainConfig, target: str, k: int, draw: int, fewshot: dict) -> TrainConfig:
    """Return the few-shot run continuing θ_src (`src`) on k target shots of draw
    `draw` (seed = draw) with the `fewshot` settings (`remedy_settings.FEWSHOT_DEFAULTS`)."""
    schedule = fewshot_schedule(k, batch_size=fewshot["batch_size"] or src.batch_size,
                                epochs=fewshot["epochs"], min_steps=fewshot["min_steps"])
    return dataclasses.replace(
        src, train_langs=(target,), lr=fewshot["lr"] or src.lr, epochs=schedule["epochs"],
        batch_size=schedule["batch_size"], evals_per_epoch=fewshot["evals_per_epoch"],
        init_from=relative_run_dir(src), shots=k, shot_seed=draw,
        shot_passes=schedule["shot_passes"])


def silver_config(src: TrainConfig, bi: TrainConfig) -> TrainConfig:
    """Return θ_silver: θ_bi's run (same initialisation, seed, data) with the target
    labels replaced by θ_src's predictions."""
    return dataclasses.replace(bi, silver_from=relative_run_dir(src))


def capped_ks(ks, pool: int) -> tuple[list[tuple[int, int]], list[str]]:
    """Return ([(k, draws factor)], notes): each k capped at `pool`, duplicates merged;
    the factor is 1 where k equals the pool (every draw is the whole pool, so one draw
    is run) and None otherwise (all draws). `notes` say what was capped."""
    out, notes, seen = [], [], set()
    for k in sorted(ks):
        use = min(k, pool)
        if use != k:
            notes.append(f"k={k} exceeds the pool of {pool} examples: capped to {use}")
        if use in seen:
            continue
        seen.add(use)
        out.append((use, 1 if use == pool else None))
    return out, notes


def plan_remedies(profile, *, skip=frozenset(), notes: list | None = None) -> list[RemedyRun]:
    """Return the remedy runs of the profile's cells not in `skip`, in a stable order:
    per cell, few-shot runs by k and draw, then the silver run. Capping notes are
    appended to `notes` when given."""
    settings = profile.remedy_settings()
    runs = []
    for cell in remedy_cells(profile):
        if cell in skip:
            continue
        encoder, task, source, target, seed = cell
        endpoints = pair_configs(encoder, task, source, target, seed,
                                 **profile.train_hparams(task))
        ks, capped = capped_ks(settings.k, pool_size(endpoints["tgt"]))
        if notes is not None:
            notes.extend(f"{task} {source}-{target} seed {seed}: {n}" for n in capped)
        for k, factor in ks:
            for draw in range(1, (factor or settings.draws) + 1):
                runs.append(RemedyRun(*cell, "fewshot", fewshot_config(
                    endpoints["src"], target, k, draw, settings.fewshot), endpoints, k, draw))
        if settings.silver:
            runs.append(RemedyRun(*cell, "silver", silver_config(endpoints["src"],
                                                                 endpoints["bi"]), endpoints))
    return runs


def run_remedies(profile, checkpoint_root: str | Path, runs: list[RemedyRun], *,
                 executor: str | None = None, device: str | None = None,
                 progress: bool = True, **executor_options) -> list[dict]:
    """Train (or find finished) the end-points of the runs' cells, then the remedy
    runs; return the remedy runs' records in order. Interrupted runs resume."""
    options = {**profile.executor_options(), **executor_options}

    def jobs(configs):
        return [{"config": c, "checkpoint_root": str(checkpoint_root), "device": device,
                 "progress": progress} for c in configs]

    endpoints = {}
    for run in runs:
        for config in run.endpoints.values():
            endpoints.setdefault(config.run_hash(), config)
    for stage in (list(endpoints.values()), [r.config for r in runs]):
        records = run_jobs(train, jobs(stage), executor=executor or profile.executor,
                           folder=Path(checkpoint_root) / "submitit", progress=progress,
                           **options)
    return records


def remedies_table(runs: list[RemedyRun], checkpoint_root: str | Path, *,
                   device: str | None = None) -> pd.DataFrame:
    """Return the dev scores (`REMEDY_COLUMNS`) of each remedy model on the source and
    the target dev set, with the settings and checkpoints that produced them (`ckpt_src`:
    θ_src, the model a few-shot run starts from or the silver labeller). Scores are
    fractions with the task's metric; missing source scores are computed and saved."""
    rows = []
    for run in runs:
        record = ensure_dev_scores(run.config, checkpoint_root, (run.source, run.target),
                                   device=device)
        c = run.config
        for lang, role in ((run.source, "source"), (run.target, "target")):
            result = record["dev_scores"][lang]
            rows.append({**dict(zip(CELL, run.cell, strict=True)), "remedy": run.remedy,
                         "k": run.k, "draw": run.draw, "shot_seed": c.shot_seed,
                         "eval_lang": lang, "eval_role": role, "metric": result["metric"],
                         "score": float(result["score"]),
                         "n_examples": int(result["n_examples"]), "run_id": record["run_id"],
                         "ckpt_src": run.endpoints["src"].run_hash(), "lr": c.lr,
                         "epochs": c.epochs, "batch_size": c.batch_size,
                         "shot_passes": c.shot_passes, "total_steps": record["total_steps"],
                         "checkpoint": relative_run_dir(c)})
    return pd.DataFrame(rows, columns=REMEDY_COLUMNS)


def silver_table(runs: list[RemedyRun], checkpoint_root: str | Path) -> pd.DataFrame:
    """Return one row per silver run and silver-labelled language (`SILVER_COLUMNS`): the
    labels' agreement with gold in the task's metric (a fraction), the artefact's key,
    the silver run and its labeller (θ_src)."""
    rows = []
    for run in runs:
        if run.remedy != "silver":
            continue
        record = read_record(run.config.run_dir(checkpoint_root))
        if record is None or record.get("status") != "finished":
            raise FileNotFoundError(f"{run.config.run_dir(checkpoint_root)}: not trained")
        for lang, note in record["remedy"].items():
            rows.append({**dict(zip(CELL, run.cell, strict=True)), "lang": lang,
                         "metric": note["metric"], "agreement": float(note["agreement"]),
                         "n_examples": note["n_examples"], "silver_key": note["silver_key"],
                         "run_id": record["run_id"], "ckpt_src": note["labeller"]})
    return pd.DataFrame(rows, columns=SILVER_COLUMNS)


def plane_table(runs: list[RemedyRun], checkpoint_root: str | Path, scope: str) -> pd.DataFrame:
    """Return each remedy model's place in its cell's plane (`PLANE_COLUMNS`): (α1, α2)
    by least squares, ‖θ − θ_bi‖, the residual and the fraction of the offset outside
    the plane (`plane.plane_projection`), over the parameters of `scope` as the
    geometry uses them (`interpolate.interpolated_names`)."""
    rows, by_cell = [], {}
    for run in runs:
        by_cell.setdefault(run.cell, []).append(run)
    for cell, cell_runs in by_cell.items():
        ends = cell_runs[0].endpoints
        states = {role: read_model_state(finished_model_path(checkpoint_root,
                                                                 relative_run_dir(c)))
                  for role, c in ends.items()}
        names = interpolated_names(states["bi"], scope)
        for run in cell_runs:
            theta = read_model_state(run.config.run_dir(checkpoint_root) / MODEL_NAME)
            where = plane_projection(states["bi"], states["src"], states["tgt"], theta, names)
            rows.append({**dict(zip(CELL, cell, strict=True)), "remedy": run.remedy,
                         "k": run.k, "draw": run.draw, "scope": scope, **where,
                         "run_id": run.config.run_hash(),
                         **{f"ckpt_{r}": ends[r].run_hash() for r in ("src", "tgt", "bi")}})
    return pd.DataFrame(rows, columns=PLANE_COLUMNS)


def rerun_plane_table(profile, checkpoint_root: str | Path, scope: str,
                      done: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return the yardstick for `plane_table`'s outside fraction (`RERUN_COLUMNS`): for
    each remedy cell, θ_src, θ_tgt and θ_bi of every other seed of the profile's remedy
    cells (same encoder, task and pair) placed in the plane of the cell's own end-points
    (`plane.plane_projection`, the parameters of `scope`). Those are independent runs
    of the same recipes, so their outside fraction is what "off the plane" means for a
    model that the plane's runs did not produce. Cells whose rows are all in `done` for
    the same checkpoints are skipped; empty with fewer than two seeds."""
    by_pair: dict[tuple, dict[int, dict[str, TrainConfig]]] = {}
    for cell in remedy_cells(profile):
        ends = pair_configs(*cell, **profile.train_hparams(cell[1]))
        by_pair.setdefault(cell[:4], {})[cell[4]] = ends
    have = set()
    if done is not None and len(done):
        have = {tuple(str(v) for v in r) for r in
                done[[*CELL, "other_seed", "model", "scope", "run_id", "ckpt_bi"]]
                .itertuples(index=False)}

    def wanted(cell, other, role, config, ends):
        return tuple(str(v) for v in (*cell, other, role, scope, config.run_hash(),
                                      ends["bi"].run_hash())) not in have

    def state(config):
        return read_model_state(finished_model_path(checkpoint_root,
                                                    relative_run_dir(config)))

    rows = []
    for pair, seeds in by_pair.items():
        for seed, ends in seeds.items():
            todo = [(other, role, config) for other, others in seeds.items() if other != seed
                    for role, config in others.items()
                    if wanted((*pair, seed), other, role, config, ends)]
            if not todo:
                continue
            own = {role: state(config) for role, config in ends.items()}
            names = interpolated_names(own["bi"], scope)
            for other, role, config in todo:
                where = plane_projection(own["bi"], own["src"], own["tgt"], state(config),
                                         names)
                rows.append({**dict(zip(CELL, (*pair, seed), strict=True)),
                             "other_seed": other, "model": role, "scope": scope, **where,
                             "run_id": config.run_hash(),
                             **{f"ckpt_{r}": ends[r].run_hash() for r in ("src", "tgt", "bi")}})
    return pd.DataFrame(rows, columns=RERUN_COLUMNS)


def line_specs(profile, runs: list[RemedyRun]) -> list[LineSpec]:
    """Return the 1D lines θ_src → remedy model: the silver model and the first
    `line_draws` draws of each k, over the profile's `remedies.alphas`."""
    settings = profile.remedy_settings()
    return [LineSpec(*run.cell, run.remedy, run.endpoints["src"], run.config,
                     tuple(settings.alphas), k=run.k, draw=run.draw, scope=profile.scope,
                     max_dev_examples=profile.max_dev_examples)
            for run in runs
            if run.remedy == "silver" or run.draw <= settings.line_draws]


def _norm(value) -> str:
    """A table cell as text, integers without a trailing .0 and empty for NaN/None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def complete_remedy_cells(profile, results_root: str | Path) -> set[tuple]:
    """Return the remedy cells whose rows are all in `results_root` for the run ids the
    profile's settings give: both dev scores of every remedy model (`remedies.csv`), its
    plane coordinates, the silver agreement, and every point of its lines. Such cells
    need no checkpoint and are skipped."""
    results_root = Path(results_root)
    scores = read_remedy_table(results_root, "remedies")
    coords = read_remedy_table(results_root, "plane")
    silver = read_remedy_table(results_root, "silver")
    scored = {(_norm(r["run_id"]), r["eval_role"]) for r in scores.to_dict("records")}
    placed = {(_norm(r["run_id"]), r["scope"]) for r in coords.to_dict("records")}
    agreed = {_norm(r["run_id"]) for r in silver.to_dict("records")}
    runs = plan_remedies(profile)
    lines = {spec.end.run_hash(): spec for spec in line_specs(profile, runs)}
    incomplete = set()
    for run in runs:
        rid = run.config.run_hash()
        ok = (all((rid, role) in scored for role in ("source", "target"))
              and (rid, profile.scope) in placed
              and (run.remedy != "silver" or rid in agreed)
              and (rid not in lines or line_complete(lines[rid], results_root)))
        if not ok:
            incomplete.add(run.cell)
    return {run.cell for run in runs} - incomplete
