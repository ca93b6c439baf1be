"""Dataset readers (CoNLL-U, WikiANN, XNLI) and the two sources behind one interface.

`load_split(task, lang, split, source=None)` returns a `Split` of examples:

- `TaggedSentence(words, tags)` for NER (IOB2) and POS (UPOS),
- `ParsedSentence(words, upos, heads, deprels)` for parsing (heads 1-based, 0 = root,
  deprel subtypes stripped: `nmod:poss` -> `nmod`),
- `SentencePair(premise, hypothesis, label)` for XNLI.

Sources: `OfflineSource` reads the files listed in a `manifest.json` (the offline copies
under `../shared/data`); `HubSource` fetches the official releases (WikiANN and XNLI
from the Hugging Face hub, UD r2.7 CoNLL-U files from the UniversalDependencies GitHub
repositories). Every reader validates its input and reports the file and 1-based line
of the first problem (`DataFormatError`). Parsed files are cached in memory, so the
stages of a notebook that read the same file pay for it once.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from conllu.exceptions import ParseException
from conllu.parser import parse_id_value

from xinterp_utils import labels
from xinterp_utils.paths import atomic_write, cache_dir, offline_data_dir

# Bump when a reader's output changes for the same bytes: it is part of every fingerprint,
# so featurisation caches built from the old output are not reused.
READER_VERSION = "1"

SPLITS = ("train", "dev", "test")
LANGS = ("en", "ar", "de", "es", "fr", "hi", "ru", "vi", "zh")
FAMILIES = ("ud", "wikiann", "xnli")

_UPOS = frozenset(labels.UPOS_LABELS)
_DEPRELS = frozenset(labels.DEPREL_LABELS)
_NER = frozenset(labels.NER_LABELS)
_XNLI = frozenset(labels.XNLI_LABELS)


class DataFormatError(ValueError):
    """A data or manifest file that breaks its format; the message names file and line."""


class MissingSplitError(LookupError):
    """A (family, language, split) that a source does not have; the message names the key."""

    def __str__(self) -> str:  # LookupError would print the message quoted, like a key
        return str(self.args[0]) if self.args else ""


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


@dataclass(frozen=True)
class Split:
    """One split of one task in one language, as the project uses it.

    `path` is the file read (or the hub dataset id); `substitute` is the manifest's note
    when this split stands in for an official split that is not available, else None;
    `fingerprint` is a sha256 hex of the source bytes, the slice and `READER_VERSION`.
    Treat `examples` as read-only: the parsed sentences are shared with the in-memory cache.
    """

    task: str
    lang: str
    split: str
    examples: list
    path: str
    substitute: str | None
    fingerprint: str

    def __len__(self) -> int:
        return len(self.examples)


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


def _fingerprint(*parts: object) -> str:
    text = "\x1f".join(str(p) for p in (READER_VERSION, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class RawSplit:
    """What a source returns: examples of the family's type, plus provenance."""

    examples: tuple
    path: str
    substitute: str | None
    fingerprint: str


class Source(abc.ABC):
    """Where the datasets come from; `load_split` only talks to this interface."""

    name: str = "source"

    @abc.abstractmethod
    def read(self, family: str, lang: str, split: str) -> RawSplit:
        """Return the examples of (family, lang, split); raise MissingSplitError if absent."""

    @abc.abstractmethod
    def languages(self, family: str) -> tuple[str, ...]:
        """Return the languages this source has for `family`."""

    @abc.abstractmethod
    def splits(self, family: str, lang: str) -> tuple[str, ...]:
        """Return the splits (in train, dev, test order) this source has for (family, lang)."""

    def treebank(self, lang: str) -> str | None:
        """Return the UD treebank code used for `lang` (e.g. `en_ewt`), or None."""
        return None


