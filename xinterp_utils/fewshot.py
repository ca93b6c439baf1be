"""Few-shot target data (Zhao et al. 2021): which k examples, and how long to train on them.

A few-shot run continues from θ_src (its encoder and head) on k examples of the target
language: sentences for tagging and parsing, pairs for XNLI. The pool is the target
training set θ_tgt trains on (the same `max_train_examples` cap), less the rare parsing
sentence the featuriser drops (its first word alone exceeds `max_length`), so every
shot is trained on and the shots are a subset of θ_tgt's data.

Draw d uses seed d, independent of the model seed: the same shots meet every θ_src, so
the spread over seeds (at a fixed draw) and over draws (at a fixed seed) can be told
apart. Draws of one seed are nested across k (the 10 shots are among the 100).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from .train import load_features


def eligible_examples(features: Sequence[dict]) -> list[int]:
    """Return the sorted indices of the examples that have at least one training
    feature (all of them, except parsing sentences the featuriser drops)."""
    return sorted({int(f["example_index"]) for f in features})


def draw_shots(pool: Sequence[int], k: int, seed: int) -> list[int]:
    """Return `k` distinct members of `pool` (example indices), sorted: the first k of a
    permutation of the pool fixed by `seed` (numpy PCG64), so the draws of one seed are
    nested across k. Raises ValueError naming k and the pool size when k exceeds it."""
    if k < 1:
        raise ValueError(f"shots k={k}: must be >= 1")
    if k > len(pool):
        raise ValueError(f"shots k={k}: the pool holds only {len(pool)} training examples "
                         "(the target training set, capped by max_train_examples); lower k "
                         "or raise the cap")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(pool))
    return sorted(int(pool[i]) for i in order[:k])


def fewshot_schedule(k: int, *, batch_size: int, epochs: int, min_steps: int) -> dict:
    """Return the few-shot training schedule for k shots.

    Keys: `batch_size` = min(batch_size, k); `epochs` (learning-curve and selection
    points); `shot_passes`, the passes over the shots in one epoch, the fewest that give
    at least `min_steps` optimiser steps in all; `steps_per_epoch`; `total_steps`.
    Example: k = 10, batch 32, 5 epochs, 50 steps: batches of 10, 10 passes an epoch,
    50 steps (50 passes over the shots in all).
    """
    if min(k, batch_size, epochs, min_steps) < 1:
        raise ValueError(f"fewshot_schedule: k={k}, batch_size={batch_size}, epochs={epochs}, "
                         f"min_steps={min_steps}: all must be >= 1")
    batch = min(batch_size, k)
    passes = 1
    while epochs * math.ceil(passes * k / batch) < min_steps:
        passes += 1
    steps = math.ceil(passes * k / batch)
    return {"batch_size": batch, "epochs": epochs, "shot_passes": passes,
            "steps_per_epoch": steps, "total_steps": steps * epochs}


def shot_features(config, tokenizer, lang: str, kept=None):
    """Return (features, split, note) of a few-shot run's training language `lang`.

    The features are those of the drawn shots (`draw_shots` over `eligible_examples` of
    the capped training set, k = `config.shots`, seed `config.shot_seed`), repeated
    `config.shot_passes` times; the split is the shots' examples with a fingerprint that
    names the draw; the note records k, the seed, the pool size and the indices.
    """
    pool_features, raw = load_features(config, tokenizer, lang, "train", kept=kept)
    pool = eligible_examples(pool_features)
    chosen = draw_shots(pool, config.shots, config.shot_seed)
    keep = set(chosen)
    # Features keep their pool example indices: training never reads them.
    shots = [f for f in pool_features if f["example_index"] in keep]
    split = dataclasses.replace(
        raw, examples=[raw.examples[i] for i in chosen],
        fingerprint=f"{raw.fingerprint}:shots{config.shots}-seed{config.shot_seed}")
    note = {"shots": config.shots, "shot_seed": config.shot_seed, "pool": len(pool),
            "shot_passes": config.shot_passes, "indices": chosen}
    return shots * config.shot_passes, split, note
