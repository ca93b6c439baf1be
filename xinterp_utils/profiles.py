"""Profiles (`paper`, `repro`, `demo`, `smoke`) as data, with command-line style
overrides, and the cells and runs a profile plans.

A profile is a YAML file in `xinterp_utils/profiles/`. Any field can be overridden,
from Python (`load_profile("demo", seeds=[1, 2])`), from papermill parameters, or from
`run_all.sh demo seeds=[1,2] pairs=[en-de,en-ru]` (values are YAML). Its training
settings are `TrainConfig`'s fields (`PROFILE_SETTINGS`), with TrainConfig's defaults.
Free of torch: every `xinterp` command loads profiles.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import TrainConfig, pair_configs, with_train_fields
from .encoders import check_encoder_name
from .hub import reachable
from .jobs import SlurmOptions
from .labels import LANGUAGES, TASKS
from .remedy_settings import parse_remedies
from .settings import BATCHINGS, EXECUTORS, PRECISIONS, SCOPES, VOCABS

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
# The TrainConfig fields a profile sets (names, types and defaults are TrainConfig's);
# `data` is the profile's name for `data_source`.
PROFILE_SETTINGS = ("epochs", "batch_size", "lr", "max_length", "warmup_ratio",
                    "max_train_examples", "max_dev_examples", "batching", "precision",
                    "vocab", "evals_per_epoch")

# The paper's grids (Section 3.1): −0.5 … 1.5 in steps of 0.1, plus twelve points near
# the end-points for Eq. 1/2; 21 × 21 for Eq. 3.
PAPER_ALPHAS_1D = tuple(
    sorted(
        {round(-0.5 + 0.1 * i, 3) for i in range(21)}
        | {0.025, 0.05, 0.075, 0.125, 0.15, 0.175, 0.825, 0.85, 0.875, 0.925, 0.95, 0.975}
    )
)
PAPER_ALPHAS_2D = tuple(round(-0.5 + 0.1 * i, 3) for i in range(21))


@dataclass(frozen=True)
class NumberRule:
    """A numeric field's type and range: `low`/`high` are bounds (None: unbounded),
    `open_low`/`open_high` exclude them; `optional` also allows None."""

    kind: type  # int or float
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    optional: bool = False

    def problem(self, value) -> str | None:
        """Return why `value` breaks the rule, or None when it is fine."""
        if value is None and self.optional:
            return None
        noun = "an integer" if self.kind is int else "a number"
        ok_type = isinstance(value, int) if self.kind is int else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            why = f"must be {noun}" + (" or null" if self.optional else "")
            if isinstance(value, str) and _looks_numeric(value):
                why += f" (YAML reads {value} as text: write it with a dot, e.g. 2.0e-5)"
            return why
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return f"must be {noun} {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None and (value >= self.high if self.open_high
                                      else value > self.high):
            return f"must be {noun} {'<' if self.open_high else '<='} {self.high:g}"
        return None


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Numeric fields, checked before any work starts. A new numeric field: add a line.
NUMBER_RULES = {
    "epochs": NumberRule(int, low=1),
    "batch_size": NumberRule(int, low=1),
    "max_length": NumberRule(int, low=1),
    "lr": NumberRule(float, low=0, open_low=True),
    "warmup_ratio": NumberRule(float, low=0, high=1, open_high=True),
    "max_train_examples": NumberRule(int, low=1, optional=True),
    "max_dev_examples": NumberRule(int, low=1, optional=True),
    "evals_per_epoch": NumberRule(int, low=1),
}
# The settings `task_hparams` may change per task.
TASK_SETTINGS = ("epochs", "batch_size", "lr", "warmup_ratio", "max_train_examples",
                 "evals_per_epoch")
_SEED_RULE = NumberRule(int)
_ALPHA_RULE = NumberRule(float)


@dataclass
@with_train_fields(*PROFILE_SETTINGS, after="seeds")
class Profile:
    """One experiment grid: what to fine-tune, how, and which interpolations to sweep.

    After `seeds` come the training settings of `PROFILE_SETTINGS` (TrainConfig's fields,
    with its defaults: the paper's App. A).
    """

    name: str
    encoders: list[str]
    tasks: list[str]
    pairs: list[str]  # "src-tgt"
    seeds: list[int]
    # Per-task deviations from the settings above, e.g. {parsing: {epochs: 10}}: only the
    # fields in TASK_SETTINGS (what a task's learning curve can justify changing).
    task_hparams: dict = field(default_factory=dict)
    alphas_1d: list[float] = field(default_factory=lambda: list(PAPER_ALPHAS_1D))
    alphas_2d: list[float] = field(default_factory=lambda: list(PAPER_ALPHAS_2D))
    pairs_2d: list[str] | str = "all"
    seeds_2d: list[int] | str = "all"  # the 2D grid is the costliest sweep; a subset of seeds
    scope: str = "all"
    executor: str = "inline"
    # submitit Slurm resources (jobs.SlurmOptions fields), e.g. {partition: gpu, mem_gb: 64}
    slurm: dict = field(default_factory=dict)
    data: str | None = None  # offline data folder, "hub", or None (auto)
    # Notebook 06: few-shot and silver models through the interpolation lens; null: off,
    # a mapping: on (`remedy_settings.RemedySettings` has the keys and their defaults).
    remedies: dict | None = None
    checkpoints: str = "checkpoints"
    results: str = "results"
    figures: str = "figures"

    def __post_init__(self) -> None:
        if self.alphas_1d == "paper":
            self.alphas_1d = list(PAPER_ALPHAS_1D)
        if self.alphas_2d == "paper":
            self.alphas_2d = list(PAPER_ALPHAS_2D)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        def bad(name, why):
            raise ValueError(f"profile {self.name!r}: {name}={getattr(self, name)!r}: {why}")

        for name in ("encoders", "tasks", "pairs", "seeds"):
            if not isinstance(getattr(self, name), list) or not getattr(self, name):
                bad(name, "must be a non-empty list")
        for name in ("seeds", "seeds_2d"):
            values = getattr(self, name)
            for seed in values if isinstance(values, list) else ():
                if _SEED_RULE.problem(seed) is not None:
                    bad(name, f"seed {seed!r} is not an integer")
        for task in self.tasks:
            if task not in TASKS:
                bad("tasks", f"unknown task {task!r}; expected some of {TASKS}")
        for pair in self.pair_tuples():
            if pair[0] == pair[1]:
                bad("pairs", f"{pair[0]}-{pair[1]} has the same source and target")
        if self.pairs_2d != "all":
            unknown = set(self.pairs_2d) - set(self.pairs)
            if unknown:
                bad("pairs_2d", f"{sorted(unknown)} are not in pairs")
        if self.seeds_2d != "all" and (
            not isinstance(self.seeds_2d, list) or set(self.seeds_2d) - set(self.seeds)
        ):
            bad("seeds_2d", "must be 'all' or a list of seeds from `seeds`")
        for name, rule in NUMBER_RULES.items():
            if (why := rule.problem(getattr(self, name))) is not None:
                bad(name, why)
        for name, allowed in (("batching", BATCHINGS), ("precision", PRECISIONS),
                              ("vocab", VOCABS)):
            if getattr(self, name) not in allowed:
                bad(name, f"expected one of {allowed}")
        if not isinstance(self.task_hparams, dict):
            bad("task_hparams", "must be a mapping task -> {setting: value}")
        for task, settings in self.task_hparams.items():
            if task not in TASKS:
                bad("task_hparams", f"unknown task {task!r}; expected some of {TASKS}")
            if not isinstance(settings, dict) or set(settings) - set(TASK_SETTINGS):
                bad("task_hparams", f"{task}: settings must be a mapping with keys among "
                    f"{TASK_SETTINGS}")
            for name, value in settings.items():
                if (why := NUMBER_RULES[name].problem(value)) is not None:
                    bad("task_hparams", f"{task}.{name}={value!r}: {why}")
        for name in ("alphas_1d", "alphas_2d"):
            values = getattr(self, name)
            if not isinstance(values, list) or not values or any(
                    _ALPHA_RULE.problem(a) is not None for a in values):
                bad(name, "must be a non-empty list of (finite) numbers")
        for encoder in self.encoders:
            try:
                check_encoder_name(encoder)
            except (FileNotFoundError, ValueError) as err:
                bad("encoders", str(err))
        if self.scope not in SCOPES:
            bad("scope", f"expected one of {SCOPES}")
        if self.executor not in EXECUTORS:
            bad("executor", f"expected one of {EXECUTORS}")
        parse_remedies(self.remedies, self)
        known = {f.name for f in dataclasses.fields(SlurmOptions)}
        if not isinstance(self.slurm, dict) or set(self.slurm) - known:
            bad("slurm", f"must be a mapping with keys among {sorted(known)}")

    def pair_tuples(self) -> list[tuple[str, str]]:
        """Return the pairs as (source, target) tuples."""
        out = []
        for pair in self.pairs:
            parts = str(pair).split("-")
            if len(parts) != 2 or not all(p in LANGUAGES for p in parts):
                raise ValueError(
                    f"profile {self.name!r}: pairs: {pair!r} is not 'src-tgt' with codes from "
                    f"{LANGUAGES}"
                )
            out.append((parts[0], parts[1]))
        return out

    def pairs_2d_tuples(self) -> list[tuple[str, str]]:
        """Return the pairs that get a 2D sweep."""
        if self.pairs_2d == "all":
            return self.pair_tuples()
        return [tuple(p.split("-")) for p in self.pairs_2d]

    def seeds_2d_list(self) -> list[int]:
        """Return the seeds that get a 2D sweep."""
        return list(self.seeds) if self.seeds_2d == "all" else list(self.seeds_2d)

    def train_hparams(self, task: str | None = None) -> dict:
        """Return the TrainConfig keyword arguments this profile sets for `task` (its
        `task_hparams` applied; None: the profile-wide settings)."""
        hparams = {name: getattr(self, name) for name in PROFILE_SETTINGS}
        hparams["data_source"] = self.data
        return {**hparams, **self.task_hparams.get(task, {})}

    def remedy_settings(self):
        """Return the parsed `remedies` field (`remedy_settings.RemedySettings`), or None
        when the remedies are off for this profile."""
        return parse_remedies(self.remedies, self)

    def executor_options(self) -> dict:
        """Return the keyword arguments `jobs.run_jobs` needs for this profile's executor."""
        if self.executor != "slurm":
            return {}
        return {"slurm": SlurmOptions(**self.slurm)}

    def to_dict(self) -> dict:
        """Return the profile as plain data (for records and notebook output)."""
        return dataclasses.asdict(self)


def pair_grid(profile: Profile, *, pairs=None, seeds=None):
    """Yield (encoder, task, source, target, seed) for every cell of the profile's grid;
    `pairs` ((source, target) tuples) and `seeds` replace the profile's own (the 2D
    sweeps use `pairs_2d` and `seeds_2d`)."""
    pairs = profile.pair_tuples() if pairs is None else pairs
    seeds = profile.seeds if seeds is None else seeds
    for encoder in profile.encoders:
        for task in profile.tasks:
            for source, target in pairs:
                for seed in seeds:
                    yield encoder, task, source, target, seed


def plan_runs(profile: Profile, skip=frozenset()) -> list[TrainConfig]:
    """Return the distinct fine-tuning runs the profile needs, in a stable order; cells
    in `skip` ((encoder, task, source, target, seed) tuples whose results are all
    there, `resume.complete_cells`) need none. A monolingual run serves every pair that
    needs it, so it is planned once."""
    runs: dict[str, TrainConfig] = {}
    for cell in pair_grid(profile):
        if cell in skip:
            continue
        for config in pair_configs(*cell, **profile.train_hparams(cell[1])).values():
            runs.setdefault(config.run_hash(), config)
    return list(runs.values())


def available_profiles() -> list[str]:
    """Return the names of the bundled profiles."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def parse_override(text: str) -> tuple[str, object]:
    """Parse one `key=value` override (value in YAML); return (key, value)."""
    if "=" not in text:
        raise ValueError(f"override {text!r}: expected key=value")
    key, value = text.split("=", 1)
    key = key.strip()
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ValueError(f"override {text!r}: value is not valid YAML ({err})") from None
    if key in ("pairs", "encoders", "tasks", "seeds", "pairs_2d", "seeds_2d") and not isinstance(
        parsed, list
    ) and parsed != "all":
        parsed = [parsed]
    return key, parsed


def load_profile(name: str, overrides: dict | list[str] | None = None, **fields) -> Profile:
    """Return the named profile with `overrides` (dict or "key=value" strings) and `fields`
    applied; None values in `fields` mean "keep the profile's value" (papermill defaults).
    """
    data, source_of = _profile_fields(name)
    if isinstance(overrides, list | tuple):
        overrides = dict(parse_override(o) for o in overrides)
    changes = {**(overrides or {}), **{k: v for k, v in fields.items() if v is not None}}
    known = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    for key in list(data) + list(changes):
        if key not in known:
            source = source_of[key] if key in data else "overrides"
            raise ValueError(f"{source}: unknown profile field {key!r}; known: {sorted(known)}")
    data.update(changes)
    return Profile(name=name, **data)


def _profile_fields(name: str, chain: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Return the fields of the bundled profile `name` and, per field, the file that set
    it. A file's `base: OTHER` takes every field of profile OTHER first, then its own."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        where = f" (the base of {chain[-1]!r})" if chain else ""
        raise ValueError(f"unknown profile {name!r}{where}; available: {available_profiles()}")
    if name in chain:
        raise ValueError(f"{path}: `base` profiles form a cycle: {' -> '.join([*chain, name])}")
    with open(path) as handle:
        own = yaml.safe_load(handle) or {}
    base = own.pop("base", None)
    data, source_of = _profile_fields(base, (*chain, name)) if base else ({}, {})
    data.update(own)
    source_of.update(dict.fromkeys(own, path))
    return data, source_of


def hub_reachable() -> bool:
    """Return True when the Hugging Face hub answers (an HTTP HEAD to `HF_ENDPOINT`
    within `hub.PROBE_TIMEOUT_S` seconds, asked once per process) and the hub is not
    switched off (HF_HUB_OFFLINE)."""
    return reachable()


def default_profile() -> tuple[str, str]:
    """Return (profile name, reason): `paper` where a GPU and the hub are both available,
    else `demo`, the one that runs offline on a CPU."""
    # Imported here: torch takes seconds to load, and the other `xinterp` commands that
    # load profiles (profile, figures, plan) never need it.
    import torch

    if not torch.cuda.is_available():
        return "demo", "no GPU visible"
    if not hub_reachable():
        return "demo", "the Hugging Face hub is not reachable (or HF_HUB_OFFLINE is set)"
    return "paper", f"{torch.cuda.device_count()} GPU(s) and the hub are available"