class OfflineSource(Source):
    """The offline copies listed in `<data_dir>/manifest.json` (paths relative to it).

    A split entry is a path or `{"file": path, "sentences": [start, stop)}`, a 0-based
    slice of the file's sentences. A language's `substitute` note applies to the splits
    that are slices or whose file is not named after the split (e.g. `train` read from
    `de_gsd-ud-test.conllu`); the others are the official files.
    """

    name = "offline"

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.manifest_path = self.data_dir / "manifest.json"
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.manifest_path}: no such file") from None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{self.manifest_path}:{exc.lineno}: {exc.msg}") from None
        if not isinstance(manifest, dict) or manifest.get("format_version") != 1:
            raise DataFormatError(
                f"{self.manifest_path}: format_version must be 1, "
                f"got {manifest.get('format_version') if isinstance(manifest, dict) else None!r}"
            )
        self.manifest = manifest

    def __repr__(self) -> str:
        return f"OfflineSource({str(self.data_dir)!r})"

    def _lang_entry(self, family: str, lang: str) -> dict:
        fam = self.manifest.get(family)
        if not isinstance(fam, dict) or lang not in fam:
            raise MissingSplitError(f"{self.manifest_path}: no entry {family}.{lang}")
        entry = fam[lang]
        if not isinstance(entry, dict):
            raise DataFormatError(f"{self.manifest_path}: {family}.{lang} must be an object")
        return entry

    def _resolve(self, family: str, lang: str, split: str):
        """Return (file path, slice or None, manifest-relative file, substitute note)."""
        key = f"{family}.{lang}.{split}"
        entry = self._lang_entry(family, lang)
        if split not in entry:
            have = [s for s in SPLITS if s in entry]
            raise MissingSplitError(
                f"{self.manifest_path}: no entry {key} ({family}.{lang} has {have})"
            )
        value = entry[split]
        sl = None
        if isinstance(value, dict):
            rel, sl = value.get("file"), value.get("sentences")
            if (not isinstance(sl, list) or len(sl) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in sl)
                    or not 0 <= sl[0] <= sl[1]):
                raise DataFormatError(
                    f"{self.manifest_path}: {key}.sentences must be [start, stop) with "
                    f"0 <= start <= stop, got {sl!r}"
                )
            sl = (sl[0], sl[1])
        else:
            rel = value
        if not isinstance(rel, str) or not rel:
            raise DataFormatError(f"{self.manifest_path}: {key} must name a file, got {rel!r}")
        path = (self.data_dir / rel).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{self.manifest_path}: {key} -> {rel}: no such file")
        note = entry.get("substitute")
        if note is not None and sl is None and split in re.split(r"[-_.]", Path(rel).name):
            note = None  # the official file of this split
        return path, sl, rel, note

    def describe(self, family: str, lang: str, split: str) -> tuple[str, str | None]:
        """Return (the manifest's file for this split, with its sentence slice if any,
        the substitute note or None for an official split), reading no data; raises
        MissingSplitError / FileNotFoundError like `read`."""
        _path, sl, rel, note = self._resolve(family, lang, split)
        return (rel if sl is None else f"{rel} sentences [{sl[0]}, {sl[1]})"), note

    def read(self, family: str, lang: str, split: str) -> RawSplit:
        path, sl, rel, note = self._resolve(family, lang, split)
        examples, digest = read_file(path, family)
        if sl is not None:
            if sl[1] > len(examples):
                raise DataFormatError(
                    f"{self.manifest_path}: {family}.{lang}.{split} -> {rel}: slice "
                    f"[{sl[0]}, {sl[1]}) but the file has {len(examples)} sentences"
                )
            examples = examples[sl[0]:sl[1]]
        return RawSplit(examples, str(path), note, _fingerprint(digest, sl))

    def languages(self, family: str) -> tuple[str, ...]:
        fam = self.manifest.get(family)
        return tuple(fam) if isinstance(fam, dict) else ()

    def splits(self, family: str, lang: str) -> tuple[str, ...]:
        entry = self._lang_entry(family, lang)
        return tuple(s for s in SPLITS if s in entry)

    def treebank(self, lang: str) -> str | None:
        entry = self.manifest.get("ud", {}).get(lang)
        return entry.get("treebank") if isinstance(entry, dict) else None


def hub_offline() -> bool:
    """Return True when `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` (1/on/yes/true), or
    huggingface_hub's own offline constant, asks for no network access."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any(
        str(f).strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags if f)


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


@contextlib.contextmanager
def _cache_only(active: bool):
    """With `active`, make `datasets` and `huggingface_hub` read their local caches only
    (as HF_HUB_OFFLINE would, set after import): an unreachable hub then fails at once
    instead of after the network's timeouts, and what is cached still loads."""
    if not active:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


