"""A trimmed vocabulary: embedding rows only for the pieces the data can produce.

A 250k-piece embedding matrix is most of a small multilingual encoder (96 M of the
offline encoder's 118 M parameters), and on a CPU its dense gradient and Adam update
cost more than the rest of a training step. The data of one task family, in every
language and split a data source offers, uses a fraction of those pieces. Training on
that fraction is exact, not an approximation:

- the forward pass gathers the same rows, so the outputs are identical;
- a row that no input uses gets a zero gradient, and Adam without weight decay leaves it
  exactly where it was, so the full model's dropped rows never move either.

The kept set depends on the encoder's tokenizer, the task family and the data source
only: not on the pairs, languages or caps of a profile, so a run shared between pairs
stays one run. A piece outside it is never mapped to `<unk>`: `check_covered` refuses the
features that hold one, naming the split and the text, and the embedding refuses ids it
does not hold.

`full_state_dict` puts the trained rows back into the pretrained matrix, so saved
models, sweeps and geometry (norms, angle) are what a full-vocabulary run gives; a
model file stores that matrix once per encoder and only the rows training moved
(`embedding_store.py`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import labels
from .data import SPLITS, MissingSplitError, load_split
from .embedding_store import tensor_digest
from .features import tokenize_words, tokenizer_fingerprint
from .paths import atomic_write, cache_dir

# Bump when the kept set for the same inputs changes: old cache files are then ignored.
KEPT_VERSION = "1"
_CHUNK = 4096


def _split_piece_ids(split, tokenizer) -> np.ndarray:
    """Return the distinct ids of every piece the tokenizer gives the split's text."""
    seen: set[int] = set()
    examples = split.examples
    if split.task == "xnli":
        for start in range(0, len(examples), _CHUNK):
            chunk = examples[start:start + _CHUNK]
            enc = tokenizer([e.premise for e in chunk], [e.hypothesis for e in chunk],
                            return_attention_mask=False)
            for ids in enc["input_ids"]:
                seen.update(ids)
    else:
        ids, _ = tokenize_words(tokenizer, [e.words for e in examples])
        for row in ids:
            seen.update(row)
    return np.fromiter(seen, dtype=np.int64, count=len(seen))


def _family_splits(task: str, data_source):
    """Yield every split the source offers for the task's family, over all languages."""
    for lang in labels.LANGUAGES:
        for name in SPLITS:
            try:
                yield load_split(task, lang, name, source=data_source)
            except MissingSplitError:
                continue


def kept_ids(tokenizer, task: str, data_source=None) -> torch.Tensor:
    """Return the sorted piece ids (1-D long tensor) that the trimmed vocabulary keeps for
    `task`'s data family: the tokenizer's special tokens plus every piece of every split
    (train, dev, test) of every language the data source offers. Cached on disk, keyed
    by the tokenizer's content and the splits' fingerprints."""
    splits = list(_family_splits(task, data_source))
    if not splits:
        raise ValueError(f"vocab: the data source has no split of task {task!r}")
    family = labels.TASK_FAMILY[task]
    key_data = {"version": KEPT_VERSION, "family": family,
                "tokenizer": tokenizer_fingerprint(tokenizer),
                "splits": sorted(f"{s.lang}/{s.split}:{s.fingerprint}" for s in splits)}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir() / "vocab" / f"{family}-{key}.npy"
    if path.is_file():
        try:
            return torch.from_numpy(np.load(path))
        except (OSError, ValueError):
            pass  # unreadable: rebuilt below
    ids = {int(i) for i in tokenizer.all_special_ids}
    for split in splits:
        ids.update(_split_piece_ids(split, tokenizer).tolist())
    kept = np.array(sorted(ids), dtype=np.int64)
    with atomic_write(path) as handle:
        np.save(handle, kept)
    return torch.from_numpy(kept)


def kept_fingerprint(kept: torch.Tensor) -> str:
    """Return a 16-hex-digit hash of a kept set (recorded with each trimmed run)."""
    return hashlib.sha256(kept.numpy().astype("<i8").tobytes()).hexdigest()[:16]


def check_covered(features: Sequence[dict], kept: torch.Tensor, split, tokenizer) -> None:
    """Raise ValueError naming the split, the example and its text when a feature holds a
    piece outside `kept`; return None when every piece is kept."""
    if not features:
        return
    flat = np.concatenate([np.asarray(f["input_ids"], dtype=np.int64) for f in features])
    missing = np.setdiff1d(np.unique(flat), kept.numpy())
    if not len(missing):
        return
    bad = set(missing.tolist())
    for feature in features:
        if bad & set(feature["input_ids"]):
            example = split.examples[feature["example_index"]]
            text = (" ".join(example.words) if hasattr(example, "words")
                    else f"{example.premise} ||| {example.hypothesis}")
            pieces = tokenizer.convert_ids_to_tokens(sorted(bad & set(feature["input_ids"])))
            raise ValueError(
                f"{split.path}: {split.task} {split.lang}/{split.split} example "
                f"{feature['example_index']} has piece(s) {pieces} outside the trimmed "
                f"vocabulary ({len(kept)} pieces): {text[:200]!r}. The kept set is built "
                "from the data source's own files; use vocab=full for other data."
            )


