"""Featurisation on real data with the offline-small tokenizer; cache; collation; batching.

The oracle for subword positions is each word tokenised on its own: with a word-level
pre-tokenised input the tokenizer encodes every word independently, so a sentence's
subwords are the concatenation of its words' subwords.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from xinterp_utils import data, features, labels
from xinterp_utils.data import Split
from xinterp_utils.readers import ParsedSentence, TaggedSentence

IGNORE = -100


@pytest.fixture(scope="module")
def tok():
    from xinterp_utils.encoders import load_tokenizer

    return load_tokenizer("offline-small")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XINTERP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


def _subset(split: Split, n: int) -> Split:
    return dataclasses.replace(split, examples=split.examples[:n],
                               fingerprint=f"{split.fingerprint}:first{n}")


def _split(task: str, examples: list, tag: str) -> Split:
    return Split(task, "en", "dev", examples, "<test>", None, f"test-{task}-{tag}")


def _word_ids(tok, words):
    """Per-word subword ids, each word tokenised on its own."""
    return [tok([[w]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
            for w in words]


def _scored(feats, example):
    """Return {word: (feature number, position, label)} of the features of one example."""
    out: dict[int, list] = {}
    for n, f in enumerate(feats):
        if f["example_index"] != example:
            continue
        for pos, (lab, w) in enumerate(zip(f["labels"], f["word_index"], strict=True)):
            assert (lab == IGNORE) == (w == IGNORE)
            if w != IGNORE:
                out.setdefault(w, []).append((n, pos, lab))
    return out


# ------------------------------------------------------------------ tagging


def test_labels_on_first_subwords(tok, data_dir):
    split = _subset(data.load_split("ner", "en", "dev"), 200)
    feats = features.build_features(split, tok, max_length=128)
    tag_id = {t: i for i, t in enumerate(labels.NER_LABELS)}
    assert [f["example_index"] for f in feats] == list(range(200))  # all fit in one window
    for i, (f, ex) in enumerate(zip(feats, split.examples, strict=True)):
        pieces = _word_ids(tok, ex.words)
        content = [p for word in pieces for p in word]
        assert f["input_ids"] == [tok.bos_token_id] + content + [tok.eos_token_id]
        starts = 1 + np.cumsum([0] + [len(p) for p in pieces[:-1]])
        expected = [IGNORE] * len(f["input_ids"])
        index = [IGNORE] * len(f["input_ids"])
        for w, s in enumerate(starts):
            expected[s] = tag_id[ex.tags[w]]
            index[s] = w
        assert f["labels"] == expected, i
        assert f["word_index"] == index, i
        assert "token_type_ids" not in f  # an XLM-R-style tokenizer makes none


@pytest.mark.parametrize("max_length", [32, 128])
def test_long_sentence_scored_once_with_context(tok, data_dir, max_length):
    pos = data.load_split("pos", "en", "dev").examples
    words, tags = [], []
    for ex in pos:  # real sentences, concatenated until they need many windows
        words += ex.words
        tags += ex.tags
        if sum(map(len, _word_ids(tok, words))) > 5 * max_length:
            break
    long = TaggedSentence(words, tags)
    split = _split("pos", [pos[0], long, pos[1]], f"long{max_length}")
    feats = features.build_features(split, tok, max_length=max_length)

    pieces = _word_ids(tok, words)
    content = [p for word in pieces for p in word]
    first_of = np.cumsum([0] + [len(p) for p in pieces[:-1]])  # content position of each word
    capacity = max_length - 2
    half = capacity // 2
    k = next(n for n, f in enumerate(feats) if f["example_index"] == 1)
    windows = [f for f in feats if f["example_index"] == 1]
    assert len(windows) >= 5
    scored = _scored(feats, 1)
    assert sorted(scored) == list(range(len(words)))  # every word ...
    assert all(len(v) == 1 for v in scored.values())  # ... exactly once
    upos = {t: i for i, t in enumerate(labels.UPOS_LABELS)}
    starts = []
    for f in windows:
        ids = f["input_ids"]
        assert len(ids) <= max_length
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        body = ids[1:-1]
        start = next(s for s in range(len(content)) if content[s:s + len(body)] == body)
        starts.append(start)
    assert starts[0] == 0 and all(b > a for a, b in itertools.pairwise(starts))
    for word, [(n, position, label)] in scored.items():
        window = n - k
        assert label == upos[tags[word]]
        assert starts[window] + position - 1 == first_of[word]  # on the word's first subword
        if window > 0:
            assert position - 1 >= half  # at least half a window of left context
    # The other examples are untouched by the long one.
    assert sorted(_scored(feats, 0)) == list(range(len(pos[0].words)))
    assert sorted(_scored(feats, 2)) == list(range(len(pos[1].words)))


def test_every_length_scored_once(tok, data_dir):
    # Sentence lengths across several window strides: no word lost at any length.
    pos = data.load_split("pos", "en", "dev").examples
    words = [w for ex in pos[:20] for w in ex.words]
    tags = [t for ex in pos[:20] for t in ex.tags]
    examples = [TaggedSentence(words[:n], tags[:n]) for n in range(10, 70)]
    # A word of ~60 subwords: windows that fall inside it score nothing and are dropped.
    url = "https://example.org/" + "-".join(f"q{i}z{i * 7}" for i in range(12))
    assert len(_word_ids(tok, [url])[0]) > 50
    examples.append(TaggedSentence(["See", url, "now", "."], ["VERB", "X", "ADV", "PUNCT"]))
    feats = features.build_features(_split("pos", examples, "lengths"), tok, max_length=24)
    assert max(len(f["input_ids"]) for f in feats) == 24
    assert all(any(w != IGNORE for w in f["word_index"]) for f in feats)
    for i, ex in enumerate(examples):
        scored = _scored(feats, i)
        assert sorted(scored) == list(range(len(ex.words))), i
        assert all(len(v) == 1 for v in scored.values()), i


def test_word_without_subwords_gets_unk(tok):
    assert tok([[""]], is_split_into_words=True, add_special_tokens=False)["input_ids"] == [[]]
    split = _split("ner", [TaggedSentence(["Paris", "", "is"], ["B-LOC", "O", "O"])], "unk")
    (f,) = features.build_features(split, tok)
    scored = _scored([f], 0)
    assert sorted(scored) == [0, 1, 2]
    (_, position, label), = scored[1]
    assert f["input_ids"][position] == tok.unk_token_id and label == 0


# ------------------------------------------------------------------ xnli


def test_xnli_pair_layout(tok, data_dir):
    split = _subset(data.load_split("xnli", "en", "dev"), 30)
    feats = features.build_features(split, tok, max_length=128)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    for i, (f, ex) in enumerate(zip(feats, split.examples, strict=True)):
        p = tok(ex.premise, add_special_tokens=False)["input_ids"]
        h = tok(ex.hypothesis, add_special_tokens=False)["input_ids"]
        assert f["input_ids"] == [bos] + p + [eos, eos] + h + [eos]
        assert f["labels"] == labels.XNLI_LABELS.index(ex.label)
        assert f["example_index"] == i
    short = features.build_features(split, tok, max_length=16)
    assert max(len(f["input_ids"]) for f in short) == 16
    assert all(f["input_ids"][0] == bos and f["input_ids"][-1] == eos for f in short)


# ------------------------------------------------------------------ parsing


def _check_parse(f, ex: ParsedSentence, pieces, keep: int):
    starts = 1 + np.cumsum([0] + [len(p) for p in pieces[:keep - 1]])
    assert f["word_starts"] == [0] + starts.tolist()
    for w in range(keep):
        assert f["input_ids"][starts[w]:starts[w] + len(pieces[w])] == pieces[w]
    gold = [h if h <= keep else IGNORE for h in ex.heads[:keep]]
    assert f["heads"] == [IGNORE] + gold
    rels = [labels.DEPREL_LABELS.index(r) if h != IGNORE else IGNORE
            for r, h in zip(ex.deprels[:keep], gold, strict=True)]
    assert f["rels"] == [IGNORE] + rels
    assert f["upos"] == [IGNORE] + [labels.UPOS_LABELS.index(u) for u in ex.upos[:keep]]


def test_parsing_alignment_against_gold(tok, data_dir):
    split = _subset(data.load_split("parsing", "en", "dev"), 3)
    feats = features.build_features(split, tok, max_length=128, train=True)
    for f, ex in zip(feats, split.examples, strict=True):
        _check_parse(f, ex, _word_ids(tok, ex.words), len(ex.words))
    # Sentence 1: "President Bush on Tuesday nominated ..." has its root at word 5.
    assert feats[1]["heads"][:6] == [IGNORE, 5, 1, 4, 5, 0]
    # A sentence whose last word is a head: heads may point at the last kept word.
    dev = data.load_split("parsing", "en", "dev").examples
    ex = next(s for s in dev if max(s.heads) == len(s.words))
    (f,) = features.build_features(_split("parsing", [ex], "lasthead"), tok)
    assert max(f["heads"]) == len(ex.words)
    _check_parse(f, ex, _word_ids(tok, ex.words), len(ex.words))


def test_parsing_train_cut(tok, data_dir):
    ex = data.load_split("parsing", "en", "dev").examples[1]  # 19 words
    pieces = _word_ids(tok, ex.words)
    lengths = np.cumsum([len(p) for p in pieces])

    def kept(max_length):
        return int(np.searchsorted(lengths, max_length - 2, side="right"))

    # The smallest window that cuts the sentence where a kept word's head is cut off.
    max_length = next(m for m in range(4, 64) if any(h > kept(m) for h in ex.heads[:kept(m)]))
    keep = kept(max_length)
    assert 0 < keep < len(ex.words)
    (f,) = features.build_features(_split("parsing", [ex], "cut"), tok, max_length=max_length)
    assert len(f["input_ids"]) == 2 + lengths[keep - 1] <= max_length
    assert IGNORE in f["heads"][1:]
    _check_parse(f, ex, pieces, keep)


def test_parsing_eval_keeps_first_128_words(tok, data_dir):
    train = data.load_split("parsing", "en", "train").examples
    ex = max(train, key=lambda s: len(s.words))  # 159 words
    assert len(ex.words) == 159
    split = _split("parsing", [ex], "eval128")
    (f,) = features.build_features(split, tok, max_length=128, train=False)
    assert len(f["word_starts"]) == 129 and len(f["input_ids"]) <= tok.model_max_length
    _check_parse(f, ex, _word_ids(tok, ex.words), 128)
    # Training mode keeps only the words that fit in 128 subwords.
    (g,) = features.build_features(split, tok, max_length=128, train=True)
    assert len(g["input_ids"]) <= 128 and len(g["word_starts"]) < 129


# ------------------------------------------------------------------ cache


def test_cache_reused_and_keyed(tok, data_dir, cache):
    split = _subset(data.load_split("pos", "de", "dev"), 40)
    first = features.featurize(split, tok, max_length=128)
    path = features.cache_path(split, tok, max_length=128)
    assert path.parent == cache and path.is_file()
    stamp = path.stat().st_mtime_ns
    # Same fingerprint, different sentences: a cache hit returns the stored features,
    # which shows that nothing was tokenised again.
    altered = dataclasses.replace(
        split, examples=[TaggedSentence(["x"] * len(e.words), e.tags) for e in split.examples])
    assert features.featurize(altered, tok, max_length=128) == first
    assert path.stat().st_mtime_ns == stamp
    assert first == features.build_features(split, tok, max_length=128)

    other = features.featurize(split, tok, max_length=64)
    assert features.cache_path(split, tok, max_length=64) != path
    assert len(list(cache.iterdir())) == 2
    assert max(len(f["input_ids"]) for f in other) <= 64
    parse = _subset(data.load_split("parsing", "de", "dev"), 5)
    assert features.cache_path(parse, tok, train=True) != features.cache_path(parse, tok,
                                                                              train=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_cache_rebuilt(tok, data_dir, cache, damage):
    split = _subset(data.load_split("parsing", "en", "dev"), 20)
    good = features.featurize(split, tok)
    path = features.cache_path(split, tok)
    raw = path.read_bytes()
    path.write_bytes({"garbage": b"not a cache" * 10, "truncated": raw[: len(raw) // 2],
                      "empty": b""}[damage])
    assert features.featurize(split, tok) == good
    assert path.read_bytes() == raw  # rebuilt, the same bytes as before


def test_failure_leaves_no_cache_file(tok, data_dir, cache, monkeypatch):
    split = _subset(data.load_split("ner", "en", "dev"), 50)
    broken = dataclasses.replace(
        split, examples=[*split.examples[:30], TaggedSentence(["ok", None], ["O", "O"])],
        fingerprint="broken")
    with pytest.raises((TypeError, ValueError)):
        features.featurize(broken, tok)
    assert not cache.exists() or list(cache.iterdir()) == []

    def crash(handle, **arrays):  # the disk fills up halfway through the write
        handle.write(b"PK\x03\x04 partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(features.np, "savez", crash)
    with pytest.raises(OSError, match="No space left"):
        features.featurize(split, tok)
    assert list(cache.iterdir()) == []  # neither the cache file nor a temporary file


# ------------------------------------------------------------------ batches


def test_collate_tagging(tok, data_dir):
    split = _subset(data.load_split("ner", "en", "dev"), 6)
    feats = features.build_features(split, tok)
    batch = features.collate(feats, tok.pad_token_id)
    lengths = [len(f["input_ids"]) for f in feats]
    b, t = len(feats), max(lengths)
    assert set(batch) == {"input_ids", "attention_mask", "example_index", "labels", "word_index"}
    assert all(v.dtype == torch.long for v in batch.values())
    assert batch["input_ids"].shape == batch["labels"].shape == (b, t)
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for i, f in enumerate(feats):
        n = lengths[i]
        assert batch["input_ids"][i, :n].tolist() == f["input_ids"]
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all()
        assert batch["labels"][i, :n].tolist() == f["labels"]
        assert (batch["labels"][i, n:] == IGNORE).all()
        assert (batch["word_index"][i, n:] == IGNORE).all()
    assert batch["example_index"].tolist() == list(range(6))


def test_collate_parsing_and_xnli(tok, data_dir):
    feats = features.build_features(_subset(data.load_split("parsing", "en", "dev"), 5), tok)
    batch = features.collate(feats, tok.pad_token_id)
    n_words = [len(f["word_starts"]) for f in feats]
    assert batch["word_starts"].shape == (5, max(n_words))
    assert batch["word_mask"].dtype == torch.bool
    assert batch["word_mask"].sum(1).tolist() == n_words
    for i, f in enumerate(feats):
        w = n_words[i]
        assert batch["word_starts"][i, :w].tolist() == f["word_starts"]
        assert (batch["word_starts"][i, w:] == 0).all()
        for key in ("heads", "rels", "upos"):
            assert batch[key][i, :w].tolist() == f[key]
            assert (batch[key][i, w:] == IGNORE).all()
            assert batch[key][i, 0] == IGNORE
    xnli = features.build_features(_subset(data.load_split("xnli", "en", "dev"), 4), tok)
    batch = features.collate(xnli, tok.pad_token_id)
    assert batch["labels"].shape == (4,)
    assert batch["labels"].tolist() == [f["labels"] for f in xnli]


def test_length_sorted_batches(tok, data_dir):
    feats = features.build_features(_subset(data.load_split("ner", "fr", "dev"), 101), tok)
    groups = features.length_sorted_batches(feats, 8)
    assert groups == features.length_sorted_batches(feats, 8)  # deterministic
    order = [i for g in groups for i in g]
    assert sorted(order) == list(range(len(feats)))
    assert [len(g) for g in groups] == [8] * 12 + [5]
    lengths = [len(feats[i]["input_ids"]) for i in order]
    assert lengths == sorted(lengths, reverse=True)
    for a, b in itertools.pairwise(order):  # ties keep index order
        if len(feats[a]["input_ids"]) == len(feats[b]["input_ids"]):
            assert a < b
    batches = list(features.batches(feats, 8, tok.pad_token_id))
    assert [b["example_index"].tolist() for b in batches] == [
        [feats[i]["example_index"] for i in g] for g in groups]
    assert batches[0]["input_ids"].shape[1] == lengths[0]
    plain = list(features.batches(feats, 50, tok.pad_token_id, sort_by_length=False))
    assert plain[0]["example_index"].tolist() == list(range(50))
    assert [len(b["example_index"]) for b in plain] == [50, 50, len(feats) - 100]
    with pytest.raises(ValueError, match="batch_size"):
        features.length_sorted_batches(feats, 0)


def test_tokenizer_fingerprint_depends_on_content(tok):
    from transformers import AutoTokenizer

    from xinterp_utils.encoders import resolve_encoder

    again = AutoTokenizer.from_pretrained(resolve_encoder("offline-small"))
    assert features.tokenizer_fingerprint(again) == features.tokenizer_fingerprint(tok)
    again.add_tokens(["xinterp-new-token"])
    assert features.tokenizer_fingerprint(again) != features.tokenizer_fingerprint(tok)

