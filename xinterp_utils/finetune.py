"""Notebook 01's library side: run a profile's fine-tuning runs, tabulate their dev scores
and learning curves.

For every (encoder, task, source, target, seed) the paper trains three models from one
initialisation: θ_src, θ_tgt and θ_bi. Runs are keyed by what determines their weights,
so the monolingual model of a language is planned once however many pairs use it
(`profiles.plan_runs`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .checkpoints import finished_record
from .config import MODEL_ROLES, pair_configs
from .jobs import run_jobs
from .labels import TASK_METRIC
from .profiles import Profile, pair_grid, plan_runs
from .tables import CURVE_COLUMNS, FINETUNE_COLUMNS
from .train import ensure_dev_scores, train


def run_finetuning(
    profile: Profile, checkpoint_root: str | Path, *, skip=frozenset(),
    executor: str | None = None, device: str | None = None, progress: bool = True,
    **executor_options,
) -> list[dict]:
    """Train (or skip, if finished) every planned run (`plan_runs(profile, skip)`); return
    their records in plan order."""
    jobs = [{"config": config, "checkpoint_root": str(checkpoint_root), "device": device,
             "progress": progress} for config in plan_runs(profile, skip)]
    options = {**profile.executor_options(), **executor_options}
    return run_jobs(train, jobs, executor=executor or profile.executor,
                    folder=Path(checkpoint_root) / "submitit", progress=progress, **options)


def finetune_table(profile: Profile, checkpoint_root: str | Path,
                   device: str | None = None, skip=frozenset()) -> pd.DataFrame:
    """Return the tidy dev-score table: each pair's three models on source and target,
    for every cell of the profile's grid but those in `skip`.

    Scores are fractions in [0, 1] with the task's metric (`labels.TASK_METRIC`); the
    source-only model's row on the target language is the zero-shot number. Missing dev
    scores (a monolingual model on another pair's language) are computed and saved.
    """
    rows = []
    for encoder, task, source, target, seed in pair_grid(profile):
        if (encoder, task, source, target, seed) in skip:
            continue
        configs = pair_configs(encoder, task, source, target, seed,
                               **profile.train_hparams(task))
        for role in MODEL_ROLES:
            config = configs[role]
            record = ensure_dev_scores(config, checkpoint_root, (source, target), device=device)
            for lang, eval_role in ((source, "source"), (target, "target")):
                result = record["dev_scores"][lang]
                rows.append({
                    "encoder": encoder, "task": task, "source": source, "target": target,
                    "seed": seed, "model": role, "train_langs": "+".join(config.train_langs),
                    "eval_lang": lang, "eval_role": eval_role,
                    "metric": result.get("metric", TASK_METRIC[task]),
                    "score": float(result["score"]), "n_examples": int(result["n_examples"]),
                    "run_id": record["run_id"],
                    "checkpoint": str(config.run_dir(".")),
                })
    return pd.DataFrame(rows, columns=FINETUNE_COLUMNS)


def curve_rows(record: dict) -> list[dict]:
    """Return the learning-curve rows (`CURVE_COLUMNS`) of one finished run's record."""
    config = record["config"]
    steps_per_epoch = record["total_steps"] / config["epochs"]
    rows = []
    for point in record["history"]:
        # Records written before learning curves had one point per epoch, at its end.
        step = point.get("step", round((point["epoch"] + 1) * steps_per_epoch))
        for lang, score in point["dev"].items():
            rows.append({
                "encoder": config["encoder"], "task": config["task"],
                "train_langs": "+".join(config["train_langs"]), "seed": config["seed"],
                "run_id": record["run_id"], "epoch": round(step / steps_per_epoch, 4),
                "step": step, "eval_lang": lang, "score": float(score),
                "train_loss": float(point["mean_loss"]),
            })
    return rows


def curve_table(profile: Profile, checkpoint_root: str | Path, skip=frozenset()) -> pd.DataFrame:
    """Return the learning curves (`CURVE_COLUMNS`) of the profile's finished runs (those
    of cells in `skip` left out): the dev score of each training language and the mean
    training loss at every evaluation point."""
    rows = []
    for config in plan_runs(profile, skip):
        record = finished_record(config.run_dir(checkpoint_root))
        if record is None:
            raise FileNotFoundError(f"{config.run_dir(checkpoint_root)}: run not finished")
        rows.extend(curve_rows(record))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)
