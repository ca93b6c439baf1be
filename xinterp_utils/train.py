"""Fine-tuning one model (App. A of the paper) with resumable checkpoints.

A run is identified by what determines its weights: encoder, task, training
languages, seed and every hyper-parameter. The pair it serves is not part of it, so a
monolingual model is trained once and reused by every language pair that needs it.

Layout of a run folder (``<checkpoints>/<encoder>/<task>/<langs>/seed<seed>-<hash>/``):

- ``state.pt``          the full training state (model, Adam, schedule, RNG, position),
                        rewritten atomically every ``save_every_steps`` steps and each epoch
- ``model.safetensors`` the selected model (best mean dev score of the training languages)
- ``record.json``       everything that produced it; ``"status": "finished"`` marks a
                        completed run, which is then skipped rather than redone
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from . import __version__
from .data import load_split
from .encoders import check_max_length, encoder_fingerprint, load_tokenizer
from .evaluate import evaluate
from .features import batches, collate, featurize
from .labels import TASKS
from .model import TaskModel, build_task_model
from .paths import atomic_write, remove_stale_temporaries
from .precision import autocast_context, autocast_dtype
from .progress import tqdm
from .settings import BATCHINGS, PRECISIONS, VOCABS
from .vocab import (
    check_covered,
    full_state_dict,
    kept_fingerprint,
    kept_ids,
    trim_embeddings,
    trim_state_dict,
    trimmed_kept,
)

RECORD_NAME = "record.json"
MODEL_NAME = "model.safetensors"
STATE_NAME = "state.pt"


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
    # examples once per epoch, far less padding; `epoch_batches`).
    batching: str = "random"
    precision: str = "bf16-cuda"  # precision.PRECISIONS
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
        """Return the folder this run writes to under the checkpoint root `root`."""
        encoder_slug = self.encoder.strip("/").replace("/", "--")
        langs = "+".join(self.train_langs)
        return Path(root) / encoder_slug / self.task / langs / f"seed{self.seed}-{self.run_hash()}"


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

    Keys ``src``, ``tgt``, ``bi``: source only, target only, source + target (the
    training sets concatenated). All three share seed and hyper-parameters, hence the
    same pretrained weights and the same randomly initialised head.
    """
    if source == target:
        raise ValueError(f"source and target are both {source!r}")
    make = lambda langs: TrainConfig(encoder, task, langs, seed, **hparams)
    return {"src": make((source,)), "tgt": make((target,)), "bi": make((source, target))}


# --------------------------------------------------------------------------- data


def _capped(split, cap: int | None):
    if cap is None or cap >= len(split.examples):
        return split
    return dataclasses.replace(
        split, examples=split.examples[:cap], fingerprint=f"{split.fingerprint}:first{cap}"
    )


def load_features(config: TrainConfig, tokenizer, lang: str, split: str, kept=None):
    """Return (features, split) for one language's split, capped as the config says.

    With `kept` (a trimmed vocabulary's ids) a feature holding any other piece is refused
    (`vocab.check_covered`), never mapped to `<unk>`.
    """
    check_max_length(config.encoder, config.max_length)
    raw = load_split(config.task, lang, split, source=config.data_source)
    cap = config.max_train_examples if split == "train" else config.max_dev_examples
    raw = _capped(raw, cap)
    feats = featurize(raw, tokenizer, max_length=config.max_length, train=(split == "train"))
    if kept is not None:
        check_covered(feats, kept, raw, tokenizer)
    return feats, raw


# --------------------------------------------------------------------------- schedule


def linear_warmup_decay(optimizer, total_steps: int, warmup_ratio: float):
    """Return a LambdaLR: linear warm-up over `warmup_ratio` of the steps, then linear decay to 0."""
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# Length-grouped batching sorts chunks of this many batches (as transformers'
# group_by_length does): large enough to cut padding, small enough to keep batches random.
MEGABATCH = 50


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


# --------------------------------------------------------------------------- state


