"""Encoder loads are quiet where nothing is wrong and still report weights that are missing."""

from __future__ import annotations

import logging
import shutil

import pytest
from safetensors.torch import load_file, save_file

from xinterp_utils import encoders

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_log():
    """Every message transformers logs (its library logger does not propagate to root)."""
    handler = _Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def small_dir():
    return encoders.resolve_encoder("offline-small")


def _copy_with_weights(small_dir, folder, edit):
    """A copy of the offline-small folder whose weights are `edit(state_dict)`."""
    folder.mkdir()
    for name in ("config.json", *TOKENIZER_FILES):
        if (small_dir / name).is_file():
            shutil.copy(small_dir / name, folder / name)
    save_file(edit(load_file(str(small_dir / "model.safetensors"))),
              str(folder / "model.safetensors"))
    return folder


def test_offline_small_loads_without_a_load_report(small_dir, transformers_log, capfd):
    model, _tokenizer = encoders.load_encoder("offline-small")
    err = capfd.readouterr().err
    assert not any("LOAD REPORT" in m or "UNEXPECTED" in m for m in transformers_log)
    assert "LOAD REPORT" not in err and "UNEXPECTED" not in err
    assert getattr(model, "pooler", None) is None


def test_pooler_and_pretraining_heads_in_the_checkpoint_are_not_reported(
        small_dir, tmp_path, transformers_log, capfd):
    # A hub checkpoint (mBERT, XLM-R) carries a pooler and pre-training heads that the
    # base encoder leaves out: transformers 5 prints them as UNEXPECTED on every load.
    def add_unused(sd):
        hidden = sd["embeddings.word_embeddings.weight"].shape[1]
        sd = dict(sd)
        sd["pooler.dense.weight"] = sd["embeddings.word_embeddings.weight"][:hidden].clone()
        sd["pooler.dense.bias"] = sd["embeddings.LayerNorm.bias"].clone()
        sd["cls.predictions.bias"] = sd["embeddings.LayerNorm.bias"].clone()
        return sd

    folder = _copy_with_weights(small_dir, tmp_path / "with-pooler", add_unused)
    model, _ = encoders.load_encoder(str(folder))
    err = capfd.readouterr().err
    assert not any("LOAD REPORT" in m for m in transformers_log), transformers_log
    assert "UNEXPECTED" not in err and "pooler" not in err
    assert getattr(model, "pooler", None) is None


def test_missing_weights_are_still_reported(small_dir, tmp_path, transformers_log):
    # A weight absent from the checkpoint would be randomly initialised: that must show.
    key = "encoder.layer.0.attention.self.query.weight"

    def drop(sd):
        assert key in sd
        return {k: v for k, v in sd.items() if k != key}

    folder = _copy_with_weights(small_dir, tmp_path / "missing", drop)
    encoders.load_encoder(str(folder))
    reports = [m for m in transformers_log if "LOAD REPORT" in m]
    assert len(reports) == 1 and "MISSING" in reports[0]
    assert "encoder.layer.0.attention.self.query.weight" in reports[0]