class HubSource(Source):
    """The official releases, fetched over the network (needs internet).

    - WikiANN: `datasets.load_dataset("unimelb-nlp/wikiann", lang)` (Rahimi et al. splits).
    - XNLI: `datasets.load_dataset("facebook/xnli", lang)` (train = XNLI-MT).
    - UD: the r2.7 CoNLL-U files of each treebank's GitHub repository, downloaded once into
      `cache_dir()/hub-data/ud/`. (The hub's `universal_dependencies` dataset is
      script-based, and recent `datasets` versions no longer run dataset scripts.)
    Our `dev` is the hub's `validation` split.

    Mirrors (environment variables, read at each call): `XINTERP_WIKIANN_REPO` and
    `XINTERP_XNLI_REPO` replace the hub ids in the same `load_dataset(repo, lang)` call
    (another hub id, or a local folder laid out like the hub repository: a config per
    language); `XINTERP_UD_URL` replaces the base URL
    `https://raw.githubusercontent.com/UniversalDependencies`, below which the files are
    `{base}/UD_English-EWT/r2.7/en_ewt-ud-dev.conllu` and so on. A mirror named this way
    is used even when `HF_HUB_OFFLINE` is set: those flags concern the Hugging Face hub.
    """

    name = "hub"
    UD_TREEBANKS: ClassVar[dict[str, tuple[str, str]]] = {
        "en": ("en_ewt", "UD_English-EWT"), "de": ("de_gsd", "UD_German-GSD"),
        "es": ("es_gsd", "UD_Spanish-GSD"), "fr": ("fr_gsd", "UD_French-GSD"),
        "ru": ("ru_gsd", "UD_Russian-GSD"), "zh": ("zh_gsd", "UD_Chinese-GSD"),
        "vi": ("vi_vtb", "UD_Vietnamese-VTB"), "ar": ("ar_padt", "UD_Arabic-PADT"),
        "hi": ("hi_hdtb", "UD_Hindi-HDTB"),
    }
    UD_BASE_URL = "https://raw.githubusercontent.com/UniversalDependencies"
    UD_URL = "{base}/{repo}/r2.7/{tb}-ud-{split}.conllu"
    UD_URL_ENV = "XINTERP_UD_URL"
    HF_IDS: ClassVar[dict[str, str]] = {"wikiann": "unimelb-nlp/wikiann", "xnli": "facebook/xnli"}
    REPO_ENV: ClassVar[dict[str, str]] = {"wikiann": "XINTERP_WIKIANN_REPO",
                                          "xnli": "XINTERP_XNLI_REPO"}
    HF_SPLITS: ClassVar[dict[str, str]] = {"train": "train", "dev": "validation", "test": "test"}

    def __repr__(self) -> str:
        return "HubSource()"

    def _check(self, family: str, lang: str, split: str) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown dataset family {family!r}; expected one of {FAMILIES}")
        if lang not in LANGS or split not in SPLITS:
            raise MissingSplitError(f"hub: no entry {family}.{lang}.{split}")

    def repo(self, family: str) -> str:
        """Return the dataset id (or local folder) `load_dataset` reads for `family`:
        `$XINTERP_WIKIANN_REPO` / `$XINTERP_XNLI_REPO`, else the hub id."""
        return os.environ.get(self.REPO_ENV[family]) or self.HF_IDS[family]

    def ud_base_url(self) -> str:
        """Return the base URL of the UD r2.7 downloads (`$XINTERP_UD_URL`, else GitHub's)."""
        return (os.environ.get(self.UD_URL_ENV) or self.UD_BASE_URL).rstrip("/")

    def ud_url(self, lang: str, split: str) -> str:
        """Return the URL of the UD r2.7 CoNLL-U file of `lang`'s treebank for `split`."""
        tb, repo = self.UD_TREEBANKS[lang]
        return self.UD_URL.format(base=self.ud_base_url(), repo=repo, tb=tb, split=split)

    def ud_file(self, lang: str, split: str) -> Path:
        """Return the local copy of the UD r2.7 file, downloading it if missing.

        Copies of different base URLs are kept apart, so a mirror never stands in for
        GitHub's files in the cache (or the other way round)."""
        tb, _repo = self.UD_TREEBANKS[lang]
        base = self.ud_base_url()
        folder = cache_dir() / "hub-data" / "ud"
        if base != self.UD_BASE_URL:
            folder = folder / hashlib.sha256(base.encode()).hexdigest()[:12]
        path = folder / f"{tb}-ud-{split}.conllu"
        if path.is_file():
            return path
        url = self.ud_url(lang, split)
        what = f"dataset UD r2.7 {tb} ({lang}, {split})"
        from urllib.parse import urlsplit

        from .hub import DATA_WAYS_OUT, url_unreachable_reason

        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        why = url_unreachable_reason(origin, respect_offline=base == self.UD_BASE_URL)
        if why is not None:
            raise RuntimeError(
                f"{what} cannot be loaded: {why}, and {path} is not cached, so {url} "
                f"cannot be downloaded. Ways out: {DATA_WAYS_OUT}."
            )
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"{what} cannot be downloaded: {url} answered HTTP {exc.code} {exc.reason}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"{what} cannot be downloaded from {url}: {exc}") from exc
        if not raw.strip():
            raise DataFormatError(f"{url}: empty file")
        with atomic_write(path) as handle:
            handle.write(raw)
        return path

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def _hf_split(family: str, dataset: str, lang: str, hf_split: str) -> tuple[tuple, str]:
        import datasets

        from .hub import DATA_WAYS_OUT, unreachable_reason

        local = Path(dataset).expanduser().is_dir()
        why = None if local else unreachable_reason()
        name = HubSource.HF_IDS[family]
        label = name if dataset == name else f"{name} (from {dataset})"
        try:
            with _cache_only(why is not None):
                ds = datasets.load_dataset(dataset, lang, split=hf_split)
        except Exception as exc:  # any loader failure gets the same context
            hint = (f": {why}, and it is not in the local cache. Ways out: {DATA_WAYS_OUT}"
                    if why is not None else "")
            raise RuntimeError(
                f"dataset {label} ({lang}, {hf_split}) cannot be loaded{hint} ({exc})"
            ) from exc
        where = f"dataset {label} ({lang}, {hf_split})"
        if family == "wikiann":
            examples = wikiann_from_hub(ds, where)
            content = [[e.words, e.tags] for e in examples]
        else:
            examples = xnli_from_hub(ds, where)
            content = [[e.premise, e.hypothesis, e.label] for e in examples]
        digest = hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()
        return examples, digest

    def read(self, family: str, lang: str, split: str) -> RawSplit:
        self._check(family, lang, split)
        if family == "ud":
            path = self.ud_file(lang, split)
            examples, digest = read_file(path, "ud")
            return RawSplit(examples, str(path), None, _fingerprint(digest, None))
        dataset = self.repo(family)
        examples, digest = self._hf_split(family, dataset, lang, self.HF_SPLITS[split])
        where = (f"{dataset}/{lang}/{self.HF_SPLITS[split]}" if Path(dataset).is_dir()
                 else f"hf://datasets/{dataset}/{lang}/{self.HF_SPLITS[split]}")
        return RawSplit(examples, where, None, _fingerprint(digest, None))

    def languages(self, family: str) -> tuple[str, ...]:
        return LANGS

    def splits(self, family: str, lang: str) -> tuple[str, ...]:
        return SPLITS

    def treebank(self, lang: str) -> str | None:
        return self.UD_TREEBANKS.get(lang, (None,))[0]


