"""Featurisation of a split for a tokenizer, its on-disk cache, collation and batching.

One feature is one model input (a dict of Python ints / lists of ints); a long tagging
sentence gives several windows. The batch format is fixed in docs/ARCHITECTURE.md.

Choices the paper leaves open, made here:

- Token tasks label the first subword of each word; the other subwords get -100.
- Tagging past `max_length` subwords: windows of C = max_length - (special tokens)
  subwords start every C - C//2 subwords. The first window scores every word whose
  first subword it holds; window k >= 1 scores the words whose first subword lies in
  its right part, after its first C//2 subwords (the left context). So every word is
  scored exactly once, with at least C//2 subwords of left context after the first window.
- A word for which the tokenizer yields no subword (e.g. a lone control or zero-width
  character that its normaliser deletes) is replaced by the tokenizer's unknown token
  before tokenisation, as XTREME does: every word is then scored and parsed.
- Parsing, `train=True`: the words whose subwords all fit in `max_length` are kept;
  heads pointing past the cut are -100 (so are their relations). A sentence whose first
  word alone does not fit is dropped (no word to learn from).
- Parsing, `train=False` (evaluation): the first `EVAL_PARSE_WORDS` (128) words are
  kept, as in the paper, with up to the tokenizer's `model_max_length` (512 if unset)
  subwords so that those words fit; if they still do not, the words that fit are kept.
  `encoders.load_tokenizer` lowers `model_max_length` to the model's usable positions
  (`encoders.max_positions`), so this never exceeds what the encoder can take.
  Gold heads pointing past the cut are -100 and are not scored.
- `train` changes nothing for XNLI and tagging.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from xinterp_utils import labels
from xinterp_utils.labels import IGNORE_INDEX
from xinterp_utils.paths import atomic_write, cache_dir

from .progress import tqdm

# Bump when the features made for the same inputs change: old cache files are then ignored.
FEATURIZER_VERSION = "1"
EVAL_PARSE_WORDS = 128
_DEFAULT_MODEL_MAX = 512  # subwords, when the tokenizer does not say
_CHUNK = 4096  # sentences per tokenizer call: one batched call each, and a progress tick

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ tokenizer helpers


def tokenizer_fingerprint(tokenizer) -> str:
    """Return a sha256 hex of the tokenizer's content (vocabulary, normaliser, templates...)."""
    # Not memoised: a tokenizer can change in place (add_tokens); hashing takes ~0.1 s.
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"featurize needs a fast tokenizer (word_ids); got {type(tokenizer)}")
    content = {
        "backend": hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest(),
        "class": type(tokenizer).__name__,
        "model_max_length": _model_max_length(tokenizer),
        "inputs": list(tokenizer.model_input_names),
        "truncation_side": getattr(tokenizer, "truncation_side", "right"),
        "unk": tokenizer.unk_token,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _model_max_length(tokenizer) -> int:
    n = getattr(tokenizer, "model_max_length", None)
    # transformers uses a huge sentinel (1e30) when the model's limit is unknown.
    return int(n) if isinstance(n, int) and 0 < n <= 100_000 else _DEFAULT_MODEL_MAX


def _uses_token_types(tokenizer) -> bool:
    return "token_type_ids" in tokenizer.model_input_names


def special_template(tokenizer) -> tuple[list[int], list[int]]:
    """Return (prefix ids, suffix ids) the tokenizer puts around one sequence (e.g. [CLS], [SEP])."""
    enc = tokenizer([["x"]], is_split_into_words=True, add_special_tokens=True)
    ids, wids = enc["input_ids"][0], enc.word_ids(0)
    inside = [i for i, w in enumerate(wids) if w is not None]
    if not inside:
        raise ValueError(f"{type(tokenizer).__name__}: cannot locate the words among the "
                         f"special tokens of {ids}")
    return ids[: inside[0]], ids[inside[-1] + 1:]


def tokenize_words(tokenizer, sentences: Sequence[Sequence[str]], *, progress: str | None = None):
    """Return (ids, word_ids): per sentence, subword ids and their word positions (no specials).

    Words that get no subword are replaced by the unknown token and the sentence is
    tokenised again, so every word owns at least one subword.
    """
    ids: list[list[int]] = []
    wids: list[list[int]] = []
    bar = tqdm(total=len(sentences), unit="sent", desc=progress, leave=False,
               disable=progress is None or len(sentences) <= _CHUNK)
    for start in range(0, len(sentences), _CHUNK):
        chunk = [list(s) for s in sentences[start:start + _CHUNK]]
        c_ids, c_wids = _tokenize_chunk(tokenizer, chunk)
        redo = [i for i, (w, s) in enumerate(zip(c_wids, chunk, strict=True))
                if len(set(w)) != len(s)]
        if redo:
            unk = tokenizer.unk_token
            if unk is None:
                raise ValueError("some words have no subword and the tokenizer has no unk token")
            fixed = []
            for i in redo:
                present = set(c_wids[i])
                fixed.append([w if j in present else unk for j, w in enumerate(chunk[i])])
            r_ids, r_wids = _tokenize_chunk(tokenizer, fixed)
            for i, new_ids, new_wids, words in zip(redo, r_ids, r_wids, fixed, strict=True):
                if len(set(new_wids)) != len(words):
                    raise ValueError(f"sentence {start + i}: words without subwords even "
                                     f"after replacing them by {unk!r}: {words}")
                c_ids[i], c_wids[i] = new_ids, new_wids
        ids.extend(c_ids)
        wids.extend(c_wids)
        bar.update(len(chunk))
    bar.close()
    return ids, wids


def _tokenize_chunk(tokenizer, chunk: list[list[str]]):
    # Whole sentences are tokenised before windows cut them to max_length, so the
    # tokenizer's "longer than the maximum sequence length" warning is expected here.
    enc = tokenizer(chunk, is_split_into_words=True, add_special_tokens=False,
                    return_attention_mask=False, return_token_type_ids=False, verbose=False)
    return list(enc["input_ids"]), [enc.word_ids(i) for i in range(len(chunk))]


def _flat(lists: Sequence[Sequence[int]], dtype=np.int64) -> np.ndarray:
    total = sum(map(len, lists))
    return np.fromiter(itertools.chain.from_iterable(lists), dtype=dtype, count=total)


def _label_ids(names: Sequence[str], tags: Sequence[str], what: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    try:
        return np.fromiter((index[t] for t in tags), dtype=np.int64, count=len(tags))
    except KeyError as exc:
        raise ValueError(f"unknown {what} label {exc.args[0]!r}; expected one of {names}") from None


# ------------------------------------------------------------------ featurisers


def _featurize_xnli(examples, tokenizer, max_length: int) -> list[dict]:
    types = _uses_token_types(tokenizer)
    gold = _label_ids(labels.XNLI_LABELS, [e.label for e in examples], "xnli")
    feats: list[dict] = []
    for start in range(0, len(examples), _CHUNK):
        chunk = examples[start:start + _CHUNK]
        enc = tokenizer([e.premise for e in chunk], [e.hypothesis for e in chunk],
                        truncation=True, max_length=max_length,
                        return_attention_mask=False, return_token_type_ids=types)
        for i, input_ids in enumerate(enc["input_ids"], start):
            feat = {"input_ids": input_ids, "example_index": i, "labels": int(gold[i])}
            if types:
                feat["token_type_ids"] = enc["token_type_ids"][i - start]
            feats.append(feat)
    return feats


def _featurize_tagging(examples, tokenizer, task: str, max_length: int, desc: str) -> list[dict]:
    prefix, suffix = special_template(tokenizer)
    capacity = max_length - len(prefix) - len(suffix)
    if capacity < 2:
        raise ValueError(f"max_length={max_length} leaves {capacity} subwords after the "
                         f"{len(prefix) + len(suffix)} special tokens; need at least 2")
    half = capacity // 2
    stride = capacity - half
    names = labels.NER_LABELS if task == "ner" else labels.UPOS_LABELS
    ids, wids = tokenize_words(tokenizer, [e.words for e in examples], progress=desc)

    # Everything token-level is computed once over the concatenated split.
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_words = np.fromiter((len(e.words) for e in examples), dtype=np.int64, count=len(examples))
    word_offsets = np.concatenate([[0], np.cumsum(n_words)])
    flat_ids = _flat(ids)
    flat_w = _flat(wids)
    first = np.ones(len(flat_w), dtype=bool)
    first[1:] = flat_w[1:] != flat_w[:-1]
    first[offsets[:-1][lengths > 0]] = True
    sentence = np.repeat(np.arange(len(ids)), lengths)
    tags = _label_ids(names, [t for e in examples for t in e.tags], task)
    flat_labels = np.where(first, tags[flat_w + word_offsets[sentence]], IGNORE_INDEX)
    flat_index = np.where(first, flat_w, IGNORE_INDEX)

    pre, suf = [IGNORE_INDEX] * len(prefix), [IGNORE_INDEX] * len(suffix)
    types = _uses_token_types(tokenizer)
    feats: list[dict] = []
    for i, length in enumerate(lengths.tolist()):
        base = int(offsets[i])
        starts = [0] if length <= capacity else range(0, length - half, stride)
        for k, s in enumerate(starts):
            e = min(s + capacity, length)
            lab = flat_labels[base + s:base + e]
            idx = flat_index[base + s:base + e]
            if k > 0:  # the left context was scored by an earlier window
                if not (idx[half:] != IGNORE_INDEX).any():
                    continue  # a window inside one long word scores nothing
                lab = lab.copy()
                idx = idx.copy()
                lab[:half] = IGNORE_INDEX
                idx[:half] = IGNORE_INDEX
            input_ids = prefix + flat_ids[base + s:base + e].tolist() + suffix
            feat = {"input_ids": input_ids, "example_index": i,
                    "labels": pre + lab.tolist() + suf, "word_index": pre + idx.tolist() + suf}
            if types:
                feat["token_type_ids"] = [0] * len(input_ids)
            feats.append(feat)
    return feats


def _featurize_parsing(examples, tokenizer, max_length: int, train: bool,
                       desc: str) -> list[dict]:
    prefix, suffix = special_template(tokenizer)
    n_special = len(prefix) + len(suffix)
    if train:
        budget, max_words = max_length - n_special, None
    else:
        budget = max(max_length, _model_max_length(tokenizer)) - n_special
        max_words = EVAL_PARSE_WORDS
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room after {n_special} special tokens")
    ids, wids = tokenize_words(tokenizer, [e.words for e in examples], progress=desc)
    types = _uses_token_types(tokenizer)
    rel_index = {name: i for i, name in enumerate(labels.DEPREL_LABELS)}
    upos_index = {name: i for i, name in enumerate(labels.UPOS_LABELS)}
    P = len(prefix)
    feats: list[dict] = []
    for i, (ex, sent_ids, sent_w) in enumerate(zip(examples, ids, wids, strict=True)):
        w = np.asarray(sent_w, dtype=np.int64)
        is_first = np.ones(len(w), dtype=bool)
        is_first[1:] = w[1:] != w[:-1]
        firsts = np.flatnonzero(is_first)  # first subword of each word (all words have one)
        ends = np.append(firsts[1:], len(w))  # one past each word's last subword
        keep = int(np.searchsorted(ends, budget, side="right"))
        if max_words is not None:
            keep = min(keep, max_words)
        if keep == 0 and train:
            continue
        cut = int(ends[keep - 1]) if keep else 0
        heads = np.asarray(ex.heads[:keep], dtype=np.int64)
        cut_off = heads > keep
        heads[cut_off] = IGNORE_INDEX
        rels = np.fromiter((rel_index[r] for r in ex.deprels[:keep]), dtype=np.int64, count=keep)
        rels[cut_off] = IGNORE_INDEX
        input_ids = prefix + sent_ids[:cut] + suffix
        feat = {
            "input_ids": input_ids,
            "example_index": i,
            "word_starts": [0] + (firsts[:keep] + P).tolist(),
            "heads": [IGNORE_INDEX] + heads.tolist(),
            "rels": [IGNORE_INDEX] + rels.tolist(),
            "upos": [IGNORE_INDEX] + [upos_index[u] for u in ex.upos[:keep]],
        }
        if types:
            feat["token_type_ids"] = [0] * len(input_ids)
        feats.append(feat)
    return feats


def build_features(split, tokenizer, *, max_length: int = 128, train: bool = True) -> list[dict]:
    """Return the features of `split` (no cache): see the module docstring for the rules."""
    if split.task not in labels.TASKS:
        raise ValueError(f"unknown task {split.task!r}; expected one of {labels.TASKS}")
    desc = f"featurize {split.task}/{split.lang}/{split.split}"
    examples = list(split.examples)
    if split.task == "xnli":
        return _featurize_xnli(examples, tokenizer, max_length)
    if split.task in ("ner", "pos"):
        return _featurize_tagging(examples, tokenizer, split.task, max_length, desc)
    return _featurize_parsing(examples, tokenizer, max_length, train, desc)


# ------------------------------------------------------------------ cache


def cache_key(split, tokenizer, *, max_length: int, train: bool) -> str:
    """Return the sha256 hex naming the cache file of these features."""
    content = {
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "split": split.fingerprint,
        "n": len(split.examples),
        "task": split.task,
        "max_length": int(max_length),
        "train": bool(train),
        "version": FEATURIZER_VERSION,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def cache_path(split, tokenizer, *, max_length: int = 128, train: bool = True) -> Path:
    """Return the cache file `featurize` uses for these arguments (it may not exist yet)."""
    key = cache_key(split, tokenizer, max_length=max_length, train=train)
    return cache_dir() / "features" / f"{key}.npz"


def _save(path: Path, key: str, feats: list[dict]) -> None:
    # Columnar npz (concatenated int32 data + lengths per key): loads in milliseconds
    # and needs no pickle.
    keys = sorted(feats[0]) if feats else []
    list_keys = [k for k in keys if isinstance(feats[0][k], list)]
    arrays: dict[str, np.ndarray] = {}
    for k in keys:
        if k in list_keys:
            arrays[f"{k}.len"] = np.fromiter((len(f[k]) for f in feats), np.int64, len(feats))
            arrays[f"{k}.data"] = _flat([f[k] for f in feats], dtype=np.int32)
        else:
            arrays[k] = np.fromiter((f[k] for f in feats), np.int64, len(feats))
    meta = {"key": key, "version": FEATURIZER_VERSION, "n": len(feats), "keys": keys,
            "list_keys": list_keys}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def _load(path: Path, key: str) -> list[dict]:
    """Return the cached features; raise (any exception) if the file is not a valid cache."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(bytes(npz["__meta__"]).decode())
        if meta["key"] != key or meta["version"] != FEATURIZER_VERSION:
            raise ValueError(f"{path}: made for another key or version")
        n = meta["n"]
        columns: dict[str, list] = {}
        for k in meta["keys"]:
            if k in meta["list_keys"]:
                lengths = npz[f"{k}.len"]
                data = npz[f"{k}.data"]
                if len(lengths) != n or int(lengths.sum()) != len(data) or lengths.min() < 0:
                    raise ValueError(f"{path}: column {k} is inconsistent")
                columns[k] = [a.tolist() for a in np.split(data, np.cumsum(lengths)[:-1])]
            else:
                values = npz[k]
                if len(values) != n:
                    raise ValueError(f"{path}: column {k} is inconsistent")
                columns[k] = values.tolist()
    keys = meta["keys"]
    return [dict(zip(keys, row, strict=True)) for row in zip(*(columns[k] for k in keys))] \
        if keys else []


def featurize(split, tokenizer, *, max_length: int = 128, train: bool = True) -> list[dict]:
    """Return the features of `split` for `tokenizer`, from the disk cache when possible.

    The cache file (`cache_dir()/features/<key>.npz`) is keyed by the tokenizer's content,
    the split's fingerprint, the task, `max_length`, `train` and the featuriser version;
    an unreadable or inconsistent file is rebuilt. See the module docstring for the rules.
    """
    key = cache_key(split, tokenizer, max_length=max_length, train=train)
    path = cache_dir() / "features" / f"{key}.npz"
    if path.is_file():
        try:
            return _load(path, key)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("%s: unreadable feature cache (%s); rebuilding", path, exc)
    feats = build_features(split, tokenizer, max_length=max_length, train=train)
    _save(path, key, feats)
    return feats


# ------------------------------------------------------------------ batches


def _pad(lists: Sequence[Sequence[int]], width: int, fill: int) -> torch.Tensor:
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    out = np.full((len(lists), width), fill, dtype=np.int64)
    out[np.arange(width)[None, :] < lengths[:, None]] = _flat(lists)
    return torch.from_numpy(out)


def collate(features: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Return a batch: the features' lists padded into `[B, T]` / `[B, W]` long tensors.

    `input_ids` are padded with `pad_token_id`, `token_type_ids` with 0, labels/heads/...
    with -100; `attention_mask` and (parsing) `word_mask` are built from the lengths.
    """
    if not features:
        raise ValueError("collate: no features")
    if pad_token_id is None:
        raise ValueError("collate: pad_token_id is None (the tokenizer has no pad token)")
    ids = [f["input_ids"] for f in features]
    lengths = torch.tensor([len(x) for x in ids])
    width = int(lengths.max())
    batch = {
        "input_ids": _pad(ids, width, pad_token_id),
        "attention_mask": (torch.arange(width)[None, :] < lengths[:, None]).long(),
        "example_index": torch.tensor([f["example_index"] for f in features], dtype=torch.long),
    }
    first = features[0]
    if "token_type_ids" in first:
        batch["token_type_ids"] = _pad([f["token_type_ids"] for f in features], width, 0)
    if "word_starts" in first:
        starts = [f["word_starts"] for f in features]
        words = torch.tensor([len(x) for x in starts])
        n_cols = int(words.max())
        batch["word_starts"] = _pad(starts, n_cols, 0)
        batch["word_mask"] = torch.arange(n_cols)[None, :] < words[:, None]
        for k in ("heads", "rels", "upos"):
            batch[k] = _pad([f[k] for f in features], n_cols, IGNORE_INDEX)
    elif isinstance(first.get("labels"), list):
        batch["labels"] = _pad([f["labels"] for f in features], width, IGNORE_INDEX)
        batch["word_index"] = _pad([f["word_index"] for f in features], width, IGNORE_INDEX)
    elif "labels" in first:
        batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
    return batch


def length_sorted_batches(features: Sequence[dict], batch_size: int) -> list[list[int]]:
    """Return feature indices grouped into batches by length, longest first (ties: index order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.fromiter((len(f["input_ids"]) for f in features), np.int64, len(features))
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def batches(features: Sequence[dict], batch_size: int, pad_token_id: int,
            sort_by_length: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Yield collated batches of `batch_size` features (longest first when `sort_by_length`)."""
    if sort_by_length:
        groups = length_sorted_batches(features, batch_size)
    else:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        groups = [list(range(i, min(i + batch_size, len(features))))
                  for i in range(0, len(features), batch_size)]
    for group in groups:
        yield collate([features[i] for i in group], pad_token_id)


__all__ = [
    "EVAL_PARSE_WORDS", "FEATURIZER_VERSION", "batches", "build_features",
    "cache_key", "cache_path", "collate", "featurize", "length_sorted_batches",
    "special_template", "tokenize_words", "tokenizer_fingerprint",
]
