"""Fine-tuning one model (App. A of the paper), resumable at any step.

`train(config, checkpoint_root)` runs the loop: resume from the run's saved state, then
epochs of optimiser steps with dev evaluations (learning-curve points; model selection
at epoch ends), then the run's record. What a run is (`config.TrainConfig`), where it
lives and how its record and weights are written (`checkpoints`), and the order of its
batches and its learning rate (`schedule`) are in their own modules.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoints import (
    MODEL_NAME,
    STATE_NAME,
    finished_model_path,
    finished_record,
    library_versions,
    load_model_weights,
    load_run_model,
    parameter_fingerprint,
    save_model,
    write_record,
)
from .config import TrainConfig
from .data import load_split
from .embedding_store import store_dir
from .encoders import check_max_length, encoder_fingerprint, load_tokenizer
from .evaluate import evaluate
from .features import batches, collate, featurize
from .model import TaskModel, build_run_model
from .paths import atomic_write, remove_stale_temporaries
from .precision import autocast_context, autocast_dtype
from .progress import tqdm
from .schedule import epoch_batches, eval_steps, linear_warmup_decay
from .vocab import check_covered, kept_fingerprint, trimmed_kept

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
            # remedy_data builds on load_features (fewshot, silver): importing it at the
            # top would be a cycle.
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


class DevSets:
    """A run's dev sets, featurised on first use and kept: a run evaluates them at every
    learning-curve point, and reading them back each time would cost more than a small
    model's evaluation."""

    def __init__(self, config: TrainConfig, tokenizer, kept=None):
        self.config, self.tokenizer, self.kept = config, tokenizer, kept
        self._loaded: dict[str, tuple[list[dict], str]] = {}

    def features(self, lang: str) -> tuple[list[dict], str]:
        """Return (features, data fingerprint) of `lang`'s dev set, capped as the config says."""
        if lang not in self._loaded:
            feats, raw = load_features(self.config, self.tokenizer, lang, "dev", kept=self.kept)
            self._loaded[lang] = (feats, raw.fingerprint)
        return self._loaded[lang]


def dev_scores(model: TaskModel, config: TrainConfig, tokenizer, langs, device: str,
               dev_sets: DevSets | None = None) -> dict:
    """Return {lang: evaluate(...) result, plus the dev set's `fingerprint`} of `model` on
    each language's (capped) dev set, in the run's precision (`config.precision` on
    `device`); scores are fractions in [0, 1]. `dev_sets` keeps the features between calls."""
    dev_sets = dev_sets or DevSets(config, tokenizer, trimmed_kept(model))
    autocast = autocast_dtype(config.precision, device)
    scores = {}
    for lang in langs:
        feats, fingerprint = dev_sets.features(lang)
        result = evaluate(model, batches(feats, config.eval_batch_size, tokenizer.pad_token_id),
                          config.task, device=device, autocast_dtype=autocast, progress=False)
        result["fingerprint"] = fingerprint
        scores[lang] = result
    return scores


# --------------------------------------------------------------------------- state


def default_device() -> str:
    """Return "cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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


@dataclass
class Position:
    """Where a run is: epochs done, steps done in this epoch and in all, the last loss and
    the training loss summed since the last learning-curve point (state.pt keeps it as a
    dict with these keys)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    last_loss: float | None = None
    loss_sum: float = 0.0
    loss_steps: int = 0


