"""Compact model files: a trimmed run's embedding stored as the rows training moved.

A trimmed run (`vocab.py`) keeps 50–70k of the 250k embedding rows and moves only those
its training text uses, yet a full-sized checkpoint repeats the pretrained matrix (384 MB
of the offline encoder's 448 MB) in every model file; a compact one is 88–103 MB. Here a model file keeps, for each trimmed embedding, only the rows
that differ from the pretrained matrix, plus a reference to that matrix, which is
written once per encoder under ``<checkpoints>/<encoder>/pretrained-embeddings/``,
named by a digest of its content. Reading the file back puts the rows into a copy of
the matrix: the result is bit for bit the full-vocabulary state dict.

Layout inside a compact ``model.safetensors``: for an embedding key ``K``, the tensors
``K::rows`` (int64 row ids) and ``K::values`` ([rows, H]), and the metadata entry
``xinterp_embeddings`` (JSON: K → base file relative to the model file's folder, its
digest, shape and dtype). Any other file is a plain full state dict.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .paths import atomic_write, encoder_slug

STORE_DIR = "pretrained-embeddings"
META_KEY = "xinterp_embeddings"
_ROWS, _VALUES = "::rows", "::values"


def store_dir(checkpoint_root: str | Path, encoder: str) -> Path:
    """Return the folder that holds `encoder`'s pretrained embedding matrices under the
    checkpoint root (beside its task folders)."""
    return Path(checkpoint_root) / encoder_slug(encoder) / STORE_DIR


def tensor_digest(tensor: torch.Tensor) -> str:
    """Return a 32-hex-digit sha256 of a tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{tensor.dtype}:{tuple(tensor.shape)}:".encode())
    flat = tensor.detach().cpu().contiguous().view(-1)
    digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()[:32]


def write_base(store: Path, matrix: torch.Tensor, digest: str | None = None) -> Path:
    """Write the pretrained `matrix` to `store` as ``<digest>.safetensors`` unless a file
    of that name exists; return its path."""
    digest = digest or tensor_digest(matrix)
    path = store / f"{digest}.safetensors"
    if not path.is_file():
        data = safetensors_bytes({"weight": matrix.detach().cpu().contiguous()},
                                 metadata={"digest": digest})
        with atomic_write(path) as handle:
            handle.write(data)
    return path


@functools.lru_cache(maxsize=4)
def _read_base(path: str, digest: str, mtime_ns: int) -> torch.Tensor:
    matrix = load_file(path)["weight"]
    found = tensor_digest(matrix)
    if found != digest:
        raise ValueError(f"{path}: the pretrained embedding's content has digest {found}, "
                         f"its name says {digest}; the file is damaged")
    return matrix


def read_base(path: Path, digest: str) -> torch.Tensor:
    """Return the pretrained matrix stored at `path`, checked against `digest` (read once
    per process; callers must not modify it in place)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the pretrained embedding this model file refers "
                                "to is missing (copy a checkpoint folder together with its "
                                f"encoder's {STORE_DIR}/ folder)")
    return _read_base(str(path), digest, path.stat().st_mtime_ns)


def changed_rows(full: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Return the ids (sorted int64) of the rows of `full` that differ from `base` in any
    bit (so -0.0 against 0.0 counts as a change, and NaN rows compare exactly)."""
    if full.shape != base.shape or full.dtype != base.dtype:
        raise ValueError(f"changed_rows: {tuple(full.shape)} {full.dtype} against the base's "
                         f"{tuple(base.shape)} {base.dtype}")
    width = full.shape[1] * full.element_size()
    differs = full.contiguous().view(torch.uint8).view(-1, width) != \
        base.contiguous().view(torch.uint8).view(-1, width)
    return differs.any(dim=1).nonzero().view(-1)


def pack(state: dict[str, torch.Tensor], bases: dict[str, tuple[torch.Tensor, str]],
         store: Path, model_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (tensors, metadata) of the compact file at `model_path` for the full
    `state`: each key of `bases` ({key: (pretrained matrix, its `tensor_digest`)})
    stored as its changed rows, the matrix written to `store` unless already there.
    Raise ValueError when a key is missing from `state`."""
    tensors = dict(state)
    entries = {}
    for key, (matrix, digest) in bases.items():
        if key not in tensors:
            raise ValueError(f"{model_path}: {key} is not in the model's state dict")
        base_path = write_base(store, matrix, digest)
        full = tensors.pop(key)
        rows = changed_rows(full, matrix.detach().cpu())
        tensors[key + _ROWS] = rows
        tensors[key + _VALUES] = full.index_select(0, rows).contiguous()
        entries[key] = {"file": os.path.relpath(base_path, model_path.parent),
                        "digest": digest, "shape": list(full.shape),
                        "dtype": str(full.dtype).removeprefix("torch.")}
    return tensors, {META_KEY: json.dumps(entries, sort_keys=True)}


def file_metadata(path: str | Path) -> dict[str, str]:
    """Return the safetensors metadata of the model file at `path` ({} when none)."""
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def is_compact(path: str | Path) -> bool:
    """Return True when the model file at `path` stores embeddings as changed rows."""
    return META_KEY in file_metadata(path)


def read_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the full-vocabulary state dict (CPU tensors) of the model file at `path`,
    compact or not."""
    path = Path(path)
    tensors = load_file(str(path))
    entries = json.loads(file_metadata(path).get(META_KEY, "{}"))
    for key, entry in entries.items():
        base = read_base((path.parent / entry["file"]).resolve(), entry["digest"])
        if list(base.shape) != entry["shape"]:
            raise ValueError(f"{path}: {key} is {entry['shape']}, its base "
                             f"{list(base.shape)}")
        rows, values = tensors.pop(key + _ROWS), tensors.pop(key + _VALUES)
        tensors[key] = base.index_copy(0, rows, values.to(base.dtype))
    return tensors
