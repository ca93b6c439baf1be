"""HubSource through the real `datasets` library and a real HTTP server, on local data.

The hub datasets are rebuilt in tmp, at test time, from a few dozen sentences of the
offline copies (read in place from XINTERP_DATA), with the hub repositories' schemas and
layout: `unimelb-nlp/wikiann` (a config per language; `tokens`, `ner_tags` as ClassLabel
O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC, `langs`, `spans`) and `facebook/xnli` (a
config per language; `premise`, `hypothesis`, `label` as ClassLabel entailment, neutral,
contradiction), each split a parquet file under `<config>/` and a README.md whose YAML
`configs:` block maps config names to data files, as on the hub. HubSource is pointed at
them with XINTERP_WIKIANN_REPO / XINTERP_XNLI_REPO and runs its own
`datasets.load_dataset(repo, lang, split=...)` call. UD r2.7 files are served by
`http.server` on 127.0.0.1 under their real paths (`UD_English-EWT/r2.7/en_ewt-ud-dev.conllu`,
symlinks to the offline files) and reached through XINTERP_UD_URL.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from xinterp_utils import data, labels, readers
from xinterp_utils.readers import DataFormatError, SentencePair, TaggedSentence

N_SENTENCES = 12  # a split: enough for several tag types, small enough to build in ms
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
WIKIANN_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]  # the hub's order
XNLI_NAMES = ["entailment", "neutral", "contradiction"]
LANGS = ("en", "de")


def _offline(data_dir, family, lang, split, start=0):
    """N_SENTENCES examples of an offline split, read in place."""
    return list(data.OfflineSource(data_dir).read(family, lang, split).examples[
        start:start + N_SENTENCES])


def _spans(sentence: TaggedSentence) -> list[str]:
    """WikiANN's `spans` column: `TYPE: words` for each entity."""
    spans, current = [], None
    for word, tag in zip(sentence.words, sentence.tags, strict=True):
        if tag.startswith("B-") or (tag.startswith("I-") and current is None):
            current = [tag[2:], [word]]
            spans.append(current)
        elif tag.startswith("I-"):
            current[1].append(word)
        else:
            current = None
    return [f"{kind}: {' '.join(words)}" for kind, words in spans]


