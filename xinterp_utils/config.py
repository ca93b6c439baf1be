"""What determines a fine-tuned model (`TrainConfig`) and the identity hashed from it.

A run is identified by what determines its weights: encoder, task, training languages,
seed and every hyper-parameter. The pair it serves is not part of it, so a monolingual
model is trained once and reused by every language pair that needs it. Free of torch:
profiles, planning and the `xinterp` command build configs without loading a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from .labels import TASKS
from .paths import encoder_slug
from .settings import BATCHINGS, PRECISIONS, VOCABS

# The three models of a (encoder, task, source, target, seed): source only, target only,
# source + target.
MODEL_ROLES = ("src", "tgt", "bi")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a fine-tuned model. Defaults are the paper's (App. A)."""

    encoder: str
    task: str
    train_langs: tuple[str, ...]
    seed: int = 0
    lr: float = 2e-5
    epochs: int = 5
    batch_size: int = 32
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0  # plain Adam, as in the paper
    max_grad_norm: float = 1.0
    # Caps for quick profiles: the first N examples of each split, in file order.
    max_train_examples: int | None = None
    max_dev_examples: int | None = None
    eval_batch_size: int = 64
    data_source: str | None = None  # None: offline manifest if present, else the hub
    # How an epoch's examples form batches (App. A does not say): "random" slices the
    # epoch's permutation; "length-grouped" forms batches of similar length from it (same
    # examples once per epoch, far less padding; `schedule.epoch_batches`).
    batching: str = "random"
    precision: str = "bf16-cuda"  # settings.PRECISIONS (precision.py)
    vocab: str = "full"  # "trimmed": embedding rows for the data's pieces only (vocab.py)
    evals_per_epoch: int = 1  # dev evaluations per epoch (learning curve); selection: epoch ends
    # Remedy runs (notebook 06; fewshot.py, silver.py). `init_from`: the run folder,
    # relative to the checkpoint root (so it names the run's hash), whose selected model
    # (encoder and head) this run starts from instead of the pretrained encoder and a
    # fresh head. `shots`: train on k examples drawn (seed `shot_seed`) from each
    # training language's capped set, `shot_passes` passes over them per epoch.
    # `silver_from`: the run folder whose predictions replace the gold labels of every
    # training language that run was not trained on.
    init_from: str | None = None
    shots: int | None = None
    shot_seed: int | None = None
    shot_passes: int = 1
    silver_from: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"TrainConfig.task={self.task!r}: expected one of {TASKS}")
        if isinstance(self.train_langs, str) or not self.train_langs:
            raise ValueError(
                f"TrainConfig.train_langs={self.train_langs!r}: give a non-empty tuple of codes"
            )
        object.__setattr__(self, "train_langs", tuple(self.train_langs))
        for name, allowed in (("batching", BATCHINGS), ("precision", PRECISIONS),
                              ("vocab", VOCABS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: expected one "
                                 f"of {allowed}")
        for name in ("epochs", "batch_size", "max_length", "eval_batch_size", "evals_per_epoch"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio={self.warmup_ratio!r}: must be in [0, 1)")
        if (self.shots is None) != (self.shot_seed is None):
            raise ValueError(f"TrainConfig.shots={self.shots!r}, shot_seed={self.shot_seed!r}: "
                             "give both or neither")
        if self.shots is not None and self.shots <= 0:
            raise ValueError(f"TrainConfig.shots={self.shots!r}: must be > 0")
        if self.shot_passes <= 0:
            raise ValueError(f"TrainConfig.shot_passes={self.shot_passes!r}: must be > 0")
        for name in ("init_from", "silver_from"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or value.startswith("/")
                                      or ".." in value.split("/")):
                raise ValueError(f"TrainConfig.{name}={value!r}: give a run folder relative "
                                 "to the checkpoint root")

    def to_dict(self) -> dict:
        """Return the config as JSON-ready data."""
        data = dataclasses.asdict(self)
        data["train_langs"] = list(self.train_langs)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild a config from `to_dict` output (unknown keys are an error)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {unknown}")
        return cls(**{**data, "train_langs": tuple(data["train_langs"])})

    def run_hash(self) -> str:
        """Return a 12-hex-digit content hash of the config (the run's identity).

        Settings added after runs were committed count only when they differ from the
        value that reproduces those runs (`IDENTITY_DEFAULTS`), so old ids stay valid.
        """
        blob = json.dumps(identity_hparams(self.to_dict()), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def run_dir(self, root: str | Path) -> Path:
        """Return the folder this run writes to under the checkpoint root `root`
        (layout: checkpoints.py)."""
        langs = "+".join(self.train_langs)
        return (Path(root) / encoder_slug(self.encoder) / self.task / langs
                / f"seed{self.seed}-{self.run_hash()}")


# Later settings and the value that reproduces runs made before they existed.
IDENTITY_DEFAULTS = {"batching": "random", "precision": "bf16-cuda", "vocab": "full",
                     "evals_per_epoch": 1, "init_from": None, "shots": None,
                     "shot_seed": None, "shot_passes": 1, "silver_from": None}


def identity_hparams(hparams: dict) -> dict:
    """Return `hparams` (TrainConfig fields) without the later settings that sit at their
    `IDENTITY_DEFAULTS` value: what run and sweep ids hash."""
    return {k: v for k, v in hparams.items()
            if k not in IDENTITY_DEFAULTS or v != IDENTITY_DEFAULTS[k]}


def pair_configs(
    encoder: str, task: str, source: str, target: str, seed: int, **hparams
) -> dict[str, TrainConfig]:
    """Return the three runs of one (encoder, task, source, target, seed).

    Keys ``src``, ``tgt``, ``bi`` (`MODEL_ROLES`): source only, target only, source +
    target (the training sets concatenated). All three share seed and hyper-parameters,
    hence the same pretrained weights and the same randomly initialised head.
    """
    if source == target:
        raise ValueError(f"source and target are both {source!r}")
    langs = {"src": (source,), "tgt": (target,), "bi": (source, target)}
    return {role: TrainConfig(encoder, task, langs[role], seed, **hparams)
            for role in MODEL_ROLES}


def with_train_fields(*names: str, after: str | None = None):
    """Return a class decorator, applied before `@dataclass`, that gives the class
    TrainConfig's fields `names` with TrainConfig's types and defaults, placed after its
    own field `after` (None: after all of them).

    Profiles and sweep specs carry some training settings of their own; taking them from
    TrainConfig keeps one definition of each setting and of its default.
    """
    declared = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise ValueError(f"with_train_fields: {unknown} are not TrainConfig fields")
    for name in names:
        if declared[name].default is dataclasses.MISSING:
            raise ValueError(f"with_train_fields: TrainConfig.{name} has no default")

    def add(cls):
        own = dict(inspect.get_annotations(cls))
        added = {name: declared[name].type for name in names}
        if after is None:
            merged = {**own, **added}
        else:
            if after not in own:
                raise ValueError(f"with_train_fields: {cls.__name__} has no field {after!r}")
            merged = {}
            for name, kind in own.items():
                merged[name] = kind
                if name == after:
                    merged.update(added)
        cls.__annotations__ = merged
        for name in names:
            setattr(cls, name, declared[name].default)
        return cls

    return add
