"""The order and pace of a run: which examples form each batch, the learning rate at each
step, and after which steps the dev sets are evaluated. All fixed by (seed, epoch), so a
resumed run takes the same steps as one that never stopped."""

from __future__ import annotations

import math

import torch

from .settings import BATCHINGS

# Length-grouped batching sorts chunks of this many batches (as transformers'
# group_by_length does): large enough to cut padding, small enough to keep batches random.
MEGABATCH = 50


def linear_warmup_decay(optimizer, total_steps: int, warmup_ratio: float):
    """Return a LambdaLR: linear warm-up over `warmup_ratio` of the steps, then linear decay to 0."""
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """Return the example order of one epoch: a permutation fixed by (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=gen).tolist()


def epoch_batches(lengths, batch_size: int, seed: int, epoch: int,
                  batching: str = "random") -> list[list[int]]:
    """Return one epoch's batches (lists of example indices), fixed by (seed, epoch).

    Both ways use every example exactly once, in `ceil(n / batch_size)` batches.
    ``random`` slices `epoch_order`. ``length-grouped`` cuts that same permutation into
    chunks of `MEGABATCH` batches, sorts each chunk by length (longest first), slices it
    into batches and shuffles the batches (a second stream of the same seed and epoch),
    so a batch holds examples of similar length and padding nearly vanishes.
    """
    if batching not in BATCHINGS:
        raise ValueError(f"batching={batching!r}: expected one of {BATCHINGS}")
    n = len(lengths)
    order = epoch_order(n, seed, epoch)
    if batching == "random":
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    out = []
    for start in range(0, n, MEGABATCH * batch_size):
        chunk = sorted(order[start:start + MEGABATCH * batch_size], key=lambda i: -lengths[i])
        out.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch + 1_000_000_007)
    return [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]


def eval_steps(steps_per_epoch: int, evals_per_epoch: int) -> list[int]:
    """Return the steps within an epoch (1-based counts of steps done) after which the
    dev sets are evaluated: `evals_per_epoch` evenly spaced points, the last one the
    epoch's end (the only one that selects the model)."""
    points = {max(1, round(k * steps_per_epoch / evals_per_epoch))
              for k in range(1, evals_per_epoch + 1)}
    return sorted(points)