def _write_repo(root: Path, tables: dict[str, dict[str, object]]) -> Path:
    """Lay out {config: {hub split: Dataset}} like a hub dataset repository."""
    lines = ["---", "configs:"]
    for config, splits in tables.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, ds in splits.items():
            ds.to_parquet(root / config / f"{split}-00000-of-00001.parquet")
            lines += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    lines += ["---", "", "Local stand-in with the hub repository's layout (tests).", ""]
    (root / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return root


def _wikiann_repo(root: Path, data_dir, names=WIKIANN_NAMES) -> Path:
    from datasets import ClassLabel, Dataset, Features, List, Value

    features = Features({"tokens": List(Value("string")),
                         "ner_tags": List(ClassLabel(names=names)),
                         "langs": List(Value("string")), "spans": List(Value("string"))})
    tables = {}
    for lang in LANGS:
        tables[lang] = {}
        for split, hub_split in HUB_SPLITS.items():
            # A label the project does not know is written by its id in `names`.
            sents = _offline(data_dir, "wikiann", lang, split)
            index = {name: i for i, name in enumerate(names)}
            tables[lang][hub_split] = Dataset.from_dict({
                "tokens": [s.words for s in sents],
                "ner_tags": [[index.get(t, 0) for t in s.tags] for s in sents],
                "langs": [[lang] * len(s.words) for s in sents],
                "spans": [_spans(s) for s in sents]}, features=features)
    return _write_repo(root, tables)


def _xnli_repo(root: Path, data_dir, names=XNLI_NAMES) -> Path:
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=names)})
    tables = {}
    for lang in LANGS:
        tables[lang] = {}
        # Offline XNLI has dev and test files; three disjoint slices stand for the splits.
        for k, hub_split in enumerate(HUB_SPLITS.values()):
            pairs = _offline(data_dir, "xnli", lang, "dev", start=k * N_SENTENCES)
            index = {name: i for i, name in enumerate(names)}
            tables[lang][hub_split] = Dataset.from_dict({
                "premise": [p.premise for p in pairs], "hypothesis": [p.hypothesis for p in pairs],
                "label": [index.get(p.label, 0) for p in pairs]}, features=features)
    return _write_repo(root, tables)


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """A fresh datasets cache and xinterp cache in tmp; HubSource's memoised loads dropped."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    monkeypatch.setenv("XINTERP_CACHE", str(tmp_path / "xinterp-cache"))
    data.HubSource._hf_split.cache_clear()
    yield tmp_path
    data.HubSource._hf_split.cache_clear()


def test_wikiann_hub_schema_gives_tagged_sentences(hub_env, data_dir, monkeypatch):
    repo = _wikiann_repo(hub_env / "wikiann", data_dir)
    monkeypatch.setenv("XINTERP_WIKIANN_REPO", str(repo))
    hub = data.HubSource()
    assert hub.repo("wikiann") == str(repo)
    for lang in LANGS:
        for split in data.SPLITS:
            got = data.load_split("ner", lang, split, source=hub)
            want = _offline(data_dir, "wikiann", lang, split)
            assert got.examples == want, (lang, split)
            assert all(type(e) is TaggedSentence for e in got.examples)
            assert got.path == f"{repo}/{lang}/{HUB_SPLITS[split]}"
            assert got.substitute is None
    # The slice is not trivial: several entity types, and names map through the ClassLabel.
    tags = {t for s in data.load_split("ner", "en", "train", source=hub).examples for t in s.tags}
    assert {"O", "B-PER", "B-ORG", "B-LOC"} <= tags <= set(labels.NER_LABELS)


def test_wikiann_classlabel_ids_are_mapped_by_their_names(hub_env, data_dir, monkeypatch):
    # The same sentences with the ClassLabel's names in another order: other ids in the
    # parquet files, the same tags out.
    shuffled = WIKIANN_NAMES[::-1]
    repo = _wikiann_repo(hub_env / "wikiann-shuffled", data_dir, names=shuffled)
    monkeypatch.setenv("XINTERP_WIKIANN_REPO", str(repo))
    got = data.load_split("ner", "de", "dev", source=data.HubSource())
    assert got.examples == _offline(data_dir, "wikiann", "de", "dev")


def test_xnli_hub_schema_gives_sentence_pairs(hub_env, data_dir, monkeypatch):
    repo = _xnli_repo(hub_env / "xnli", data_dir)
    monkeypatch.setenv("XINTERP_XNLI_REPO", str(repo))
    hub = data.HubSource()
    for lang in LANGS:
        for k, split in enumerate(data.SPLITS):
            got = data.load_split("xnli", lang, split, source=hub)
            assert got.examples == _offline(data_dir, "xnli", lang, "dev", start=k * N_SENTENCES)
            assert all(type(e) is SentencePair for e in got.examples)
    labels_seen = {e.label for e in data.load_split("xnli", "en", "train", source=hub).examples}
    assert labels_seen == set(XNLI_NAMES)
    # Fingerprints follow the content: another split, another fingerprint.
    assert (data.load_split("xnli", "en", "dev", source=hub).fingerprint
            != data.load_split("xnli", "en", "test", source=hub).fingerprint)


def test_unknown_labels_name_the_dataset(hub_env, data_dir, monkeypatch):
    ner = _wikiann_repo(hub_env / "wikiann-misc", data_dir,
                        names=[*WIKIANN_NAMES, "B-MISC", "I-MISC"])
    monkeypatch.setenv("XINTERP_WIKIANN_REPO", str(ner))
    with pytest.raises(DataFormatError,
                       match=r"dataset unimelb-nlp/wikiann \(from .*wikiann-misc\) \(en, "
                             r"validation\): unknown NER tags \['B-MISC', 'I-MISC'\]"):
        data.load_split("ner", "en", "dev", source=data.HubSource())
    nli = _xnli_repo(hub_env / "xnli-yesno", data_dir, names=["yes", "no", "neutral"])
    monkeypatch.setenv("XINTERP_XNLI_REPO", str(nli))
    with pytest.raises(DataFormatError,
                       match=r"dataset facebook/xnli \(from .*xnli-yesno\) \(de, train\): "
                             r"unknown XNLI labels \['no', 'yes'\]"):
        data.load_split("xnli", "de", "train", source=data.HubSource())
    # A config the repository does not have: the loader's error, with the dataset named.
    monkeypatch.setenv("XINTERP_XNLI_REPO", str(hub_env / "xnli-yesno"))
    with pytest.raises(RuntimeError, match=r"dataset facebook/xnli \(from .*\) \(zh, train\) "
                                           r"cannot be loaded"):
        data.load_split("xnli", "zh", "train", source=data.HubSource())


def test_classlabel_ids_outside_the_names_are_refused():
    import pyarrow as pa
    from datasets import ClassLabel, Dataset, DatasetInfo, Features, Value

    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=XNLI_NAMES)})
    # Ids as a parquet file can hold them: datasets does not check ClassLabel ranges on read.
    table = pa.table({"premise": ["p0", "p1"], "hypothesis": ["h0", "h1"], "label": [2, 7]})
    bad = Dataset(table, info=DatasetInfo(features=features))
    with pytest.raises(DataFormatError, match=r"xnli-x: row 1: label id 7 outside"):
        readers.xnli_from_hub(bad, "xnli-x")
    plain = Dataset.from_dict({"premise": ["p"], "hypothesis": ["h"], "label": [0]})
    with pytest.raises(DataFormatError, match="xnli-x: column 'label' must be a ClassLabel"):
        readers.xnli_from_hub(plain, "xnli-x")


# ------------------------------------------------------------------ UD over HTTP


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):  # keep pytest's output clean; remember the paths
        self.server.seen.append(self.path)


@pytest.fixture
def ud_server(tmp_path, data_dir):
    """http.server on 127.0.0.1 serving UD r2.7's real paths (symlinks to the offline files)."""
    root = tmp_path / "ud-mirror"
    served = {("UD_English-EWT", "en_ewt-ud-dev.conllu"), ("UD_English-EWT", "en_ewt-ud-test.conllu"),
              ("UD_German-GSD", "de_gsd-ud-dev.conllu")}
    for repo, name in served:
        target = root / repo / "r2.7" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(data_dir / "ud" / name)
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.shutdown()
        server.server_close()


