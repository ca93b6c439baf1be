"""Dataset readers: CoNLL-U, WikiANN and XNLI files, and the hub's WikiANN and XNLI rows,
into the project's example types.

- `TaggedSentence(words, tags)` for NER (IOB2) and POS (UPOS),
- `ParsedSentence(words, upos, heads, deprels)` for parsing (heads 1-based, 0 = root,
  deprel subtypes stripped: `nmod:poss` -> `nmod`),
- `SentencePair(premise, hypothesis, label)` for XNLI.

Every reader validates its input and reports the file and 1-based line of the first
problem (`DataFormatError`). Parsed files are cached in memory, so the stages of a
notebook that read the same file pay for it once. Where the files come from is
`data.py`'s business.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from conllu.exceptions import ParseException
from conllu.parser import parse_id_value

from . import labels

# Bump when a reader's output changes for the same bytes: it is part of every fingerprint,
# so featurisation caches built from the old output are not reused.
READER_VERSION = "1"

FAMILIES = ("ud", "wikiann", "xnli")

_UPOS = frozenset(labels.UPOS_LABELS)
_DEPRELS = frozenset(labels.DEPREL_LABELS)
_NER = frozenset(labels.NER_LABELS)
_XNLI = frozenset(labels.XNLI_LABELS)


class DataFormatError(ValueError):
    """A data or manifest file that breaks its format; the message names file and line."""


# ---------------------------------------------------------------- example types


@dataclass(frozen=True, slots=True)
class TaggedSentence:
    """A sentence with one tag a word: IOB2 NER tags or UPOS tags."""

    words: list[str]
    tags: list[str]


@dataclass(frozen=True, slots=True)
class ParsedSentence:
    """A dependency-parsed sentence: heads are 1-based word indices (0 = root)."""

    words: list[str]
    upos: list[str]
    heads: list[int]
    deprels: list[str]


@dataclass(frozen=True, slots=True)
class SentencePair:
    """An XNLI premise/hypothesis pair with its label (entailment, neutral, contradiction)."""

    premise: str
    hypothesis: str
    label: str


# ---------------------------------------------------------------- readers


def _read_text(path: Path) -> tuple[str, str]:
    """Return (the file's text, sha256 hex of its bytes); clear errors for missing/empty/binary."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if not raw.strip():
        raise DataFormatError(f"{path}: empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from None
    return text.removeprefix("\ufeff"), hashlib.sha256(raw).hexdigest()


def _lines(text: str):
    """Yield (1-based line number, line without its end-of-line characters)."""
    for number, line in enumerate(text.split("\n"), 1):
        yield number, line.rstrip("\r")


def _parse_conllu(text: str, path: Path) -> list[ParsedSentence]:
    # A line scanner rather than conllu.parse_incr: it keeps line numbers for errors,
    # splits on tabs only (conllu also splits on runs of two spaces, which shifts the
    # columns of a FORM holding them) and reads en_ewt train ~4x faster. conllu's own
    # ID parser classifies the ID column (multiword ranges `1-2`, empty nodes `1.1`).
    sentences: list[ParsedSentence] = []
    words: list[str] = []
    upos: list[str] = []
    heads: list[int] = []
    deprels: list[str] = []
    head_lines: list[int] = []
    first_line = 0

    def finish(end_line: int) -> None:
        n = len(words)
        if n == 0:
            raise DataFormatError(
                f"{path}:{first_line}: sentence (lines {first_line}-{end_line}) has no words"
            )
        for head, line in zip(heads, head_lines, strict=True):
            if head > n:
                raise DataFormatError(
                    f"{path}:{line}: HEAD {head} out of range: the sentence has {n} words "
                    f"(HEAD must be 0..{n})"
                )
        sentences.append(ParsedSentence(words[:], upos[:], heads[:], deprels[:]))
        for buf in (words, upos, heads, deprels, head_lines):
            buf.clear()

    in_sentence = False
    number = 0
    for number, line in _lines(text):
        if not line.strip():
            if in_sentence:
                finish(number - 1)
                in_sentence = False
            continue
        if not in_sentence:
            in_sentence, first_line = True, number
        if line[0] == "#":
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataFormatError(
                f"{path}:{number}: expected 10 tab-separated columns, found {len(cols)}"
            )
        ident = cols[0]
        if not ident.isdigit():
            try:
                parsed = parse_id_value(ident)
            except ParseException:
                parsed = None
            if not isinstance(parsed, tuple):
                raise DataFormatError(f"{path}:{number}: invalid ID {ident!r}")
            continue  # multiword token or empty node: not a word of the basic tree
        if int(ident) != len(words) + 1:
            raise DataFormatError(
                f"{path}:{number}: word ID {ident} out of sequence (expected {len(words) + 1})"
            )
        tag = cols[3]
        if tag not in _UPOS:
            raise DataFormatError(f"{path}:{number}: unknown UPOS {tag!r}")
        head = cols[6]
        if not head.isdigit():
            raise DataFormatError(f"{path}:{number}: HEAD {head!r} is not a non-negative integer")
        rel = cols[7].split(":", 1)[0]
        if rel not in _DEPRELS:
            raise DataFormatError(f"{path}:{number}: unknown DEPREL {cols[7]!r}")
        words.append(cols[1])
        upos.append(tag)
        heads.append(int(head))
        deprels.append(rel)
        head_lines.append(number)
    if in_sentence:
        finish(number)
    return sentences


def _parse_wikiann(text: str, path: Path) -> list[TaggedSentence]:
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in _lines(text):
        if not line.strip():
            if words:
                sentences.append(TaggedSentence(words, tags))
                words, tags = [], []
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataFormatError(
                f"{path}:{number}: expected 2 tab-separated fields (token, IOB2 tag), "
                f"found {len(cols)}"
            )
        if cols[1] not in _NER:
            raise DataFormatError(f"{path}:{number}: unknown NER tag {cols[1]!r}")
        words.append(cols[0])
        tags.append(cols[1])
    if words:
        sentences.append(TaggedSentence(words, tags))
    return sentences


def _parse_xnli(text: str, path: Path) -> list[SentencePair]:
    pairs: list[SentencePair] = []
    for number, line in _lines(text):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 3:
            raise DataFormatError(
                f"{path}:{number}: expected 3 tab-separated fields (premise, hypothesis, "
                f"label), found {len(cols)}"
            )
        if cols[2] not in _XNLI:
            raise DataFormatError(f"{path}:{number}: unknown XNLI label {cols[2]!r}")
        pairs.append(SentencePair(cols[0], cols[1], cols[2]))
    return pairs


_PARSERS = {"ud": _parse_conllu, "wikiann": _parse_wikiann, "xnli": _parse_xnli}


@functools.lru_cache(maxsize=64)
def _parse_cached(path: str, mtime_ns: int, size: int, family: str) -> tuple[tuple, str]:
    # mtime and size are in the key so that an edited file is read again.
    text, digest = _read_text(Path(path))
    examples = _PARSERS[family](text, Path(path))
    if not examples:
        raise DataFormatError(f"{path}: no examples")
    return tuple(examples), digest


def read_file(path: str | os.PathLike, family: str) -> tuple[tuple, str]:
    """Return (examples, sha256 hex of the file bytes) for a `family` file (ud, wikiann, xnli).

    Results are cached in memory by (path, mtime, size).
    """
    if family not in _PARSERS:
        raise ValueError(f"unknown dataset family {family!r}; expected one of {FAMILIES}")
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    return _parse_cached(str(path), stat.st_mtime_ns, stat.st_size, family)


def read_conllu(path: str | os.PathLike) -> list[ParsedSentence]:
    """Return the sentences of a CoNLL-U file (multiword tokens and empty nodes skipped)."""
    return list(read_file(path, "ud")[0])


def read_wikiann(path: str | os.PathLike) -> list[TaggedSentence]:
    """Return the sentences of a WikiANN `token<TAB>IOB2` file (blank line between sentences)."""
    return list(read_file(path, "wikiann")[0])


def read_xnli(path: str | os.PathLike) -> list[SentencePair]:
    """Return the pairs of an XNLI `premise<TAB>hypothesis<TAB>label` file."""
    return list(read_file(path, "xnli")[0])


def fingerprint(*parts: object) -> str:
    """Return a sha256 (hex) over `READER_VERSION` and `parts` (a file's digest, its slice):
    the identity of a split's parsed examples."""
    text = "\x1f".join(str(p) for p in (READER_VERSION, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- hub rows


def _class_names(ds, column: str, where: str, inner: bool) -> list[str]:
    """Return the ClassLabel names of `column` (of its list items when `inner`)."""
    feature = ds.features.get(column)
    feature = getattr(feature, "feature", None) if inner else feature
    names = getattr(feature, "names", None)
    if not names:
        raise DataFormatError(
            f"{where}: column {column!r} must be a ClassLabel"
            f"{' sequence' if inner else ''}, found {ds.features.get(column)!r}")
    return list(names)


def _name_of(names: list[str], value: int, where: str, row: int, column: str) -> str:
    if not 0 <= value < len(names):
        raise DataFormatError(
            f"{where}: row {row}: {column} id {value} outside the ClassLabel's "
            f"{len(names)} names {names}")
    return names[value]


def wikiann_from_hub(ds, where: str) -> tuple[TaggedSentence, ...]:
    """Return the sentences of a hub WikiANN split (`tokens`, ClassLabel `ner_tags` ints).

    `where` names the dataset in errors: tag names outside IOB2 over PER/ORG/LOC, or ids
    outside the ClassLabel, raise `DataFormatError`."""
    names = _class_names(ds, "ner_tags", where, inner=True)
    unknown = sorted(set(names) - _NER)
    if unknown:
        raise DataFormatError(f"{where}: unknown NER tags {unknown}")
    out = []
    for row, (toks, tags) in enumerate(zip(ds["tokens"], ds["ner_tags"], strict=True)):
        if len(toks) != len(tags):
            raise DataFormatError(
                f"{where}: row {row}: {len(toks)} tokens but {len(tags)} ner_tags")
        out.append(TaggedSentence(list(toks),
                                  [_name_of(names, t, where, row, "ner_tags") for t in tags]))
    return tuple(out)


def xnli_from_hub(ds, where: str) -> tuple[SentencePair, ...]:
    """Return the pairs of a hub XNLI split (ClassLabel 0/1/2 = entailment/neutral/contradiction).

    Pairs labelled -1 (unlabelled, in some hub copies) are left out; label names outside
    entailment/neutral/contradiction, or other ids outside the ClassLabel, raise
    `DataFormatError` naming `where`.
    """
    names = _class_names(ds, "label", where, inner=False)
    unknown = sorted(set(names) - _XNLI)
    if unknown:
        raise DataFormatError(f"{where}: unknown XNLI labels {unknown}")
    return tuple(SentencePair(p, h, _name_of(names, y, where, row, "label"))
                 for row, (p, h, y) in enumerate(
                     zip(ds["premise"], ds["hypothesis"], ds["label"], strict=True))
                 if y != -1)
