"""The offline encoder's tokenizer: SentencePiece's charsmap compiled from the e5 file's
normaliser table, and an XLM-R-style fast tokenizer over its unigram vocabulary.

The normaliser table is a per-codepoint reduction of SentencePiece's `nmt_nfkc` rules (not a
SentencePiece precompiled charsmap), so it is compiled here into the charsmap format (a
darts-clone double-array trie plus a string pool) that `tokenizers`' `Precompiled` normaliser
reads; the tokenizer then reproduces the C engine's normalisation exactly.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import numpy as np
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

from .paths import write_json

TOKENIZER_FILE = "tokenizer.json"
METASPACE = "\u2581"


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


def write_tokenizer_files(folder: Path, vocab: list[tuple[str, float]], charsmap: bytes, *,
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
    write_json(folder / "tokenizer_config.json", config)
    write_json(folder / "special_tokens_map.json", special)


def charsmap_from_json(tok_json: dict) -> bytes:
    for norm in tok_json["normalizer"]["normalizers"]:
        if norm["type"] == "Precompiled":
            return base64.b64decode(norm["precompiled_charsmap"])
    raise ValueError("tokenizer.json has no Precompiled normaliser")