def test_ud_downloads_match_the_offline_files(hub_env, data_dir, ud_server, monkeypatch):
    base, seen = ud_server
    monkeypatch.setenv("XINTERP_UD_URL", base + "/")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a mirror the user named is still used
    hub, offline = data.HubSource(), data.OfflineSource(data_dir)
    assert hub.ud_url("en", "dev") == f"{base}/UD_English-EWT/r2.7/en_ewt-ud-dev.conllu"
    for task in ("parsing", "pos"):
        for lang, split in (("en", "dev"), ("en", "test"), ("de", "dev")):
            got = data.load_split(task, lang, split, source=hub)
            want = data.load_split(task, lang, split, source=offline)
            assert got.examples == want.examples, (task, lang, split)
            assert got.fingerprint == want.fingerprint  # the same bytes
            assert len(got) > 100
    gets = [p for p in seen if p.endswith(".conllu")]
    # Each file fetched once (then read from the cache), under its real name.
    assert sorted(gets) == ["/UD_English-EWT/r2.7/en_ewt-ud-dev.conllu",
                            "/UD_English-EWT/r2.7/en_ewt-ud-test.conllu",
                            "/UD_German-GSD/r2.7/de_gsd-ud-dev.conllu"]
    # The default base URL's copies are kept apart from the mirror's.
    assert not (Path(hub_env) / "xinterp-cache" / "hub-data" / "ud" / "en_ewt-ud-dev.conllu").exists()


def test_ud_404_names_the_url(hub_env, ud_server, monkeypatch):
    base, _ = ud_server
    monkeypatch.setenv("XINTERP_UD_URL", base)
    url = f"{base}/UD_Russian-GSD/r2.7/ru_gsd-ud-train.conllu"
    with pytest.raises(RuntimeError, match=rf"UD r2.7 ru_gsd \(ru, train\) cannot be downloaded: "
                                           rf"{url} answered HTTP 404"):
        data.HubSource().read("ud", "ru", "train")
    assert not list((Path(hub_env) / "xinterp-cache").rglob("ru_gsd-ud-train.conllu"))


def test_ud_unreachable_mirror_names_the_url(hub_env, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("XINTERP_UD_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(RuntimeError, match=rf"http://127.0.0.1:{port} is unreachable.*"
                                           rf"UD_English-EWT/r2.7/en_ewt-ud-train.conllu"):
        data.HubSource().read("ud", "en", "train")
