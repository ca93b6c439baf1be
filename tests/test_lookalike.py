"""mBERT and XLM-R look-alikes: tiny random-initialised local folders of the paper's two
architectures, built here with no download, driven through every task.

- mBERT-like: `BertModel` and a cased WordPiece `BertTokenizerFast` trained with
  `tokenizers` on offline text of en, de, ru, ar and zh (so `##` pieces, Chinese
  characters split, and `token_type_ids`).
- XLM-R-like: `XLMRobertaModel` with padding index 1 and 514 positions (512 usable),
  with the offline SentencePiece tokenizer of `offline-small`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from xinterp_utils.data import load_split
from xinterp_utils.encoders import check_max_length, load_tokenizer, max_positions
from xinterp_utils.features import batches, build_features, tokenizer_fingerprint
from xinterp_utils.labels import IGNORE_INDEX
from xinterp_utils.readers import ParsedSentence

TASKS = ("xnli", "ner", "pos", "parsing")
TEXT_LANGS = ("en", "de", "ru", "ar", "zh")
HPARAMS = {"epochs": 1, "batch_size": 8, "max_length": 32, "max_train_examples": 16,
           "max_dev_examples": 8, "lr": 1e-3}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64}


def _offline_text(per_lang: int = 300) -> list[str]:
    """A few hundred sentences a language, read in place from the offline data."""
    lines = []
    for lang in TEXT_LANGS:
        for task in ("ner", "pos"):
            lines += [" ".join(e.words) for e in load_split(task, lang, "dev").examples[:per_lang // 3]]
        lines += [f"{p.premise} {p.hypothesis}"
                  for p in load_split("xnli", lang, "dev").examples[:per_lang // 3]]
    return lines


def _wordpiece_folder(root, text, positions: int):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    trainer = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True,
                                     strip_accents=False, lowercase=False)
    trainer.train_from_iterator(text, vocab_size=2000, min_frequency=2,
                                special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    trainer.save_model(str(root))
    # No model_max_length: as for many hub tokenizers, the model's positions must cap it.
    tokenizer = BertTokenizerFast(vocab=str(root / "vocab.txt"), do_lower_case=False,
                                  tokenize_chinese_chars=True, strip_accents=False)
    tokenizer.save_pretrained(str(root))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=positions,
                        type_vocab_size=2, pad_token_id=tokenizer.pad_token_id, **TINY)
    BertModel(config).save_pretrained(str(root))
    return root


@pytest.fixture(scope="module")
def text(data_dir):
    return _offline_text()


@pytest.fixture(scope="module")
def bert_like(tmp_path_factory, text):
    return _wordpiece_folder(tmp_path_factory.mktemp("enc") / "mbert-like", text, 512)


@pytest.fixture(scope="module")
def xlmr_like(tmp_path_factory, data_dir):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xinterp_utils.encoders import resolve_encoder

    small = resolve_encoder("offline-small")
    root = tmp_path_factory.mktemp("enc") / "xlmr-like"
    root.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(small / name, root / name)
    vocab = json.loads((small / "config.json").read_text())["vocab_size"]
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=vocab, max_position_embeddings=514, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2, type_vocab_size=1, **TINY)
    XLMRobertaModel(config).save_pretrained(str(root))
    return root


# ------------------------------------------------------------------ featurisation


def test_wordpiece_tagging_labels_first_subwords(bert_like):
    tok = load_tokenizer(str(bert_like))
    assert "token_type_ids" in tok.model_input_names
    split = load_split("ner", "de", "dev")
    split = dataclasses.replace(split, examples=split.examples[:50])
    feats = build_features(split, tok, max_length=128)
    assert len(feats) == len(split.examples)  # short sentences: one window each
    pieces = 0
    for f, example in zip(feats, split.examples, strict=True):
        tokens = tok.convert_ids_to_tokens(f["input_ids"])
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
        assert f["token_type_ids"] == [0] * len(tokens)
        enc = tok(example.words, is_split_into_words=True)
        assert enc["input_ids"] == f["input_ids"]
        wids = enc.word_ids()
        firsts = [i for i, w in enumerate(wids) if w is not None and (i == 0 or wids[i - 1] != w)]
        labelled = [i for i, lab in enumerate(f["labels"]) if lab != IGNORE_INDEX]
        assert labelled == firsts and len(labelled) == len(example.words)
        # the first subword of a word carries its tag, a `##` continuation never does
        assert all(not tokens[i].startswith("##") for i in labelled)
        assert [f["word_index"][i] for i in labelled] == list(range(len(example.words)))
        pieces += sum(t.startswith("##") for t in tokens)
    assert pieces > 20  # the words really were split


@pytest.mark.parametrize("which", ["bert_like", "xlmr_like"])
def test_sliding_windows_score_every_word_once(which, request):
    tok = load_tokenizer(str(request.getfixturevalue(which)))
    split = load_split("pos", "ru", "dev")
    split = dataclasses.replace(split, examples=split.examples[:20])
    feats = build_features(split, tok, max_length=10)
    assert max(len(f["input_ids"]) for f in feats) <= 10
    assert len(feats) > len(split.examples)  # long sentences gave several windows
    for i, example in enumerate(split.examples):
        scored = [w for f in feats if f["example_index"] == i
                  for w in f["word_index"] if w != IGNORE_INDEX]
        assert sorted(scored) == list(range(len(example.words)))
    if which == "xlmr_like":  # SentencePiece: a word's first piece starts with "▁"
        for f in feats:
            tokens = tok.convert_ids_to_tokens(f["input_ids"])
            assert all(t.startswith("▁") for t, lab in zip(tokens, f["labels"], strict=True)
                       if lab != IGNORE_INDEX)
            assert "token_type_ids" not in f


def test_sentence_pairs_carry_token_types(bert_like):
    tok = load_tokenizer(str(bert_like))
    split = load_split("xnli", "zh", "dev")
    split = dataclasses.replace(split, examples=split.examples[:20])
    for f in build_features(split, tok, max_length=64):
        tokens = tok.convert_ids_to_tokens(f["input_ids"])
        first_sep = tokens.index("[SEP]")
        assert 1 < first_sep < len(tokens) - 2 and tokens[-1] == "[SEP]"
        # premise (with [CLS] and its [SEP]) is segment 0, hypothesis (and last [SEP]) 1
        assert f["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


@pytest.mark.parametrize("which", ["bert_like", "xlmr_like"])
def test_parsing_word_starts_point_at_first_subwords(which, request):
    tok = load_tokenizer(str(request.getfixturevalue(which)))
    split = load_split("parsing", "ar", "dev")
    split = dataclasses.replace(split, examples=split.examples[:20])
    for train in (True, False):
        for f in build_features(split, tok, max_length=48, train=train):
            tokens = tok.convert_ids_to_tokens(f["input_ids"])
            starts = f["word_starts"]
            assert starts[0] == 0 and starts == sorted(starts)
            for s in starts[1:]:
                assert not tokens[s].startswith("##") and tokens[s] not in tok.all_special_tokens
                if which == "xlmr_like":
                    assert tokens[s].startswith("▁")
            n_words = len(split.examples[f["example_index"]].words)
            kept = len(starts) - 1
            assert 1 <= kept <= n_words
            if not train:  # evaluation keeps the first 128 words (they fit 512 pieces here)
                assert kept == min(n_words, 128)


# ------------------------------------------------------------------ position limits


def test_position_limits_are_read_from_the_config(bert_like, xlmr_like, tmp_path, text):
    assert max_positions(str(bert_like)) == 512
    assert max_positions(str(xlmr_like)) == 512  # 514 positions less padding index 1 + 1
    assert max_positions("offline-small") == 512
    # A tokenizer without model_max_length is capped by the model's positions; one that
    # says 512 over 512 positions (offline-small) is left as it was (same features).
    assert load_tokenizer(str(bert_like)).model_max_length == 512
    from transformers import AutoTokenizer

    from xinterp_utils.encoders import resolve_encoder

    raw = AutoTokenizer.from_pretrained(resolve_encoder("offline-small"))
    assert tokenizer_fingerprint(raw) == tokenizer_fingerprint(load_tokenizer("offline-small"))
    check_max_length(str(xlmr_like), 512)
    with pytest.raises(ValueError, match=r"max_length=513 .*xlmr-like.* at most 512 tokens"):
        check_max_length(str(xlmr_like), 513)


def test_max_length_past_the_positions_is_refused_before_the_run_folder(xlmr_like, tmp_path):
    from xinterp_utils.config import TrainConfig
    from xinterp_utils.train import train

    config = TrainConfig(str(xlmr_like), "ner", ("en",), seed=1,
                         **{**HPARAMS, "max_length": 600})
    with pytest.raises(ValueError, match=r"max_length=600 .* at most 512"):
        train(config, tmp_path / "ckpt", progress=False)
    assert not (tmp_path / "ckpt").exists()


def test_a_256_position_encoder_evaluates_long_parsing_inputs(tmp_path, text):
    from xinterp_utils.evaluate import evaluate
    from xinterp_utils.model import build_task_model

    folder = _wordpiece_folder(tmp_path / "bert256", text, 256)
    tok = load_tokenizer(str(folder))
    assert tok.model_max_length == 256
    # Three 120-word sentences of 4 Chinese characters a word (a WordPiece token each):
    # about 480 pieces, far more than 256. A chain: word i's head is word i - 1.
    split = load_split("parsing", "zh", "dev")
    chars = [c for s in split.examples for w in s.words for c in w if "\u4e00" <= c <= "\u9fff"]
    joined = []
    for k in range(3):
        words = ["".join(chars[(k * 480 + 4 * i):(k * 480 + 4 * i + 4)]) for i in range(120)]
        joined.append(ParsedSentence(words, ["NOUN"] * 120, list(range(120)),
                                     ["root"] + ["dep"] * 119))
    long = dataclasses.replace(split, examples=joined, fingerprint="joined")
    pieces = [len(tok(s.words, is_split_into_words=True)["input_ids"]) for s in joined]
    assert min(pieces) > 256, pieces
    feats = build_features(long, tok, max_length=32, train=False)
    assert max(len(f["input_ids"]) for f in feats) <= 256
    model = build_task_model(str(folder), "parsing", seed=1)
    result = evaluate(model, batches(feats, 4, tok.pad_token_id), "parsing", progress=False)
    assert 0.0 <= result["score"] <= 1.0 and result["n_examples"] == 3


# ------------------------------------------------------------------ training, sweeps, geometry


@pytest.mark.parametrize("which,target", [("bert_like", "zh"), ("xlmr_like", "de")])
def test_every_task_trains_sweeps_with_exact_end_points_and_geometry(which, target, request,
                                                                     tmp_path):
    from xinterp_utils.analysis import load_results
    from xinterp_utils.config import pair_configs
    from xinterp_utils.geometry import geometry_row
    from xinterp_utils.sweep_spec import SweepSpec
    from xinterp_utils.sweeps import run_sweep
    from xinterp_utils.train import train

    encoder = str(request.getfixturevalue(which))
    root, results = tmp_path / "ckpt", tmp_path / "results"
    for task in TASKS:
        configs = pair_configs(encoder, task, "en", target, seed=1, **HPARAMS)
        records = {role: train(c, root, progress=False) for role, c in configs.items()}
        assert all(r["status"] == "finished" and r["total_steps"] >= 2 for r in records.values())
        spec = SweepSpec(encoder, task, "en", target, 1, hparams=HPARAMS,
                         alphas_1d=(0.0, 0.5, 1.0), max_dev_examples=HPARAMS["max_dev_examples"])
        rows = load_results(run_sweep(spec, root, results, progress=False))
        assert len(rows) == 2 * 3 * 2

        def score(plane, alpha, lang, rows=rows):
            sel = rows[(rows.plane == plane) & (rows.alpha == alpha) & (rows.eval_lang == lang)]
            assert len(sel) == 1
            return float(sel.score.iloc[0])

        def dev(role, lang, records=records):
            return records[role]["dev_scores"][lang]["score"]

        assert score("eq1", 0.0, "en") == pytest.approx(dev("src", "en"), abs=5e-7)
        assert score("eq2", 0.0, target) == pytest.approx(dev("tgt", target), abs=5e-7)
        for plane in ("eq1", "eq2"):
            for lang in ("en", target):
                assert score(plane, 1.0, lang) == pytest.approx(dev("bi", lang), abs=5e-7)
        geo = geometry_row(spec, root)
        assert geo["norm_src"] > 0 and geo["norm_tgt"] > 0 and math.isfinite(geo["ratio"])
        assert 0.0 <= geo["angle_deg"] <= 180.0 and geo["n_params"] > 0


def _hub_cache_copy(folder, cache, repo_id, commit="0123456789abcdef0123456789abcdef01234567"):
    """Lay `folder` out in a Hugging Face hub cache as `repo_id` at `commit` (the layout
    huggingface_hub writes: refs/main names the snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo


@pytest.mark.parametrize("hub", ["offline flag", "endpoint refuses"])
def test_a_cached_hub_encoder_loads_without_the_hub(bert_like, tmp_path, hub):
    import os
    import socket
    import subprocess
    import sys
    import time

    cache = tmp_path / "hub"
    _hub_cache_copy(bert_like, cache, "xinterp-test/tiny-bert")
    with socket.socket() as sock:  # a 127.0.0.1 port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_HUB_CACHE=str(cache), HF_ENDPOINT=f"http://127.0.0.1:{port}",
               NO_PROXY="*", no_proxy="*")
    if hub == "offline flag":
        env["HF_HUB_OFFLINE"] = "1"
    code = ("from xinterp_utils.encoders import load_encoder, EncoderUnavailableError\n"
            "model, tok = load_encoder('xinterp-test/tiny-bert')\n"
            "print(type(model).__name__, tok.is_fast, len(tok), model.config.hidden_size)\n"
            "try:\n    load_encoder('xinterp-test/not-cached')\n"
            "except EncoderUnavailableError as err:\n    print('refused:', err)\n")
    started = time.time()
    done = subprocess.run([sys.executable, "-c", code], check=False, env=env,
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    vocab = len((bert_like / "vocab.txt").read_text().splitlines())
    assert lines[0] == f"BertModel True {vocab} {TINY['hidden_size']}"
    assert "xinterp-test/not-cached" in lines[1] and "offline" in lines[1]
    assert time.time() - started < 60  # no network retries (start-up included)