def parameter_fingerprint(model: torch.nn.Module) -> str:
    """Return a sha256 (16 hex digits) over all parameter names, shapes and bytes (of the
    full-vocabulary state: a trimmed model and its saved checkpoint agree)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(full_state_dict(model).items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(model: torch.nn.Module, path: Path, metadata: dict | None = None) -> None:
    """Write the model's state dict to `path` as safetensors, atomically (full vocabulary:
    a trimmed embedding is written back into the pretrained matrix)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in full_state_dict(model).items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    with atomic_write(path) as handle:
        handle.write(safetensors_bytes(tensors, metadata=meta))


def load_model_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `model` (strict: every key must match; a trimmed
    embedding takes its kept rows of the saved full matrix)."""
    model.load_state_dict(trim_state_dict(load_file(str(path)), model), strict=True)


def read_record(run_dir: str | Path) -> dict | None:
    """Return the run's record.json as a dict, or None if the run has none yet."""
    path = Path(run_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def write_record(run_dir: Path, record: dict) -> None:
    """Write record.json atomically."""
    with atomic_write(run_dir / RECORD_NAME, "w") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)


def library_versions() -> dict:
    """Return the versions of Python and of the libraries that shape the results."""
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "xinterp": __version__,
            "numpy": np.__version__}


# --------------------------------------------------------------------------- training


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Return Adam(W) over all parameters with the config's learning rate and weight decay.

    The fused kernel does one pass over each tensor instead of eight; on this 2-core CPU
    it made the update of the 19M-parameter embedding matrix several times cheaper.
    """
    try:
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)


def default_device() -> str:
    """Return "cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_run_model(config: TrainConfig, tokenizer) -> TaskModel:
    """Return the run's initial TaskModel (pretrained encoder, head drawn from the seed),
    with its embedding trimmed to the data's pieces when ``config.vocab == "trimmed"``."""
    model = build_task_model(config.encoder, config.task, config.seed)
    if config.vocab == "trimmed":
        trim_embeddings(model.encoder, kept_ids(tokenizer, config.task, config.data_source))
    return model


def dev_scores(model: TaskModel, config: TrainConfig, tokenizer, langs, device: str) -> dict:
    """Return {lang: evaluate(...) result} of `model` on each language's (capped) dev set,
    in the run's precision (`config.precision` on `device`)."""
    scores = {}
    kept = trimmed_kept(model)
    for lang in langs:
        feats, raw = load_features(config, tokenizer, lang, "dev", kept=kept)
        result = evaluate(
            model, batches(feats, config.eval_batch_size, tokenizer.pad_token_id),
            config.task, device=device,
            autocast_dtype=autocast_dtype(config.precision, device), progress=False,
        )
        result["fingerprint"] = raw.fingerprint
        scores[lang] = result
    return scores


def eval_steps(steps_per_epoch: int, evals_per_epoch: int) -> list[int]:
    """Return the steps within an epoch (1-based counts of steps done) after which the
    dev sets are evaluated: `evals_per_epoch` evenly spaced points, the last one the
    epoch's end (the only one that selects the model)."""
    points = {max(1, round(k * steps_per_epoch / evals_per_epoch))
              for k in range(1, evals_per_epoch + 1)}
    return sorted(points)


