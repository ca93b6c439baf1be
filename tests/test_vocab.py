"""The trimmed vocabulary is exact: same outputs, same training, same checkpoints."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from xinterp_utils.checkpoints import MODEL_NAME
from xinterp_utils.config import TrainConfig, pair_configs
from xinterp_utils.embedding_store import read_model_state
from xinterp_utils.encoders import load_tokenizer
from xinterp_utils.features import collate
from xinterp_utils.geometry import geometry_row
from xinterp_utils.model import build_task_model
from xinterp_utils.sweep_spec import SweepSpec
from xinterp_utils.sweeps import run_sweep
from xinterp_utils.train import load_features, train
from xinterp_utils.vocab import (
    TrimmedEmbedding,
    check_covered,
    full_state_dict,
    kept_ids,
    trim_embeddings,
    trim_state_dict,
)

from .conftest import TINY_ENCODER as ENCODER
from .conftest import TINY_HPARAMS as TINY

EMBEDDING = "encoder.embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ENCODER)


def _dev_batch(task, lang, tokenizer, n=16):
    config = TrainConfig(ENCODER, task, (lang,), max_dev_examples=n)
    feats, _ = load_features(config, tokenizer, lang, "dev")
    return collate(feats, tokenizer.pad_token_id)


@pytest.mark.parametrize("task", ["ner", "xnli"])
def test_trimmed_model_gives_the_full_models_outputs(task, tokenizer, data_dir):
    kept = kept_ids(tokenizer, task)
    assert 0 < len(kept) < len(tokenizer)  # a real cut of the vocabulary
    full = build_task_model(ENCODER, task, 1).eval()
    trimmed = build_task_model(ENCODER, task, 1).eval()
    trim_embeddings(trimmed.encoder, kept)
    assert trimmed.encoder.get_input_embeddings().weight.shape[0] == len(kept)
    for lang in ("en", "zh", "ar"):
        batch = _dev_batch(task, lang, tokenizer)
        with torch.no_grad():
            a = full.encode(batch)
            b = trimmed.encode(batch)
        assert torch.allclose(a, b, rtol=0, atol=1e-6), (lang, (a - b).abs().max())
    # Expanded back, the trimmed model is the full model, tensor for tensor.
    expanded, reference = full_state_dict(trimmed), full.state_dict()
    assert expanded.keys() == reference.keys()
    assert all(torch.equal(expanded[k], reference[k]) for k in reference)


def test_kept_set_covers_every_language_and_split(tokenizer, data_dir):
    kept = kept_ids(tokenizer, "pos")
    assert set(tokenizer.all_special_ids) <= set(kept.tolist())
    assert torch.equal(kept, torch.sort(kept).values)
    assert torch.equal(kept_ids(tokenizer, "pos"), kept)  # from the disk cache: the same
    for lang in ("en", "de", "ru", "zh", "vi"):
        config = TrainConfig(ENCODER, "pos", (lang,))
        for split in ("train", "dev"):
            feats, raw = load_features(config, tokenizer, lang, split)
            check_covered(feats, kept, raw, tokenizer)  # raises if a piece is missing


def test_a_piece_outside_the_kept_set_is_refused_naming_the_text(tokenizer, data_dir):
    kept = kept_ids(tokenizer, "ner")
    config = TrainConfig(ENCODER, "ner", ("de",), max_dev_examples=5)
    feats, raw = load_features(config, tokenizer, "de", "dev")
    victim = feats[2]["input_ids"][3]  # a real piece of example 2
    fewer = kept[kept != victim]
    with pytest.raises(ValueError) as err:
        check_covered(feats, fewer, raw, tokenizer)
    message = str(err.value)
    assert raw.path in message and "ner de/dev" in message
    first = next(i for i, f in enumerate(feats) if victim in f["input_ids"])
    assert f"example {first} " in message
    assert " ".join(raw.examples[first].words)[:40] in message
    assert tokenizer.convert_ids_to_tokens(victim) in message
    # The embedding itself refuses what it does not hold (never an <unk> row).
    embedding = TrimmedEmbedding(torch.nn.Embedding(len(tokenizer), 4, padding_idx=1), fewer)
    with pytest.raises(ValueError, match=str(victim)):
        embedding(torch.tensor([[victim]]))


def test_training_trimmed_gives_the_full_runs_weights(tmp_path, data_dir):
    full = TrainConfig(ENCODER, "ner", ("en",), seed=4, **TINY)
    trimmed = dataclasses.replace(full, vocab="trimmed")
    assert trimmed.run_hash() != full.run_hash()
    records = {c.vocab: train(c, tmp_path, progress=False) for c in (full, trimmed)}
    a = read_model_state(full.run_dir(tmp_path) / MODEL_NAME)
    b = read_model_state(trimmed.run_dir(tmp_path) / MODEL_NAME)
    assert a.keys() == b.keys() and a[EMBEDDING].shape == b[EMBEDDING].shape
    pretrained = build_task_model(ENCODER, "ner", 4).state_dict()[EMBEDDING]
    moved = (a[EMBEDDING] != pretrained).any(dim=1)
    assert moved.sum() > 100  # training changed the rows of the pieces it saw...
    kept = kept_ids(load_tokenizer(ENCODER), "ner")
    dropped = torch.ones(len(pretrained), dtype=torch.bool)
    dropped[kept] = False
    assert not moved[dropped].any()  # ...and no row the trimmed model leaves out
    assert torch.equal(b[EMBEDDING][dropped], pretrained[dropped])
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), (key, (a[key] - b[key]).abs().max())
    assert records["trimmed"]["vocab"]["kept"] == len(kept)
    assert records["full"]["vocab"] == "full"
    dev = {v: r["dev_scores"]["en"]["score"] for v, r in records.items()}
    assert dev["full"] == pytest.approx(dev["trimmed"], abs=1e-9)


def test_sweep_and_geometry_of_trimmed_runs(tmp_path, data_dir):
    hparams = {**TINY, "vocab": "trimmed"}
    configs = pair_configs(ENCODER, "pos", "en", "de", seed=2, **hparams)
    records = {role: train(c, tmp_path / "ckpt", progress=False) for role, c in configs.items()}
    spec = SweepSpec(ENCODER, "pos", "en", "de", 2, hparams=hparams, planes=("eq1",),
                     alphas_1d=(0.0, 0.5, 1.0), max_dev_examples=TINY["max_dev_examples"])
    path = run_sweep(spec, tmp_path / "ckpt", tmp_path / "results", progress=False)
    rows = pd.read_csv(path)
    # Eq. 1 at α = 0 is θ_src, at α = 1 θ_bi: their own dev scores, exactly.
    def at(alpha, lang):
        return float(rows.query(f"alpha == {alpha} and eval_lang == '{lang}'")["score"].iloc[0])

    assert at(0.0, "en") == pytest.approx(records["src"]["dev_scores"]["en"]["score"], abs=1e-6)
    assert at(1.0, "en") == pytest.approx(records["bi"]["dev_scores"]["en"]["score"], abs=1e-6)
    assert at(1.0, "de") == pytest.approx(records["bi"]["dev_scores"]["de"]["score"], abs=1e-6)
    # Geometry from the saved full-size checkpoints: δ of a dropped row is exactly 0, so
    # the norms are those of the kept rows and the rest of the model.
    geo = geometry_row(spec, tmp_path / "ckpt")
    states = {r: read_model_state(c.run_dir(tmp_path / "ckpt") / MODEL_NAME)
              for r, c in configs.items()}
    model = build_task_model(ENCODER, "pos", 2)
    trim_embeddings(model.encoder, kept_ids(load_tokenizer(ENCODER), "pos"))
    small = {r: trim_state_dict(s, model) for r, s in states.items()}
    norm = torch.sqrt(sum(((small["src"][k].double() - small["bi"][k].double()) ** 2).sum()
                          for k in small["bi"] if small["bi"][k].is_floating_point()))
    assert geo["norm_src"] == pytest.approx(float(norm), rel=1e-9)
