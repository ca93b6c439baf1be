"""Compact model files: a trimmed run stores the embedding rows training moved, reads back
bit for bit, and old full-sized files convert without loss."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from xinterp_utils.checkpoints import (
    MODEL_NAME,
    compact_checkpoints,
    compact_model_file,
    load_run_model,
    state_fingerprint,
)
from xinterp_utils.cli import main as cli_main
from xinterp_utils.config import TrainConfig
from xinterp_utils.embedding_store import (
    STORE_DIR,
    changed_rows,
    file_metadata,
    is_compact,
    read_model_state,
    store_dir,
)
from xinterp_utils.encoders import load_tokenizer
from xinterp_utils.model import build_task_model
from xinterp_utils.vocab import full_state_dict, kept_ids

from .conftest import TINY_ENCODER as ENCODER
from .conftest import TINY_HPARAMS as TINY

EMBEDDING = "encoder.embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def trimmed_runs(tmp_path_factory, data_dir):
    """Two trimmed NER runs (seeds 4 and 5) and one full-vocabulary run, tiny."""
    from xinterp_utils.train import train

    root = tmp_path_factory.mktemp("ckpt")
    base = TrainConfig(ENCODER, "ner", ("en",), seed=4, vocab="trimmed", **TINY)
    configs = {"a": base, "b": dataclasses.replace(base, seed=5),
               "full": dataclasses.replace(base, vocab="full")}
    records = {name: train(c, root, progress=False) for name, c in configs.items()}
    return root, configs, records


def _pretrained():
    return build_task_model(ENCODER, "ner", 1).state_dict()[EMBEDDING]


def _copy_run(config, root, other):
    """Copy a run folder alone (not its encoder's pretrained matrix) to `other`."""
    shutil.copytree(config.run_dir(root), config.run_dir(other))
    return config.run_dir(other)


def _write_full_sized(run_dir, state, metadata):
    """Rewrite the model file as the full-sized file older versions wrote."""
    (run_dir / MODEL_NAME).unlink()
    save_file(state, str(run_dir / MODEL_NAME), metadata=metadata)


def test_a_trimmed_run_stores_only_the_moved_rows_and_reads_back_exactly(trimmed_runs):
    root, configs, records = trimmed_runs
    path = configs["a"].run_dir(root) / MODEL_NAME
    assert is_compact(path) and not is_compact(configs["full"].run_dir(root) / MODEL_NAME)
    pretrained = _pretrained()
    # One pretrained matrix for both trimmed runs, beside the encoder's task folders.
    store = store_dir(root, ENCODER)
    assert store == root / ENCODER / STORE_DIR
    (stored,) = store.iterdir()
    assert torch.equal(load_file(str(stored))["weight"], pretrained)
    state = read_model_state(path)
    assert state_fingerprint(state) == records["a"]["model_fingerprint"]
    # The stored rows are exactly those that differ from the pretrained matrix: some of
    # the kept pieces (the English training text's), never a dropped one.
    raw = load_file(str(path))
    rows = raw[EMBEDDING + "::rows"]
    moved = (state[EMBEDDING] != pretrained).any(dim=1).nonzero().view(-1)
    assert torch.equal(rows, moved) and 100 < len(rows)
    kept = kept_ids(load_tokenizer(ENCODER), "ner")
    assert len(rows) < len(kept) and set(rows.tolist()) <= set(kept.tolist())
    assert EMBEDDING not in raw
    # The same model loaded from the file gives back the trained weights it saved.
    model = load_run_model(configs["a"], root, load_tokenizer(ENCODER))
    again = full_state_dict(model)
    assert all(torch.equal(again[k], state[k]) for k in state)
    assert file_metadata(path)["run"] == configs["a"].run_hash()


def test_a_full_sized_file_converts_without_loss(trimmed_runs, tmp_path):
    root, configs, _ = trimmed_runs
    state = read_model_state(configs["b"].run_dir(root) / MODEL_NAME)
    meta = {k: v for k, v in file_metadata(configs["b"].run_dir(root) / MODEL_NAME).items()
            if k in ("run", "epoch")}
    run_dir = _copy_run(configs["b"], root, tmp_path)
    _write_full_sized(run_dir, state, meta)
    full_run = _copy_run(configs["full"], root, tmp_path)
    before = (run_dir / MODEL_NAME).stat().st_size
    lines = []
    done = compact_checkpoints(tmp_path, log=lines.append)
    assert [d[0] for d in done] == [run_dir]  # not the full-vocabulary run
    assert done[0][1] == before and done[0][2] == (run_dir / MODEL_NAME).stat().st_size
    assert done[0][2] < before and str(run_dir) in lines[0]
    again = read_model_state(run_dir / MODEL_NAME)
    assert again.keys() == state.keys()
    assert all(torch.equal(again[k], state[k]) for k in state)
    assert file_metadata(run_dir / MODEL_NAME)["run"] == meta["run"]
    assert not is_compact(full_run / MODEL_NAME)
    assert compact_checkpoints(tmp_path) == []  # nothing left to do
    assert not list(run_dir.glob(".*"))  # no temporary left behind


def test_conversion_refuses_a_file_that_is_not_its_records_model(trimmed_runs, tmp_path):
    root, configs, _ = trimmed_runs
    state = read_model_state(configs["a"].run_dir(root) / MODEL_NAME)
    run_dir = _copy_run(configs["a"], root, tmp_path)
    name = next(k for k in state if k != EMBEDDING and state[k].is_floating_point())
    state[name] = state[name] + 1.0
    _write_full_sized(run_dir, state, {})
    original = (run_dir / MODEL_NAME).read_bytes()
    with pytest.raises(ValueError, match="does not hold the model its record describes"):
        compact_model_file(run_dir, tmp_path, _pretrained())
    assert (run_dir / MODEL_NAME).read_bytes() == original


def test_a_run_folder_copied_without_its_pretrained_matrix_is_refused(trimmed_runs, tmp_path):
    root, configs, _ = trimmed_runs
    run_dir = _copy_run(configs["a"], root, tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        read_model_state(run_dir / MODEL_NAME)
    assert str(store_dir(tmp_path, ENCODER)) in str(err.value)
    assert STORE_DIR in str(err.value)


def test_a_damaged_pretrained_matrix_is_refused(trimmed_runs, tmp_path):
    root, configs, _ = trimmed_runs
    run_dir = _copy_run(configs["a"], root, tmp_path)
    shutil.copytree(store_dir(root, ENCODER), store_dir(tmp_path, ENCODER))
    (stored,) = store_dir(tmp_path, ENCODER).iterdir()
    matrix = load_file(str(stored))["weight"]
    matrix[7, 0] += 1.0
    save_file({"weight": matrix}, str(stored))
    with pytest.raises(ValueError, match="damaged"):
        read_model_state(run_dir / MODEL_NAME)


def test_changed_rows_compares_bits():
    base = torch.zeros(5, 3)
    base[3, 1] = float("nan")
    full = base.clone()
    full[1, 2] = -0.0  # equal as a number, another bit pattern: a change
    full[2, 0] = 1e-30
    assert changed_rows(full, base).tolist() == [1, 2]  # the NaN row is unchanged
    with pytest.raises(ValueError, match="base"):
        changed_rows(full[:4], base)


def test_cli_compacts_a_checkpoint_folder(trimmed_runs, tmp_path, capsys):
    root, configs, _ = trimmed_runs
    state = read_model_state(configs["a"].run_dir(root) / MODEL_NAME)
    run_dir = _copy_run(configs["a"], root, tmp_path)
    _write_full_sized(run_dir, state, {})
    assert cli_main(["compact-checkpoints", str(tmp_path)]) == 0
    assert "1 model file(s) rewritten" in capsys.readouterr().out
    assert is_compact(run_dir / MODEL_NAME)