class _Training:
    """The mutable state of one run between saves: model, optimiser, schedule, position
    in the epochs, the best model so far and the learning curve."""

    def __init__(self, config: TrainConfig, run_dir: Path, model: TaskModel,
                 steps_per_epoch: int, embedding_store: Path):
        self.config, self.run_dir, self.model = config, run_dir, model
        self.embedding_store = embedding_store
        self.steps_per_epoch = steps_per_epoch
        self.optimizer = make_optimizer(model, config)
        self.total_steps = steps_per_epoch * config.epochs
        self.scheduler = linear_warmup_decay(self.optimizer, self.total_steps,
                                             config.warmup_ratio)
        self.position = Position()
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
        self.position, self.best = Position(**state["position"]), state["best"]
        self.history, self.init_fingerprint = state["history"], state["init_fingerprint"]
        _set_rng_state(state["rng"])

    def save(self) -> None:
        """Write the full training state atomically (model, Adam, schedule, RNG, curve)."""
        state = {"config": self.config.to_dict(), "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(),
                 "position": dataclasses.asdict(self.position),
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
        pos.step_in_epoch += 1
        pos.global_step += 1
        pos.last_loss = value
        pos.loss_sum += value
        pos.loss_steps += 1
        return value

    def at_epoch_end(self) -> bool:
        """Return True when the last step taken ended an epoch."""
        return self.position.step_in_epoch == self.steps_per_epoch

    def evaluate(self, scores: dict, *, select: bool) -> None:
        """Add a learning-curve point (dev scores `scores`, mean training loss since the
        last point); with `select` (an epoch's end), keep the model if it is the best so
        far."""
        pos = self.position
        mean = float(np.mean([s["score"] for s in scores.values()]))
        self.history.append({
            "epoch": pos.epoch, "step": pos.global_step,
            "epochs_done": round(pos.global_step / self.steps_per_epoch, 6),
            "loss": pos.last_loss,
            "mean_loss": pos.loss_sum / max(1, pos.loss_steps),
            "dev": {lang: s["score"] for lang, s in scores.items()}, "dev_mean": mean,
            "selection": select,
        })
        pos.loss_sum, pos.loss_steps = 0.0, 0
        self.model.train()
        if select and mean > self.best["score"]:
            # The record reports these results: the saved weights are exactly these.
            self.best = {"score": mean, "epoch": pos.epoch, "dev_scores": scores,
                         "model_fingerprint": parameter_fingerprint(self.model)}
            save_model(self.model, self.run_dir / MODEL_NAME,
                       {"run": self.config.run_hash(), "epoch": pos.epoch},
                       embedding_store=self.embedding_store)

    def end_epoch(self) -> None:
        """Move to the next epoch; save the state unless the run is done (the record
        follows then)."""
        self.position.epoch += 1
        self.position.step_in_epoch = 0
        if self.position.epoch < self.config.epochs:
            self.save()


# --------------------------------------------------------------------------- the loop


def _on_device(batch: dict, device: str) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _progress_bar(config: TrainConfig, run: _Training, progress: bool):
    return tqdm(total=run.total_steps, initial=run.position.global_step,
                disable=not progress, unit="step", dynamic_ncols=True,
                desc=f"{config.task} {'+'.join(config.train_langs)} seed {config.seed}")


def _record(config: TrainConfig, run: _Training, *, run_dir: Path, fingerprints: dict,
            train_examples: int, device: str, autocast, kept, seconds: float) -> dict:
    """Return the record.json of a run that has just finished."""
    return {
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
        "train_examples": train_examples,
        "total_steps": run.total_steps,
        "device": device,
        "autocast": str(autocast) if autocast else None,
        "vocab": ({"kept": len(kept), "fingerprint": kept_fingerprint(kept)}
                  if kept is not None else "full"),
        "versions": library_versions(),
        "seconds_last_call": round(seconds, 1),
    }


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
    state saved, so a later call continues; it returns {"status": "interrupted",
    "position": ...} then.
    """
    device = device or default_device()
    run_dir = config.run_dir(checkpoint_root)
    record = finished_record(run_dir)
    if record is not None:
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

    # Resume: the head was drawn from the seed in build_run_model; the dropout stream
    # starts here, and a saved state replaces all of it (RNG included).
    model.to(device)
    run = _Training(config, run_dir, model, math.ceil(len(train_feats) / config.batch_size),
                    store_dir(checkpoint_root, config.encoder))
    torch.manual_seed(config.seed)
    run.resume()

    # Epochs: steps, learning-curve points, selection at each epoch's end.
    lengths = [len(f["input_ids"]) for f in train_feats]
    dev_sets = DevSets(config, tokenizer, kept)
    autocast = autocast_dtype(config.precision, device)
    curve_points = eval_steps(run.steps_per_epoch, config.evals_per_epoch)
    pos = run.position
    started, steps_this_call = time.time(), 0
    bar = _progress_bar(config, run, progress)
    while pos.epoch < config.epochs:
        plan = epoch_batches(lengths, config.batch_size, config.seed, pos.epoch, config.batching)
        model.train()
        while pos.step_in_epoch < run.steps_per_epoch:
            tick = time.time()
            batch = _on_device(collate([train_feats[i] for i in plan[pos.step_in_epoch]],
                                       tokenizer.pad_token_id), device)
            loss = run.step(batch, autocast)
            steps_this_call += 1
            # refresh=False: the bar redraws at its own pace (a log file gets few lines).
            tokens = int(batch["attention_mask"].sum())
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False,
                            tok_s=f"{tokens / max(time.time() - tick, 1e-9):.0f}")
            bar.update(1)
            if pos.step_in_epoch in curve_points:
                scores = dev_scores(model, config, tokenizer, config.train_langs, device,
                                    dev_sets)
                run.evaluate(scores, select=run.at_epoch_end())
                if not run.at_epoch_end():
                    run.save()
            elif pos.global_step % save_every_steps == 0:
                run.save()
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                run.save()
                bar.close()
                return {"status": "interrupted", "position": dataclasses.asdict(pos)}
        run.end_epoch()
    bar.close()

    # Record: the selected model's scores and everything that produced it; the large
    # optimizer state is no longer needed.
    record = _record(config, run, run_dir=run_dir, fingerprints=fingerprints,
                     train_examples=len(train_feats), device=device, autocast=autocast,
                     kept=kept, seconds=time.time() - started)
    if remedy:  # only remedy runs have it: other records keep their keys
        record["remedy"] = remedy
    write_record(run_dir, record)
    run.state_path.unlink(missing_ok=True)
    return record


def ensure_dev_scores(
    config: TrainConfig, checkpoint_root: str | Path, langs, *, device: str | None = None
) -> dict:
    """Return the finished run's record with dev scores for every language in `langs`.

    Scores missing from the record are computed with the selected model and saved, so a
    monolingual model serves every pair's target language without being retrained.
    """
    device = device or default_device()
    run_dir = config.run_dir(checkpoint_root)
    record = finished_record(run_dir)
    if record is None:
        raise FileNotFoundError(f"{run_dir}: run not finished; train it first")
    missing = [lang for lang in langs if lang not in record["dev_scores"]]
    if missing:
        tokenizer = load_tokenizer(config.encoder)
        model = load_run_model(config, checkpoint_root, tokenizer).to(device)
        record["dev_scores"].update(dev_scores(model, config, tokenizer, missing, device))
        write_record(run_dir, record)
    return record
