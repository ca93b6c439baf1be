"""A run's folder on disk: its layout, its record, and whether it is finished.

Layout of a run folder (``<checkpoints>/<encoder>/<task>/<langs>/seed<seed>-<hash>/``,
`config.TrainConfig.run_dir`):

- ``state.pt``          the full training state (model, Adam, schedule, RNG, position),
                        rewritten atomically every ``save_every_steps`` steps and each epoch
                        (train.py); deleted when the run finishes
- ``model.safetensors`` the selected model (best mean dev score of the training languages),
                        always full-vocabulary, whatever the run's `vocab`
- ``record.json``       everything that produced it; ``"status": "finished"`` marks a
                        completed run, which is then skipped rather than redone

Training writes these; fine-tuning tables, sweeps and geometry read them back here.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from . import __version__
from .config import TrainConfig
from .interpolate import IncompatibleEndpoints
from .model import TaskModel, build_run_model
from .paths import atomic_write
from .vocab import full_state_dict, trim_state_dict

RECORD_NAME = "record.json"
MODEL_NAME = "model.safetensors"
STATE_NAME = "state.pt"


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


def finished_record(run_dir: str | Path) -> dict | None:
    """Return the record of a finished run (status "finished") in `run_dir`, or None when
    the run has not started or is still in progress."""
    record = read_record(run_dir)
    return record if record is not None and record.get("status") == "finished" else None


def library_versions() -> dict:
    """Return the versions of Python and of the libraries that shape the results."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "xinterp": __version__,
            "numpy": np.__version__}


def parameter_fingerprint(model: torch.nn.Module) -> str:
    """Return a sha256 (16 hex digits) over all parameter names, shapes and bytes (of the
    full-vocabulary state: a trimmed model and its saved checkpoint agree)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(full_state_dict(model).items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def relative_run_dir(config: TrainConfig) -> str:
    """Return the run folder of `config` relative to any checkpoint root, as
    `init_from` / `silver_from` name it (e.g. ``offline/pos/en/seed1-<hash>``)."""
    return config.run_dir(".").as_posix()


def finished_model_path(checkpoint_root: str | Path, relative_run_dir: str) -> Path:
    """Return the selected model file of the finished run at `relative_run_dir` (under
    `checkpoint_root`); raise FileNotFoundError naming it when the run is not finished,
    or ValueError when its record's run id is not the hash the folder name carries."""
    run_dir = Path(checkpoint_root) / relative_run_dir
    record = finished_record(run_dir)
    if record is None:
        raise FileNotFoundError(f"{run_dir}: the run this one starts from (or is labelled "
                                "by) is not finished; train it first (notebook 01)")
    if not run_dir.name.endswith(f"-{record['run_id']}"):
        raise ValueError(f"{run_dir}: record.json says run {record['run_id']}, the folder "
                         "name another")
    return run_dir / MODEL_NAME


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


def load_run_model(config: TrainConfig, checkpoint_root: str | Path, tokenizer) -> TaskModel:
    """Return the selected model of a finished run (trimmed as the config says), on the CPU."""
    run_dir = config.run_dir(checkpoint_root)
    if not (run_dir / MODEL_NAME).is_file():
        raise FileNotFoundError(f"{run_dir / MODEL_NAME}: no model; train the run first")
    model = build_run_model(config, tokenizer)
    load_model_weights(model, run_dir / MODEL_NAME)
    return model


def load_endpoints(configs: dict[str, TrainConfig],
                   checkpoint_root: str | Path) -> tuple[dict, dict]:
    """Return ({role: state dict}, {role: record}) of a sweep's three finished runs
    (`configs`: role → config, as `SweepSpec.configs()` gives), full-vocabulary, on the CPU.

    Refuses end-points whose encoder (weights and tokenizer) differ, naming the runs.
    """
    states, records = {}, {}
    for role, config in configs.items():
        run_dir = config.run_dir(checkpoint_root)
        record = finished_record(run_dir)
        if record is None:
            raise FileNotFoundError(f"{run_dir}: θ_{role} is not trained; run notebook 01 first")
        states[role] = load_file(str(run_dir / MODEL_NAME))
        records[role] = record
    fingerprints = {role: r["encoder_fingerprint"] for role, r in records.items()}
    if len(set(fingerprints.values())) != 1:
        raise IncompatibleEndpoints(f"end-points come from different encoders: {fingerprints}")
    return states, records
