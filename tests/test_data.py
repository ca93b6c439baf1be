"""Readers and sources: known values of the real data, and clear errors on bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from xinterp_utils import data, readers
from xinterp_utils.data import MissingSplitError
from xinterp_utils.readers import DataFormatError, ParsedSentence, SentencePair, TaggedSentence

# ------------------------------------------------------------------ real data


def test_en_ewt_dev_first_sentence(data_dir):
    first = readers.read_conllu(data_dir / "ud/en_ewt-ud-dev.conllu")[0]
    assert first == ParsedSentence(
        words=["From", "the", "AP", "comes", "this", "story", ":"],
        upos=["ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT"],
        heads=[3, 3, 4, 0, 6, 4, 4],
        deprels=["case", "det", "obl", "root", "det", "nsubj", "punct"],
    )


def test_multiword_token_skipped_and_subtype_stripped(data_dir):
    # en dev sentence 7: "1-2 Today's" is a multiword token; word 1 is nmod:poss.
    sent = readers.read_conllu(data_dir / "ud/en_ewt-ud-dev.conllu")[7]
    assert sent.words[:4] == ["Today", "'s", "incident", "proves"]
    assert "Today's" not in sent.words
    assert len(sent.words) == 16
    assert sent.deprels[0] == "nmod" and sent.deprels[8] == "nmod"  # nmod:poss
    assert sent.heads[:4] == [3, 1, 4, 0]


def test_french_contractions(data_dir):
    # fr-ud-dev_00006: "des" (18-19) and "du" (23-24) are split into de+les, de+le.
    path = data_dir / "ud/fr_gsd-ud-dev.conllu"
    sent = readers.read_conllu(path)[5]
    assert sent.words[17:19] == ["de", "les"] and sent.words[22:24] == ["de", "le"]
    assert "du" not in sent.words and "des" not in sent.words
    assert sent.deprels[1] == "flat" and sent.deprels[8] == "obl"  # flat:name, obl:arg
    # Across the file: one word per integer-ID line; the 1057 range lines contribute none.
    text = path.read_text(encoding="utf-8")
    assert len(re.findall(r"^\d+-\d+\t", text, re.MULTILINE)) == 1057
    words = sum(len(s.words) for s in readers.read_conllu(path))
    assert words == len(re.findall(r"^\d+\t", text, re.MULTILINE))
    assert all(":" not in r for s in readers.read_conllu(path) for r in s.deprels)


def test_empty_nodes_skipped(data_dir):
    sents = readers.read_conllu(data_dir / "ud/en_ewt-ud-dev.conllu")
    (sent,) = [s for s in sents if s.words[:4] == ["It", "'s", "more", "compact"]]
    assert len(sent.words) == 26  # the empty nodes 10.1 and 21.1 ("has") are not words
    assert "has" not in sent.words
    assert sent.heads[11] == 10 and sent.deprels[11] == "orphan"


def test_words_with_spaces_kept_whole(data_dir):
    sents = readers.read_conllu(data_dir / "ud/vi_vtb-ud-dev.conllu")
    assert any("anh trai" in s.words for s in sents)


def test_wikiann_and_xnli_first_examples(data_dir):
    first = readers.read_wikiann(data_dir / "wikiann/dev-en.tsv")[0]
    assert first.words == ["Sioux", "Falls", "Arena", "(", "Sioux", "Falls", ",", "South",
                           "Dakota", ")"]
    assert first.tags == ["B-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC",
                          "I-LOC", "O"]
    pair = readers.read_xnli(data_dir / "xnli/dev-en.tsv")[0]
    assert pair == SentencePair("And he said, Mama, I'm home.",
                                "He called his mom as soon as the school bus dropped him off.",
                                "neutral")


def test_load_split_types_and_substitutes(data_dir):
    pos = data.load_split("pos", "en", "dev")
    parse = data.load_split("parsing", "en", "dev")
    assert isinstance(pos.examples[0], TaggedSentence)
    assert pos.examples[0].tags == parse.examples[0].upos
    assert pos.substitute is None and Path(pos.path).name == "en_ewt-ud-dev.conllu"
    assert len(pos.fingerprint) == 64

    de_train = data.load_split("parsing", "de", "train")
    assert "test split is used as training data" in de_train.substitute
    assert Path(de_train.path).name == "de_gsd-ud-test.conllu"
    assert data.load_split("parsing", "de", "dev").substitute is None
    assert data.load_split("xnli", "fr", "train").substitute.startswith("XNLI-MT")
    assert data.load_split("xnli", "fr", "dev").substitute is None
    assert data.load_split("ner", "hi", "train").substitute is None


def test_slices(data_dir):
    whole = readers.read_conllu(data_dir / "ud/ar_pud-ud-test.conllu")
    train = data.load_split("parsing", "ar", "train")
    dev = data.load_split("parsing", "ar", "dev")
    assert (len(train), len(dev)) == (800, 200)
    assert train.examples[0] == whole[0] and dev.examples[0] == whole[800]
    assert dev.examples[-1] == whole[999]
    assert "PUD" in train.substitute and "PUD" in dev.substitute
    assert train.fingerprint != dev.fingerprint  # same file, different slice


def test_fingerprint_follows_content(tmp_path, data_dir):
    folder = tmp_path / "d"
    (folder / "ud").mkdir(parents=True)
    shutil.copy(data_dir / "ud/zh_gsd-ud-dev.conllu", folder / "ud/zh.conllu")
    manifest = {"format_version": 1, "ud": {"zh": {"dev": "ud/zh.conllu"}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = data.load_split("pos", "zh", "dev", source=folder)
    assert before.fingerprint == data.load_split("pos", "zh", "dev", source=str(folder)).fingerprint
    text = (folder / "ud/zh.conllu").read_text(encoding="utf-8")
    (folder / "ud/zh.conllu").write_text(text.replace("\tNOUN\t", "\tVERB\t", 1), encoding="utf-8")
    after = data.load_split("pos", "zh", "dev", source=folder)
    assert after.fingerprint != before.fingerprint
    assert after.examples != before.examples  # the edited file was read again


def test_parsed_files_cached_in_memory(data_dir):
    a = data.load_split("parsing", "vi", "train")
    b = data.load_split("parsing", "vi", "train")
    assert a.examples[0] is b.examples[0]
    assert len(a) == 1400


def test_resolve_source(data_dir):
    assert isinstance(data.resolve_source(None), data.OfflineSource)
    assert isinstance(data.resolve_source("hub"), data.HubSource)
    src = data.resolve_source(str(data_dir))
    assert isinstance(src, data.OfflineSource) and src.data_dir == data_dir.resolve()
    assert data.resolve_source(src) is src
    with pytest.raises(TypeError, match="source must be"):
        data.resolve_source(42)


def test_unknown_task_split_and_language(data_dir):
    with pytest.raises(ValueError, match="unknown task 'ner2'"):
        data.load_split("ner2", "en", "dev")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        data.load_split("ner", "en", "valid")
    with pytest.raises(MissingSplitError, match=r"manifest\.json: no entry wikiann\.xx"):
        data.load_split("ner", "xx", "dev")


def test_hub_source_refuses_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XINTERP_CACHE", str(tmp_path))
    hub = data.HubSource()
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=1.*en_ewt-ud-dev.conllu"):
        hub.read("ud", "en", "dev")
    with pytest.raises(RuntimeError, match="unimelb-nlp/wikiann .*HF_HUB_OFFLINE=1"):
        hub.read("wikiann", "en", "dev")
    assert hub.treebank("ar") == "ar_padt" and hub.treebank("hi") == "hi_hdtb"


# ------------------------------------------------------------------ bad input


GOOD_ROWS = [
    "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_",
    "2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_",
    "3\tbarks\tbark\tVERB\tVBZ\t_\t0\troot\t_\t_",
]


def _conllu(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "bad.conllu"
    # Line 1 is a comment, so row i is on line i + 2.
    path.write_text("# sent_id = 1\n" + "\n".join(rows) + "\n\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("row, message", [
    ("2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_", "expected 10 tab-separated columns, found 9"),
    ("2\tdog\tdog\tNOUN\tNN\t_\tx\tnsubj\t_\t_", "HEAD 'x' is not a non-negative integer"),
    ("2\tdog\tdog\tNOUN\tNN\t_\t-1\tnsubj\t_\t_", "HEAD '-1' is not a non-negative integer"),
    ("2\tdog\tdog\tNOUN\tNN\t_\t4\tnsubj\t_\t_", "HEAD 4 out of range: the sentence has 3 words"),
    ("2\tdog\tdog\tNOM\tNN\t_\t3\tnsubj\t_\t_", "unknown UPOS 'NOM'"),
    ("2\tdog\tdog\tNOUN\tNN\t_\t3\tsubject:x\t_\t_", "unknown DEPREL 'subject:x'"),
    ("5\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_", "word ID 5 out of sequence"),
    ("2-x\tdog\t_\t_\t_\t_\t_\t_\t_\t_", "invalid ID '2-x'"),
])
def test_conllu_errors_name_file_and_line(tmp_path, row, message):
    path = _conllu(tmp_path, [GOOD_ROWS[0], row, GOOD_ROWS[2]])
    with pytest.raises(DataFormatError) as info:
        readers.read_conllu(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)


def test_conllu_second_sentence_line_numbers(tmp_path):
    path = tmp_path / "two.conllu"
    rows = "\n".join(GOOD_ROWS)
    path.write_text(f"{rows}\n\n{rows}\n4\tx\tx\tX\tX\t_\t9\tdep\t_\t_\n\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"^{re.escape(str(path))}:8: HEAD 9 out of range"):
        readers.read_conllu(path)


def test_good_conllu_with_crlf_and_no_final_blank(tmp_path):
    path = tmp_path / "ok.conllu"
    path.write_bytes(("\r\n".join(["# c"] + GOOD_ROWS)).encode())
    (sent,) = readers.read_conllu(path)
    assert sent.words == ["The", "dog", "barks"] and sent.heads == [2, 3, 0]


@pytest.mark.parametrize("lines, line, message", [
    (["Paris\tB-LOC", "is\tO\textra"], 2,
     "expected 2 tab-separated fields (token, IOB2 tag), found 3"),
    (["Paris\tB-LOC", "", "is"], 3, "expected 2 tab-separated fields"),
    (["Paris\tB-LOC", "is\tB-CITY"], 2, "unknown NER tag 'B-CITY'"),
])
def test_wikiann_errors(tmp_path, lines, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        readers.read_wikiann(path)
    assert str(info.value).startswith(f"{path}:{line}: ") and message in str(info.value)


@pytest.mark.parametrize("lines, line, message", [
    (["a\tb\tneutral", "a\tb"], 2, "expected 3 tab-separated fields"),
    (["a\tb\tneutral", "a\tb\tmaybe"], 2, "unknown XNLI label 'maybe'"),
])
def test_xnli_errors(tmp_path, lines, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        readers.read_xnli(path)
    assert str(info.value).startswith(f"{path}:{line}: ") and message in str(info.value)


@pytest.mark.parametrize("reader", [readers.read_conllu, readers.read_wikiann, readers.read_xnli])
def test_empty_and_missing_files(tmp_path, reader):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"^{re.escape(str(empty))}: empty file"):
        reader(empty)
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(str(missing))}: no such file"):
        reader(missing)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("a\tO\n\ncaf\u00e9\tO\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:3: not valid UTF-8"):
        readers.read_wikiann(path)


def _manifest(tmp_path: Path, ud: dict) -> Path:
    folder = tmp_path / "data"
    (folder / "ud").mkdir(parents=True)
    (folder / "ud/ok.conllu").write_text("\n".join(GOOD_ROWS) + "\n", encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, "ud": ud}))
    return folder


def test_manifest_entry_pointing_nowhere(tmp_path):
    folder = _manifest(tmp_path, {"de": {"train": "ud/x.conllu", "dev": "ud/ok.conllu"}})
    manifest = folder / "manifest.json"
    with pytest.raises(FileNotFoundError) as info:
        data.load_split("parsing", "de", "train", source=folder)
    assert str(info.value) == f"{manifest}: ud.de.train -> ud/x.conllu: no such file"
    assert len(data.load_split("parsing", "de", "dev", source=folder)) == 1


def test_manifest_missing_keys(tmp_path):
    folder = _manifest(tmp_path, {"de": {"dev": "ud/ok.conllu"}})
    manifest = folder / "manifest.json"
    with pytest.raises(MissingSplitError) as info:
        data.load_split("pos", "de", "test", source=folder)
    assert str(info.value).startswith(f"{manifest}: no entry ud.de.test")
    with pytest.raises(MissingSplitError, match=r"manifest\.json: no entry ud\.fr$"):
        data.load_split("pos", "fr", "dev", source=folder)
    with pytest.raises(MissingSplitError, match=r"manifest\.json: no entry xnli\.de$"):
        data.load_split("xnli", "de", "dev", source=folder)


def test_manifest_bad_slices(tmp_path):
    folder = _manifest(tmp_path, {
        "de": {"train": {"file": "ud/ok.conllu", "sentences": [0, 5]},
               "dev": {"file": "ud/ok.conllu", "sentences": [1, 0]}},
    })
    with pytest.raises(DataFormatError, match=r"ud\.de\.train -> ud/ok\.conllu: slice \[0, 5\) "
                                              r"but the file has 1 sentences"):
        data.load_split("pos", "de", "train", source=folder)
    with pytest.raises(DataFormatError, match=r"ud\.de\.dev\.sentences must be \[start, stop\)"):
        data.load_split("pos", "de", "dev", source=folder)


def test_manifest_invalid(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format_version": 1,\n "ud": }')
    with pytest.raises(DataFormatError, match=r"manifest\.json:2: "):
        data.OfflineSource(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format_version": 2}')
    with pytest.raises(DataFormatError, match="format_version must be 1"):
        data.OfflineSource(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere/manifest\.json: no such file"):
        data.OfflineSource(tmp_path / "nowhere")


def test_hub_records_converted():
    from datasets import ClassLabel, Dataset, Features, List, Value

    ner = Features({"tokens": List(Value("string")),
                    "ner_tags": List(ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG",
                                                       "B-LOC", "I-LOC"]))})
    ds = Dataset.from_dict({"tokens": [["Ada", "Lovelace", "wrote"]], "ner_tags": [[1, 2, 0]]},
                           features=ner)
    assert readers.wikiann_from_hub(ds, "w") == (
        TaggedSentence(["Ada", "Lovelace", "wrote"], ["B-PER", "I-PER", "O"]),)

    nli = Features({"premise": Value("string"), "hypothesis": Value("string"),
                    "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
    ds = Dataset.from_dict({"premise": ["p0", "p1", "p2"], "hypothesis": ["h0", "h1", "h2"],
                            "label": [2, 0, 1]}, features=nli)
    assert [e.label for e in readers.xnli_from_hub(ds, "x")] == [
        "contradiction", "entailment", "neutral"]
    bad = Features({**nli, "label": ClassLabel(names=["yes", "no"])})
    ds = Dataset.from_dict({"premise": ["p"], "hypothesis": ["h"], "label": [0]}, features=bad)
    with pytest.raises(DataFormatError, match="x: unknown XNLI labels"):
        readers.xnli_from_hub(ds, "x")


@pytest.mark.parametrize(("hf", "tf", "const", "want"), [
    ("1", "", False, True), ("", "yes", False, True), ("false", "off", False, False),
    ("", "", True, True), ("", "", False, False)])
def test_hub_offline_reads_both_flags_and_the_hub_constant(monkeypatch, hf, tf, const, want):
    from huggingface_hub import constants

    from xinterp_utils.hub import hub_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", hf)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", tf)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", const)
    assert hub_offline() is want