class TrimmedEmbedding(nn.Module):
    """An `nn.Embedding` over the full id space that holds trainable rows only for the
    kept ids. It takes the original ids (so padding, position and token-type logic of the
    encoder is untouched) and refuses an id it does not hold.

    `weight` ([K, H]) is the only parameter; the pretrained matrix stays as a
    non-persistent buffer so that `full_weight` can return the [V, H] matrix.
    """

    def __init__(self, embedding: nn.Embedding, kept: torch.Tensor):
        super().__init__()
        full = embedding.weight.detach()
        kept = kept.to(device=full.device, dtype=torch.long)
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= full.shape[0]):
            raise ValueError(f"TrimmedEmbedding: kept ids outside [0, {full.shape[0]})")
        lookup = torch.full((full.shape[0],), -1, dtype=torch.long, device=full.device)
        lookup[kept] = torch.arange(kept.numel(), device=full.device)
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("kept", kept, persistent=False)
        self.register_buffer("base", full.clone(), persistent=False)
        self.weight = nn.Parameter(full[kept].clone())
        self.num_embeddings, self.embedding_dim = full.shape
        pad = embedding.padding_idx
        if pad is not None and int(lookup[pad]) < 0:
            raise ValueError(f"TrimmedEmbedding: the padding id {pad} is not kept")
        # The padding row gets no gradient in nn.Embedding; the same holds here.
        self.padding_idx = None if pad is None else int(lookup[pad])
        self.source_padding_idx = pad
        self._base_digest: str | None = None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Return the embeddings [..., H] of `input_ids` (original vocabulary ids)."""
        rows = self.lookup[input_ids]
        if bool((rows < 0).any()):
            missing = torch.unique(input_ids[rows < 0]).tolist()[:10]
            raise ValueError(f"TrimmedEmbedding: ids {missing} are not in the kept vocabulary")
        return F.embedding(rows, self.weight, padding_idx=self.padding_idx)

    @torch.no_grad()
    def full_weight(self) -> torch.Tensor:
        """Return the [V, H] matrix: the pretrained rows with the kept rows as trained."""
        return self.base.index_copy(0, self.kept, self.weight.detach().to(self.base.dtype))

    def base_digest(self) -> str:
        """Return `embedding_store.tensor_digest` of the pretrained matrix (hashed once:
        the matrix never changes)."""
        if self._base_digest is None:
            self._base_digest = tensor_digest(self.base)
        return self._base_digest


def trim_embeddings(encoder: nn.Module, kept: torch.Tensor) -> TrimmedEmbedding:
    """Replace `encoder`'s input embedding (a `transformers` model) by a TrimmedEmbedding
    over `kept`, in place; return the new module."""
    old = encoder.get_input_embeddings()
    if not isinstance(old, nn.Embedding):
        raise TypeError(f"trim_embeddings: input embedding is {type(old).__name__}, "
                        "not nn.Embedding")
    new = TrimmedEmbedding(old, kept)
    encoder.set_input_embeddings(new)
    return new


def trimmed_modules(model: nn.Module) -> dict[str, TrimmedEmbedding]:
    """Return {state-dict key of the weight: module} of `model`'s trimmed embeddings."""
    return {f"{name}.weight": m for name, m in model.named_modules()
            if isinstance(m, TrimmedEmbedding)}


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return `model.state_dict()` with every trimmed embedding expanded to its full
    [V, H] matrix: what the same model with the full vocabulary holds."""
    state = model.state_dict()
    for key, module in trimmed_modules(model).items():
        state[key] = module.full_weight()
    return state


def trim_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a copy of the full-vocabulary `state` (e.g. a saved checkpoint) with each
    embedding that is trimmed in `model` cut down to its kept rows, ready for
    `model.load_state_dict`."""
    out = dict(state)
    for key, module in trimmed_modules(model).items():
        if key not in out:
            raise KeyError(f"trim_state_dict: {key} is not in the state dict")
        full = out[key]
        if full.shape[0] != module.num_embeddings:
            raise ValueError(f"trim_state_dict: {key} has {full.shape[0]} rows, the model's "
                             f"vocabulary {module.num_embeddings}")
        out[key] = full.index_select(0, module.kept.to(full.device))
    return out


def trimmed_kept(model: nn.Module) -> torch.Tensor | None:
    """Return the kept ids (CPU long tensor) of `model`'s trimmed embedding, or None when
    its vocabulary is full."""
    modules = list(trimmed_modules(model).values())
    return modules[0].kept.cpu() if modules else None
