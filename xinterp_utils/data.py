"""The two sources of the datasets behind one interface, and `load_split`.

`load_split(task, lang, split, source=None)` returns a `Split` of examples (the types of
`readers.py`). Sources: `OfflineSource` reads the files listed in a `manifest.json` (the
offline copies under `../shared/data`); `HubSource` fetches the official releases
(WikiANN and XNLI from the Hugging Face hub, UD r2.7 CoNLL-U files from the
UniversalDependencies GitHub repositories).
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
from urllib.parse import urlsplit

from . import labels
from .hub import DATA_WAYS_OUT, unreachable_reason, url_unreachable_reason
from .paths import atomic_write, cache_dir, offline_data_dir
from .readers import (
    FAMILIES,
    DataFormatError,
    TaggedSentence,
    fingerprint,
    read_file,
    wikiann_from_hub,
    xnli_from_hub,
)

SPLITS = ("train", "dev", "test")


class MissingSplitError(LookupError):
    """A (family, language, split) that a source does not have; the message names the key."""

    def __str__(self) -> str:  # LookupError would print the message quoted, like a key
        return str(self.args[0]) if self.args else ""


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
        return RawSplit(examples, str(path), note, fingerprint(digest, sl))

    def languages(self, family: str) -> tuple[str, ...]:
        fam = self.manifest.get(family)
        return tuple(fam) if isinstance(fam, dict) else ()

    def splits(self, family: str, lang: str) -> tuple[str, ...]:
        entry = self._lang_entry(family, lang)
        return tuple(s for s in SPLITS if s in entry)

    def treebank(self, lang: str) -> str | None:
        entry = self.manifest.get("ud", {}).get(lang)
        return entry.get("treebank") if isinstance(entry, dict) else None


@contextlib.contextmanager
def _cache_only(active: bool):
    """With `active`, make `datasets` and `huggingface_hub` read their local caches only
    (as HF_HUB_OFFLINE would, set after import): an unreachable hub then fails at once
    instead of after the network's timeouts, and what is cached still loads."""
    if not active:
        yield
        return
    # Imported here: only hub data needs them, and they take seconds to import.
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
        if lang not in labels.LANGUAGES or split not in SPLITS:
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
        # `datasets` (seconds to import) is needed only for hub data, never offline.
        import datasets

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
            return RawSplit(examples, str(path), None, fingerprint(digest, None))
        dataset = self.repo(family)
        examples, digest = self._hf_split(family, dataset, lang, self.HF_SPLITS[split])
        where = (f"{dataset}/{lang}/{self.HF_SPLITS[split]}" if Path(dataset).is_dir()
                 else f"hf://datasets/{dataset}/{lang}/{self.HF_SPLITS[split]}")
        return RawSplit(examples, where, None, fingerprint(digest, None))

    def languages(self, family: str) -> tuple[str, ...]:
        return labels.LANGUAGES

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
