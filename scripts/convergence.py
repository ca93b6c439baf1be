"""Is θ_src trained to its plateau? The evidence behind a profile's training settings.

For each task of the profile, trains the source-only model of seed 1 (the run the
profile itself trains, shared with it) and the same run with twice the training: twice
the epochs (`--double epochs`) or twice the examples (`--double examples`). Writes

- every run's learning curve into `<results>/training_curves.csv` (accumulated, keyed by
  run id), and
- one row per (task, variant) into `<results>/convergence.csv`: settings, best and last
  source-dev score, whether the last is within 0.01 of the best (`on_plateau`), and the
  doubled run's gain over the profile's run (`gain`; < 0.01 means more training of the
  same kind does not help).

Runs are resumable and finished ones are skipped; they live in the profile's checkpoint
folder, so the profile's own θ_src is trained once for both. Usage, from the repository root:

    .venv/bin/python scripts/convergence.py repro [key=value ...] [--tasks ner,pos]
        [--double epochs|examples] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import pandas as pd

from xinterp_utils.config import TrainConfig
from xinterp_utils.finetune import curve_rows
from xinterp_utils.paths import repo_root
from xinterp_utils.profiles import load_profile
from xinterp_utils.summary import plateau_summary
from xinterp_utils.tables import CURVE_KEY, upsert_rows
from xinterp_utils.train import train

CONVERGENCE_COLUMNS = ["encoder", "task", "train_langs", "seed", "variant", "run_id",
                       "train_examples", "epochs", "lr", "batch_size", "batching",
                       "precision", "vocab", "best", "best_epoch", "last", "on_plateau",
                       "gain", "seconds"]
CONVERGENCE_KEY = ["encoder", "task", "train_langs", "seed", "variant", "run_id"]


def doubled(config: TrainConfig, what: str) -> TrainConfig:
    """Return `config` with twice the epochs or twice the training examples."""
    if what == "epochs":
        return dataclasses.replace(config, epochs=2 * config.epochs)
    if config.max_train_examples is None:
        raise SystemExit(f"{config.task}: no max_train_examples to double")
    return dataclasses.replace(config, max_train_examples=2 * config.max_train_examples)


def main(argv: list[str] | None = None) -> int:
    """Train and tabulate the convergence evidence; print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile")
    parser.add_argument("overrides", nargs="*", help="profile overrides, key=value")
    parser.add_argument("--tasks", default=None, help="comma-separated; default: the profile's")
    parser.add_argument("--double", choices=("epochs", "examples"), default="epochs")
    parser.add_argument("--seed", type=int, default=None, help="default: the profile's first")
    parser.add_argument("--device", default=None)
    parser.add_argument("--skip-double", action="store_true",
                        help="train only the profile's own run (exploring settings)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile, args.overrides)
    tasks = args.tasks.split(",") if args.tasks else profile.tasks
    seed = args.seed if args.seed is not None else profile.seeds[0]
    root = repo_root()
    results = root / profile.results
    checkpoints = root / profile.checkpoints
    source = profile.pair_tuples()[0][0]
    rows = []
    for task in tasks:
        base = TrainConfig(profile.encoders[0], task, (source,), seed,
                           **profile.train_hparams(task))
        variants = {"profile": base}
        if not args.skip_double:
            variants[f"2x {args.double}"] = doubled(base, args.double)
        records = {}
        for name, config in variants.items():
            print(f"{task} {name}: run {config.run_hash()}", flush=True)
            records[name] = train(config, checkpoints, device=args.device)
            curves = pd.DataFrame(curve_rows(records[name]))
            upsert_rows(results / "training_curves.csv", curves, CURVE_KEY)
            summary = plateau_summary(curves).iloc[0]
            rows.append({
                "encoder": config.encoder, "task": task, "train_langs": source,
                "seed": seed, "variant": name, "run_id": config.run_hash(),
                "train_examples": records[name]["train_examples"], "epochs": config.epochs,
                "lr": config.lr, "batch_size": config.batch_size, "batching": config.batching,
                "precision": records[name]["autocast"] or "fp32", "vocab": config.vocab,
                "best": summary["best"], "best_epoch": summary["best_epoch"],
                "last": summary["last"], "on_plateau": bool(summary["on_plateau"]),
                "gain": None, "seconds": records[name].get("seconds_last_call"),
            })
        if len(records) == 2:
            rows[-1]["gain"] = rows[-1]["best"] - rows[-2]["best"]
    table = pd.DataFrame(rows, columns=CONVERGENCE_COLUMNS)
    upsert_rows(results / "convergence.csv", table, CONVERGENCE_KEY)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["encoder", "run_id"]).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
