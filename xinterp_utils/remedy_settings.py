"""The `remedies` field of a profile (notebook 06), parsed and checked before work starts.

A profile switches the remedies on with a mapping, e.g.

    remedies: {k: [10, 100, 1000], draws: 3, pairs: [en-de], seeds: [1, 2, 3]}

and off with `null` (the default). Every key has a default (`RemedySettings`), so
`remedies: {}` runs the full design on the profile's own pairs, seeds and tasks. Free of
heavy imports: `profiles.Profile.validate` calls `parse_remedies`.

Few-shot hyper-parameters (`fewshot`), after Zhao et al. (2021, "A Closer Look at
Few-Shot Crosslingual Transfer"): continue from θ_src, full-model fine-tuning, batches
of min(batch size, k), selection on the target dev set as they do (Xu & Murray 2022 point
out that a large target dev set is itself target supervision; notebook 06 says so).
Each run gets `epochs` learning-curve epochs and at least `min_steps` updates: an epoch
is `shot_passes` passes over the shots (`fewshot.fewshot_schedule`), so k = 10 at
batch 10 gets 50 updates (Zhao et al.'s 50 epochs over the shots) while k = 1,000 gets
the main runs' 5 epochs. `lr` null means the task's own learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_K = (10, 100, 1000)
# θ_src (α = 0) to the remedy model (α = 1), a little beyond both ends.
DEFAULT_LINE_ALPHAS = (-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
FEWSHOT_DEFAULTS = {"lr": None, "epochs": 5, "min_steps": 50, "batch_size": None,
                    "evals_per_epoch": 1}
KEYS = ("k", "draws", "pairs", "seeds", "tasks", "silver", "fewshot", "alphas",
        "line_draws")


@dataclass(frozen=True)
class RemedySettings:
    """What notebook 06 runs: few-shot models for every k in `k` (`draws` shot draws each,
    draw d drawn with seed d), silver models when `silver`, on the profile's cells
    restricted to `pairs`, `seeds`, `tasks` ("all": the profile's), and 1D lines θ_src →
    remedy model over `alphas` for the first `line_draws` draws of each k."""

    k: tuple[int, ...] = DEFAULT_K
    draws: int = 3
    pairs: tuple[str, ...] | str = "all"
    seeds: tuple[int, ...] | str = "all"
    tasks: tuple[str, ...] | str = "all"
    silver: bool = True
    fewshot: dict = field(default_factory=lambda: dict(FEWSHOT_DEFAULTS))
    alphas: tuple[float, ...] = DEFAULT_LINE_ALPHAS
    line_draws: int = 1

    def pair_tuples(self, profile) -> list[tuple[str, str]]:
        """Return the (source, target) pairs the remedies run on."""
        pairs = profile.pair_tuples()
        return pairs if self.pairs == "all" else [p for p in pairs
                                                  if f"{p[0]}-{p[1]}" in self.pairs]

    def seed_list(self, profile) -> list[int]:
        """Return the seeds the remedies run on."""
        return list(profile.seeds) if self.seeds == "all" else list(self.seeds)

    def cells(self, profile) -> list[tuple]:
        """Return the (encoder, task, source, target, seed) cells the remedies cover."""
        return [(encoder, task, source, target, seed) for encoder in profile.encoders
                for task in self.task_list(profile)
                for source, target in self.pair_tuples(profile)
                for seed in self.seed_list(profile)]

    def task_list(self, profile) -> list[str]:
        """Return the tasks the remedies run on, in the profile's order."""
        return list(profile.tasks) if self.tasks == "all" else [
            t for t in profile.tasks if t in self.tasks]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def parse_remedies(value, profile) -> RemedySettings | None:
    """Return the profile's `RemedySettings` (None when `remedies` is null: off).

    Raises ValueError naming the profile and the offending key (``remedies.k`` …) for an
    unknown key, a wrong type or range, or pairs / seeds / tasks outside the profile's.
    """
    if value is None:
        return None

    def bad(key, why):
        shown = value.get(key) if isinstance(value, dict) and key else value
        name = f"remedies.{key}" if key else "remedies"
        raise ValueError(f"profile {profile.name!r}: {name}={shown!r}: {why}")

    if not isinstance(value, dict):
        bad(None, "must be a mapping (e.g. {k: [10, 100], draws: 3}) or null")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise ValueError(f"profile {profile.name!r}: remedies: unknown key(s) {unknown}; "
                         f"known: {list(KEYS)}")
    out = {}
    if "k" in value:
        k = value["k"]
        if not isinstance(k, list) or not k or not all(_is_int(x) and x >= 1 for x in k):
            bad("k", "must be a non-empty list of integers >= 1 (shots per draw)")
        out["k"] = tuple(sorted(set(k)))
    for key in ("draws", "line_draws"):
        if key in value:
            low = 0 if key == "line_draws" else 1
            if not _is_int(value[key]) or value[key] < low:
                bad(key, f"must be an integer >= {low}")
            out[key] = value[key]
    if "silver" in value:
        if not isinstance(value["silver"], bool):
            bad("silver", "must be true or false")
        out["silver"] = value["silver"]
    profile_pairs = {f"{s}-{t}" for s, t in profile.pair_tuples()}
    for key, allowed in (("pairs", profile_pairs), ("seeds", set(profile.seeds)),
                         ("tasks", set(profile.tasks))):
        if key not in value:
            continue
        chosen = value[key]
        if chosen == "all":
            out[key] = "all"
            continue
        if not isinstance(chosen, list) or not chosen:
            bad(key, "must be 'all' or a non-empty list")
        if key == "seeds" and not all(_is_int(s) for s in chosen):
            bad(key, "seeds must be integers")
        outside = [c for c in chosen if c not in allowed]
        if outside:
            bad(key, f"{outside} are not among the profile's {key} {sorted(allowed)}")
        out[key] = tuple(chosen)
    if "alphas" in value:
        alphas = value["alphas"]
        if not isinstance(alphas, list) or not alphas or not all(_is_number(a) for a in alphas):
            bad("alphas", "must be a non-empty list of finite numbers")
        out["alphas"] = tuple(float(a) for a in alphas)
    if "fewshot" in value:
        few = value["fewshot"]
        if not isinstance(few, dict) or set(few) - set(FEWSHOT_DEFAULTS):
            bad("fewshot", f"must be a mapping with keys among {list(FEWSHOT_DEFAULTS)}")
        merged = {**FEWSHOT_DEFAULTS, **few}
        for key in ("epochs", "min_steps", "evals_per_epoch"):
            if not _is_int(merged[key]) or merged[key] < 1:
                bad("fewshot", f"fewshot.{key}={merged[key]!r}: must be an integer >= 1")
        if merged["batch_size"] is not None and (not _is_int(merged["batch_size"])
                                                 or merged["batch_size"] < 1):
            bad("fewshot", f"fewshot.batch_size={merged['batch_size']!r}: must be an "
                "integer >= 1 or null (the profile's batch size)")
        if merged["lr"] is not None and (not _is_number(merged["lr"]) or merged["lr"] <= 0):
            why = "must be a number > 0 or null (the task's learning rate)"
            if isinstance(merged["lr"], str):
                why += " (YAML reads 1e-5 as text: write 1.0e-5)"
            bad("fewshot", f"fewshot.lr={merged['lr']!r}: {why}")
        out["fewshot"] = merged
    return RemedySettings(**out)


def remedy_plan_line(profile) -> str | None:
    """Return one line sizing the profile's notebook 06 work for `xinterp plan` (None when
    the remedies are off): remedy runs, lines and evaluated points, counted from the
    settings alone (a k above a language's pool is capped, and merged, when run)."""
    settings = profile.remedy_settings()
    if settings is None:
        return None
    cells = len(settings.cells(profile))
    fewshot = cells * len(settings.k) * settings.draws
    silver = cells if settings.silver else 0
    lines = cells * (len(settings.k) * min(settings.line_draws, settings.draws)
                     + (1 if settings.silver else 0))
    points = lines * len(settings.alphas)
    return (f"remedies (notebook 06): {cells} cell(s): up to {fewshot} few-shot runs (k "
            f"{list(settings.k)} x {settings.draws} draws; a k above a target's training "
            f"pool runs once, capped), {silver} silver runs "
            f"(each the size of a θ_bi run), {lines} lines x {len(settings.alphas)} points = "
            f"{points} evaluated models on 2 dev sets; not in the estimate below")
