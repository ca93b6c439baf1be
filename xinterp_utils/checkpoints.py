"""A run's folder on disk: its layout, its record, and whether it is finished.

Layout of a run folder (``<checkpoints>/<encoder>/<task>/<langs>/seed<seed>-<hash>/``,
`config.TrainConfig.run_dir`):

- ``state.pt``          the full training state (model, Adam, schedule, RNG, position),
                        rewritten atomically every ``save_every_steps`` steps and each epoch
                        (train.py); deleted when the run finishes
- ``model.safetensors`` the selected model (best mean dev score of the training languages);
                        a trimmed run's file holds only the embedding rows training moved,
                        the pretrained matrix lying once in
                        ``<checkpoints>/<encoder>/pretrained-embeddings/``
                        (`embedding_store.py`); `read_model_state` gives the full state
- ``record.json``       everything that produced it; ``"status": "finished"`` marks a
                        completed run, which is then skipped rather than redone

Training writes these; fine-tuning tables, sweeps and geometry read them back here.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save as safetensors_bytes

from . import __version__
from .config import TrainConfig
from .embedding_store import (
    file_metadata,
    is_compact,
    pack,
    read_model_state,
    store_dir,
    tensor_digest,
)
from .encoders import load_encoder
from .interpolate import IncompatibleEndpoints
from .model import TaskModel, build_run_model
from .paths import atomic_write
from .vocab import full_state_dict, trim_state_dict, trimmed_modules

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
    return state_fingerprint(full_state_dict(model))


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """Return `parameter_fingerprint` of a state dict (e.g. a model file read back)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
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


def save_model(model: torch.nn.Module, path: Path, metadata: dict | None = None, *,
               embedding_store: Path | None = None) -> None:
    """Write the model's full-vocabulary state dict to `path` as safetensors, atomically.

    With `embedding_store` (`embedding_store.store_dir`), each trimmed embedding is
    written as the rows that differ from its pretrained matrix, which is stored once in
    that folder; without, the file holds every row."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in full_state_dict(model).items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    modules = trimmed_modules(model) if embedding_store is not None else {}
    if modules:
        bases = {key: (module.base, module.base_digest()) for key, module in modules.items()}
        tensors, compact_meta = pack(tensors, bases, embedding_store, Path(path))
        meta.update(compact_meta)
    with atomic_write(path) as handle:
        handle.write(safetensors_bytes(tensors, metadata=meta))


def load_model_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a model file into `model` (strict: every key must match; a trimmed embedding
    takes its kept rows of the full matrix)."""
    model.load_state_dict(trim_state_dict(read_model_state(path), model), strict=True)


def compact_model_file(run_dir: Path, checkpoint_root: str | Path,
                       pretrained: torch.Tensor | None) -> tuple[int, int] | None:
    """Rewrite the finished trimmed run's full-sized model file in `run_dir` as a compact
    one, `pretrained` being its encoder's input embedding matrix; return (bytes before,
    bytes after), or None when there is nothing to do (not finished, full vocabulary, or
    already compact).

    The new file replaces the old only once it reads back bit for bit equal to it, with
    the fingerprint the run's record holds; else ValueError names the run."""
    record = finished_record(run_dir)
    path = run_dir / MODEL_NAME
    if record is None or record.get("vocab", "full") == "full" or is_compact(path):
        return None
    state = read_model_state(path)
    if state_fingerprint(state) != record["model_fingerprint"]:
        raise ValueError(f"{path}: does not hold the model its record describes")
    key = _embedding_key(state, pretrained, path)
    store = store_dir(checkpoint_root, record["config"]["encoder"])
    tensors, compact_meta = pack(state, {key: (pretrained, tensor_digest(pretrained))},
                                 store, path)
    meta = {**file_metadata(path), **compact_meta}
    before = path.stat().st_size
    check = path.with_name(f".{MODEL_NAME}.compact.tmp")  # a stale one is swept
    try:
        check.write_bytes(safetensors_bytes(tensors, metadata=meta))
        again = read_model_state(check)
        if (again.keys() != state.keys()
                or state_fingerprint(again) != record["model_fingerprint"]):
            raise ValueError(f"{path}: the compact file does not read back to the same model")
        os.replace(check, path)
    finally:
        check.unlink(missing_ok=True)
    return before, path.stat().st_size


def compact_checkpoints(checkpoint_root: str | Path, log=print) -> list[tuple[Path, int, int]]:
    """Rewrite every finished trimmed run under `checkpoint_root` whose model file is
    still full-sized as a compact one (`compact_model_file`); return [(run folder, bytes
    before, bytes after)] of the files rewritten. `log` gets one line per file."""
    pretrained: dict[str, torch.Tensor] = {}
    done = []
    for record_path in sorted(Path(checkpoint_root).rglob(RECORD_NAME)):
        run_dir = record_path.parent
        record = finished_record(run_dir)
        if record is None or not (run_dir / MODEL_NAME).is_file():
            continue
        encoder = record["config"]["encoder"]
        if encoder not in pretrained and record.get("vocab", "full") != "full":
            pretrained[encoder] = load_encoder(encoder)[0].get_input_embeddings().weight.detach()
        sizes = compact_model_file(run_dir, checkpoint_root, pretrained.get(encoder))
        if sizes is not None:
            done.append((run_dir, *sizes))
            log(f"{run_dir}: {sizes[0] / 2**20:.0f} MB -> {sizes[1] / 2**20:.0f} MB")
    return done


def _embedding_key(state: dict, pretrained: torch.Tensor, path: Path) -> str:
    """Return the one key of `state` shaped like the pretrained embedding matrix."""
    keys = [k for k, v in state.items()
            if v.shape == pretrained.shape and v.dtype == pretrained.dtype]
    if len(keys) != 1:
        raise ValueError(f"{path}: {len(keys)} tensors shaped like the encoder's input "
                         f"embedding {tuple(pretrained.shape)}, expected 1")
    return keys[0]


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
        states[role] = read_model_state(run_dir / MODEL_NAME)
        records[role] = record
    fingerprints = {role: r["encoder_fingerprint"] for role, r in records.items()}
    if len(set(fingerprints.values())) != 1:
        raise IncompatibleEndpoints(f"end-points come from different encoders: {fingerprints}")
    return states, records
