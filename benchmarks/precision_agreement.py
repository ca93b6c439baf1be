"""Does bf16 autocast change what a run learns? θ_src of one task, trained both ways.

For each seed of the profile, trains the source-only model of `--task` with the
profile's settings (`precision=bf16-native`: the run the profile itself trains, shared
with it) and the same run in fp32 (`precision=fp32`; everything else equal). Both are
evaluated on the source dev set in their own precision. Prints, per seed, the selected
dev score and the training time of each, then the paired differences against the spread
across seeds: bf16 agrees with fp32 "within seed noise" when the mean paired difference
is smaller than the standard deviation of the scores across seeds. Writes the rows to
`<results>/precision_agreement.csv` (accumulated, keyed by run id).

This measures scores, not speed, so it may run beside other work; the seconds it prints
are only comparable on an otherwise idle machine. Runs are resumable and finished ones
are skipped. From the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/precision_agreement.py repro --task ner
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys

import pandas as pd

from xinterp_utils.paths import repo_root
from xinterp_utils.profiles import load_profile
from xinterp_utils.tables import upsert_rows
from xinterp_utils.train import TrainConfig, train

COLUMNS = ["encoder", "task", "train_langs", "seed", "precision", "autocast", "run_id",
           "train_examples", "epochs", "lr", "best_dev", "best_epoch", "seconds"]
KEY = ["encoder", "task", "train_langs", "seed", "run_id"]


def agreement(table: pd.DataFrame) -> dict:
    """Return the paired comparison of a bf16 and an fp32 column of per-seed scores.

    `table` has one row per seed and columns `bf16` and `fp32` (dev scores, the task's
    metric in [0, 1]). Returns the mean and largest absolute paired difference, each
    precision's standard deviation across seeds (sample, n − 1), and `within_noise`:
    whether |mean difference| is below the smaller of the two standard deviations.
    """
    if len(table) < 2:
        raise ValueError("agreement needs at least two seeds to measure seed noise")
    diff = table["bf16"] - table["fp32"]
    sd_bf16 = statistics.stdev(table["bf16"])
    sd_fp32 = statistics.stdev(table["fp32"])
    mean_diff = float(diff.mean())
    return {"mean_diff": mean_diff, "max_abs_diff": float(diff.abs().max()),
            "sd_bf16": sd_bf16, "sd_fp32": sd_fp32,
            "within_noise": abs(mean_diff) < min(sd_bf16, sd_fp32)}


def main(argv: list[str] | None = None) -> int:
    """Train (or read back) both precisions for every seed; print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile")
    parser.add_argument("overrides", nargs="*", help="profile overrides, key=value")
    parser.add_argument("--task", default="ner")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    profile = load_profile(args.profile, args.overrides)
    if args.task not in profile.tasks:
        raise SystemExit(f"--task {args.task!r}: not one of {args.profile}'s tasks "
                         f"{profile.tasks}")
    if len(profile.seeds) < 2:
        raise SystemExit(f"{args.profile}: seed noise needs at least two seeds, "
                         f"got seeds={profile.seeds}")
    root = repo_root()
    source = profile.pair_tuples()[0][0]
    rows = []
    for seed in profile.seeds:
        base = TrainConfig(profile.encoders[0], args.task, (source,), seed,
                           **profile.train_hparams(args.task))
        for precision in (base.precision, "fp32"):
            config = dataclasses.replace(base, precision=precision)
            print(f"{args.task} seed {seed} {precision}: run {config.run_hash()}", flush=True)
            record = train(config, root / profile.checkpoints, device=args.device)
            rows.append({
                "encoder": config.encoder, "task": config.task, "train_langs": source,
                "seed": seed, "precision": precision,
                "autocast": record["autocast"] or "fp32",
                "run_id": config.run_hash(), "train_examples": record["train_examples"],
                "epochs": config.epochs, "lr": config.lr,
                "best_dev": record["best_dev_mean"], "best_epoch": record["best_epoch"],
                "seconds": record.get("seconds_last_call"),
            })
    table = pd.DataFrame(rows, columns=COLUMNS)
    upsert_rows(root / profile.results / "precision_agreement.csv", table, KEY)
    wide = table.assign(side=lambda t: t["precision"].map(
        lambda p: "fp32" if p == "fp32" else "bf16")).pivot(
        index="seed", columns="side", values=["best_dev", "seconds"])
    scores = wide["best_dev"]
    print(pd.concat({"dev": scores, "seconds": wide["seconds"]}, axis=1).round(4))
    result = agreement(scores)
    print(f"mean bf16 - fp32: {result['mean_diff']:+.4f} (largest |diff| "
          f"{result['max_abs_diff']:.4f}); sd across seeds: bf16 {result['sd_bf16']:.4f}, "
          f"fp32 {result['sd_fp32']:.4f}; within seed noise: {result['within_noise']}")
    seconds = wide["seconds"]
    if seconds.notna().all().all():
        print(f"time fp32 / bf16: {seconds['fp32'].sum() / seconds['bf16'].sum():.2f}x "
              "(only meaningful on an idle machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