@functools.lru_cache(maxsize=8)
def _offline_source(path: str) -> OfflineSource:
    return OfflineSource(path)


def default_source() -> Source:
    """Return the offline source if `offline_data_dir()` finds a manifest, else the hub."""
    data = offline_data_dir()
    return _offline_source(str(data)) if data is not None else HubSource()


def resolve_source(source: Source | str | os.PathLike | None = None) -> Source:
    """Return a Source from a Source, a data folder path, `"hub"`, or None (the default)."""
    if source is None:
        return default_source()
    if isinstance(source, Source):
        return source
    if isinstance(source, str) and source == "hub":
        return HubSource()
    if isinstance(source, (str, os.PathLike)):
        return _offline_source(str(Path(source).expanduser().resolve()))
    raise TypeError(f"source must be a Source, a data folder, 'hub' or None; got {source!r}")


def load_split(task: str, lang: str, split: str,
               source: Source | str | os.PathLike | None = None) -> Split:
    """Return the `Split` of `task` (xnli, ner, pos, parsing) in `lang` for `split`.

    POS and parsing read the same CoNLL-U file: POS examples are `TaggedSentence(words, upos)`.
    """
    if task not in labels.TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {labels.TASKS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    raw = resolve_source(source).read(labels.TASK_FAMILY[task], lang, split)
    if task == "pos":
        examples = [TaggedSentence(s.words, s.upos) for s in raw.examples]
    else:
        examples = list(raw.examples)
    return Split(task, lang, split, examples, raw.path, raw.substitute, raw.fingerprint)