class _Training:
    """The mutable state of one run between saves: model, optimiser, schedule, position
    in the epochs, the best model so far and the learning curve."""

    def __init__(self, config: TrainConfig, run_dir: Path, model: TaskModel,
                 steps_per_epoch: int, device: str):
        self.config, self.run_dir, self.model = config, run_dir, model
        self.optimizer = make_optimizer(model, config)
        self.total_steps = steps_per_epoch * config.epochs
        self.scheduler = linear_warmup_decay(self.optimizer, self.total_steps,
                                             config.warmup_ratio)
        self.position = {"epoch": 0, "step_in_epoch": 0, "global_step": 0,
                         "last_loss": None, "loss_sum": 0.0, "loss_steps": 0}
        self.best = {"score": -math.inf, "epoch": None}
        self.history: list[dict] = []
        self.init_fingerprint = parameter_fingerprint(model)
        self.state_path = run_dir / STATE_NAME

    def resume(self) -> None:
        """Continue from the run's saved state, when there is one."""
        if not self.state_path.is_file():
            return
        state = torch.load(self.state_path, map_location="cpu", weights_only=False)
        if TrainConfig.from_dict(state["config"]).run_hash() != self.config.run_hash():
            raise ValueError(f"{self.state_path}: saved for a different config; delete it "
                             "to restart")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.position, self.best = state["position"], state["best"]
        self.history, self.init_fingerprint = state["history"], state["init_fingerprint"]
        _set_rng_state(state["rng"])

    def save(self) -> None:
        """Write the full training state atomically (model, Adam, schedule, RNG, curve)."""
        state = {"config": self.config.to_dict(), "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "position": self.position,
                 "best": self.best, "history": self.history,
                 "init_fingerprint": self.init_fingerprint, "rng": _rng_state()}
        with atomic_write(self.state_path) as handle:
            torch.save(state, handle)

    def step(self, batch: dict, autocast) -> float:
        """Take one optimiser step on `batch`; return its loss."""
        with autocast_context(batch["input_ids"].device, autocast):
            loss, _ = self.model(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = float(loss.item())
        pos = self.position
        pos["step_in_epoch"] += 1
        pos["global_step"] += 1
        pos["last_loss"] = value
        pos["loss_sum"] += value
        pos["loss_steps"] += 1
        return value

    def evaluate(self, scores: dict, *, select: bool, steps_per_epoch: int) -> None:
        """Add a learning-curve point (dev scores `scores`, mean training loss since the
        last point); at an epoch's end, keep the model if it is the best so far."""
        pos = self.position
        mean = float(np.mean([s["score"] for s in scores.values()]))
        self.history.append({
            "epoch": pos["epoch"], "step": pos["global_step"],
            "epochs_done": round(pos["global_step"] / steps_per_epoch, 6),
            "loss": pos["last_loss"],
            "mean_loss": pos["loss_sum"] / max(1, pos["loss_steps"]),
            "dev": {lang: s["score"] for lang, s in scores.items()}, "dev_mean": mean,
            "selection": select,
        })
        pos["loss_sum"], pos["loss_steps"] = 0.0, 0
        self.model.train()
        if select and mean > self.best["score"]:
            # The record reports these results: the saved weights are exactly these.
            self.best = {"score": mean, "epoch": pos["epoch"], "dev_scores": scores,
                         "model_fingerprint": parameter_fingerprint(self.model)}
            save_model(self.model, self.run_dir / MODEL_NAME,
                       {"run": self.config.run_hash(), "epoch": pos["epoch"]})


def _training_features(config: TrainConfig, tokenizer, kept, checkpoint_root=None):
    """Return (features of all training languages, data fingerprints, remedy notes).

    A remedy run (`shots`, `silver_from`) takes its data from `remedy_data` (the drawn
    shots, or silver labels) and notes what it used (shot indices, label agreement).
    """
    features, fingerprints, notes = [], {}, {}
    for lang in config.train_langs:
        if config.shots is None and config.silver_from is None:
            feats, raw = load_features(config, tokenizer, lang, "train", kept=kept)
        else:
            from .remedy_data import remedy_features

            feats, raw, note = remedy_features(config, tokenizer, lang, checkpoint_root,
                                               kept=kept)
            if note:
                notes[lang] = note
        features.extend(feats)
        fingerprints[f"{lang}/train"] = raw.fingerprint
        if raw.substitute:
            fingerprints[f"{lang}/train:substitute"] = raw.substitute
    return features, fingerprints, notes


def train(
    config: TrainConfig,
    checkpoint_root: str | Path,
    *,
    device: str | None = None,
    save_every_steps: int = 500,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> dict:
    """Fine-tune one model, resuming from its last saved state; return its record.

    A finished run (record with status "finished") is returned as is. The selected
    model is the one with the best mean dev score over the training languages, checked
    after every epoch (`evals_per_epoch` adds learning-curve points between). 
    `stop_after_steps` ends the process's work early (tests, time-boxed jobs) with the
    state saved, so a later call continues.
    """
    device = device or default_device()
    run_dir = config.run_dir(checkpoint_root)
    record = read_record(run_dir)
    if record is not None and record.get("status") == "finished":
        return record

    # Everything that can fail on bad input (tokenizer, data, encoder, a max_length past
    # the encoder's positions) comes before the run folder exists.
    check_max_length(config.encoder, config.max_length)
    tokenizer = load_tokenizer(config.encoder)
    model = build_run_model(config, tokenizer)
    if config.init_from is not None:  # a remedy run continues from another run's model
        load_model_weights(model, finished_model_path(checkpoint_root, config.init_from))
    kept = trimmed_kept(model)
    train_feats, fingerprints, remedy = _training_features(config, tokenizer, kept,
                                                           checkpoint_root)
    if not train_feats:
        raise ValueError(f"{run_dir}: no training examples for {config.train_langs}")
    run_dir.mkdir(parents=True, exist_ok=True)
    # A run killed while saving leaves its temporary file (GBs for large models) behind.
    remove_stale_temporaries(run_dir)

    model.to(device)
    lengths = [len(f["input_ids"]) for f in train_feats]
    steps_per_epoch = math.ceil(len(train_feats) / config.batch_size)
    run = _Training(config, run_dir, model, steps_per_epoch, device)
    torch.manual_seed(config.seed)  # dropout stream, after the head was initialised
    run.resume()

    autocast = autocast_dtype(config.precision, device)
    checkpoints = eval_steps(steps_per_epoch, config.evals_per_epoch)
    pad_id = tokenizer.pad_token_id
    started = time.time()
    steps_this_call = 0
    bar = tqdm(total=run.total_steps, initial=run.position["global_step"],
               disable=not progress, unit="step", dynamic_ncols=True,
               desc=f"{config.task} {'+'.join(config.train_langs)} seed {config.seed}")
    pos = run.position
    while pos["epoch"] < config.epochs:
        epoch_plan = epoch_batches(lengths, config.batch_size, config.seed, pos["epoch"],
                                   config.batching)
        model.train()
        while pos["step_in_epoch"] < steps_per_epoch:
            tick = time.time()
            batch = collate([train_feats[i] for i in epoch_plan[pos["step_in_epoch"]]], pad_id)
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss = run.step(batch, autocast)
            steps_this_call += 1
            tokens = int(batch["attention_mask"].sum())
            # refresh=False: the bar redraws at its own pace (a log file gets few lines).
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False,
                            tok_s=f"{tokens / max(time.time() - tick, 1e-9):.0f}")
            bar.update(1)
            if pos["step_in_epoch"] in checkpoints:
                at_end = pos["step_in_epoch"] == steps_per_epoch
                scores = dev_scores(model, config, tokenizer, config.train_langs, device)
                run.evaluate(scores, select=at_end, steps_per_epoch=steps_per_epoch)
                if not at_end:
                    run.save()
            elif pos["global_step"] % save_every_steps == 0:
                run.save()
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                run.save()
                bar.close()
                return {"status": "interrupted", "position": dict(pos)}
        pos.update(epoch=pos["epoch"] + 1, step_in_epoch=0)
        if pos["epoch"] < config.epochs:  # after the last epoch the record follows
            run.save()
    bar.close()

    record = {
        "status": "finished",
        "run_id": f"{config.run_hash()}",
        "run_dir": str(run_dir),
        "config": config.to_dict(),
        "encoder_fingerprint": encoder_fingerprint(config.encoder),
        "init_fingerprint": run.init_fingerprint,
        "model_fingerprint": run.best["model_fingerprint"],
        "data_fingerprints": fingerprints,
        "best_epoch": run.best["epoch"],
        "best_dev_mean": run.best["score"],
        "history": run.history,
        "dev_scores": dict(run.best["dev_scores"]),
        "train_examples": len(train_feats),
        "total_steps": run.total_steps,
        "device": device,
        "autocast": str(autocast) if autocast else None,
        "vocab": ({"kept": len(kept), "fingerprint": kept_fingerprint(kept)}
                  if kept is not None else "full"),
        "versions": library_versions(),
        "seconds_last_call": round(time.time() - started, 1),
    }
    if remedy:  # only remedy runs have it: other records keep their keys
        record["remedy"] = remedy
    write_record(run_dir, record)
    run.state_path.unlink(missing_ok=True)  # the optimizer state is large and no longer needed
    return record


def finished_model_path(checkpoint_root: str | Path, relative_run_dir: str) -> Path:
    """Return the selected model file of the finished run at `relative_run_dir` (under
    `checkpoint_root`); raise FileNotFoundError naming it when the run is not finished,
    or ValueError when its record's run id is not the hash the folder name carries."""
    run_dir = Path(checkpoint_root) / relative_run_dir
    record = read_record(run_dir)
    if record is None or record.get("status") != "finished":
        raise FileNotFoundError(f"{run_dir}: the run this one starts from (or is labelled "
                                "by) is not finished; train it first (notebook 01)")
    if not run_dir.name.endswith(f"-{record['run_id']}"):
        raise ValueError(f"{run_dir}: record.json says run {record['run_id']}, the folder "
                         "name another")
    return run_dir / MODEL_NAME


def relative_run_dir(config: TrainConfig) -> str:
    """Return the run folder of `config` relative to any checkpoint root, as
    `init_from` / `silver_from` name it (e.g. ``offline/pos/en/seed1-<hash>``)."""
    return config.run_dir(".").as_posix()


def load_run_model(config: TrainConfig, checkpoint_root: str | Path, tokenizer) -> TaskModel:
    """Return the selected model of a finished run (trimmed as the config says), on the CPU."""
    run_dir = config.run_dir(checkpoint_root)
    if not (run_dir / MODEL_NAME).is_file():
        raise FileNotFoundError(f"{run_dir / MODEL_NAME}: no model; train the run first")
    model = build_run_model(config, tokenizer)
    load_model_weights(model, run_dir / MODEL_NAME)
    return model


def ensure_dev_scores(
    config: TrainConfig, checkpoint_root: str | Path, langs, *, device: str | None = None
) -> dict:
    """Return the finished run's record with dev scores for every language in `langs`.

    Scores missing from the record are computed with the selected model and saved, so a
    monolingual model serves every pair's target language without being retrained.
    """
    device = device or default_device()
    run_dir = config.run_dir(checkpoint_root)
    record = read_record(run_dir)
    if record is None or record.get("status") != "finished":
        raise FileNotFoundError(f"{run_dir}: run not finished; train it first")
    missing = [lang for lang in langs if lang not in record["dev_scores"]]
    if missing:
        tokenizer = load_tokenizer(config.encoder)
        model = load_run_model(config, checkpoint_root, tokenizer).to(device)
        record["dev_scores"].update(dev_scores(model, config, tokenizer, missing, device))
        write_record(run_dir, record)
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m xinterp_utils.train CONFIG.json CHECKPOINT_ROOT [options]``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("config", help="JSON file with a TrainConfig")
    parser.add_argument("checkpoint_root")
    parser.add_argument("--device", default=None)
    parser.add_argument("--save-every-steps", type=int, default=500)
    parser.add_argument("--stop-after-steps", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    record = train(config, args.checkpoint_root, device=args.device,
                   save_every_steps=args.save_every_steps,
                   stop_after_steps=args.stop_after_steps, progress=not args.no_progress)
    print(json.dumps({"status": record["status"], "run_dir": str(config.run_dir(
        args.checkpoint_root))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
