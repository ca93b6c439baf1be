"""Few-shot runs (notebook 06): the shot draw, the schedule, identity and resumption."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import TINY_HPARAMS
from xinterp_utils.checkpoints import MODEL_NAME, relative_run_dir
from xinterp_utils.config import IDENTITY_DEFAULTS, TrainConfig, pair_configs
from xinterp_utils.embedding_store import read_model_state
from xinterp_utils.encoders import load_tokenizer
from xinterp_utils.fewshot import draw_shots, eligible_examples, fewshot_schedule
from xinterp_utils.remedies import capped_ks, fewshot_config
from xinterp_utils.remedy_settings import FEWSHOT_DEFAULTS
from xinterp_utils.train import load_features, train

FEW = {**FEWSHOT_DEFAULTS, "epochs": 2, "min_steps": 4}


def test_draw_is_seeded_distinct_nested_and_inside_the_pool():
    pool = list(range(3, 503, 2))  # any indices, not 0..n-1
    a = draw_shots(pool, 10, seed=1)
    assert a == draw_shots(pool, 10, seed=1)  # deterministic per seed
    assert a != draw_shots(pool, 10, seed=2)  # distinct across draws
    assert len(a) == len(set(a)) == 10 and set(a) <= set(pool) and a == sorted(a)
    assert set(a) <= set(draw_shots(pool, 100, seed=1))  # nested across k
    assert sorted(draw_shots(pool, len(pool), seed=3)) == pool


def test_k_past_the_pool_is_refused_with_both_sizes():
    with pytest.raises(ValueError, match=r"k=30: the pool holds only 24 .*max_train_examples"):
        draw_shots(list(range(24)), 30, seed=1)
    with pytest.raises(ValueError, match="k=0"):
        draw_shots(list(range(24)), 0, seed=1)


def test_planner_caps_k_at_the_pool_and_says_so():
    ks, notes = capped_ks((10, 100, 1000), pool=128)
    assert ks == [(10, None), (100, None), (128, 1)]  # the whole pool: one draw
    assert notes == ["k=1000 exceeds the pool of 128 examples: capped to 128"]
    assert capped_ks((200, 300), pool=128)[0] == [(128, 1)]


@pytest.mark.parametrize("k", [1, 4, 10, 33, 100, 1000])
def test_schedule_gives_every_k_enough_updates(k):
    s = fewshot_schedule(k, batch_size=32, epochs=5, min_steps=50)
    assert s["batch_size"] == min(32, k)
    assert s["total_steps"] >= 50 and s["total_steps"] == 5 * s["steps_per_epoch"]
    # The fewest passes that do it: one pass fewer would fall short.
    if s["shot_passes"] > 1:
        fewer = -(-(s["shot_passes"] - 1) * k // s["batch_size"]) * 5
        assert fewer < 50
    assert fewshot_schedule(10, batch_size=32, epochs=5, min_steps=50) == {
        "batch_size": 10, "epochs": 5, "shot_passes": 10, "steps_per_epoch": 10,
        "total_steps": 50}


def test_config_fields_are_checked():
    with pytest.raises(ValueError, match="give both or neither"):
        TrainConfig("offline-small", "pos", ("de",), shots=4)
    with pytest.raises(ValueError, match="relative"):
        TrainConfig("offline-small", "pos", ("de",), init_from="/abs/run")
    with pytest.raises(ValueError, match="shot_passes"):
        TrainConfig("offline-small", "pos", ("de",), shot_passes=0)


def test_remedy_fields_hash_only_when_set():
    config = pair_configs("offline", "pos", "en", "de", 1)["src"]
    legacy = dataclasses.replace(config, **IDENTITY_DEFAULTS)
    assert legacy.run_hash() == config.run_hash()
    round_trip = TrainConfig.from_dict(config.to_dict())
    assert round_trip.run_hash() == config.run_hash()


@pytest.fixture(scope="module")
def fewshot_run(trained_pos_pair):
    root, configs, _ = trained_pos_pair
    config = fewshot_config(configs["src"], "de", 4, 1, FEW)
    return root, configs, config, train(config, root, progress=False)


def test_fewshot_identity_names_its_start_k_and_draw(fewshot_run):
    root, configs, config, record = fewshot_run
    assert config.init_from == relative_run_dir(configs["src"])
    assert configs["src"].run_hash() in config.init_from
    ids = {config.run_hash(), configs["src"].run_hash(), configs["tgt"].run_hash(),
           dataclasses.replace(config, shots=5).run_hash(),
           dataclasses.replace(config, shot_seed=2).run_hash()}
    assert len(ids) == 5
    assert record["run_id"] == config.run_hash()
    assert config.run_dir(root).is_dir()


def test_fewshot_starts_from_theta_src_and_trains_on_its_shots(fewshot_run):
    root, configs, config, record = fewshot_run
    src_record = train(configs["src"], root, progress=False)  # finished: returned as is
    # It starts from θ_src's selected model, head included.
    assert record["init_fingerprint"] == src_record["model_fingerprint"]
    note = record["remedy"]["de"]
    tokenizer = load_tokenizer(config.encoder)
    pool_features, _ = load_features(configs["tgt"], tokenizer, "de", "train")
    pool = eligible_examples(pool_features)
    assert note["pool"] == len(pool) == TINY_HPARAMS["max_train_examples"]
    assert note["indices"] == draw_shots(pool, 4, seed=1)  # recorded and reproducible
    assert set(note["indices"]) <= set(pool)  # a subset of θ_tgt's training data
    assert record["train_examples"] == 4 * config.shot_passes
    assert record["data_fingerprints"]["de/train"].endswith(":shots4-seed1")
    assert record["total_steps"] >= FEW["min_steps"]
    assert set(record["dev_scores"]) == {"de"} and record["history"]


def test_fewshot_run_needs_a_finished_start_and_says_so(tmp_path, trained_pos_pair):
    _, configs, _ = trained_pos_pair
    config = fewshot_config(configs["src"], "de", 4, 1, FEW)
    with pytest.raises(FileNotFoundError, match="not finished"):
        train(config, tmp_path, progress=False)
    assert not config.run_dir(tmp_path).exists()  # refused before the run folder


def test_interrupted_fewshot_run_resumes_to_the_same_weights(tmp_path, fewshot_run):
    root, configs, config, _ = fewshot_run
    other = dataclasses.replace(config, shot_seed=2)
    straight = train(other, root, progress=False)
    again = dataclasses.replace(other, shot_seed=3)
    assert train(again, root, progress=False, stop_after_steps=3)["status"] == "interrupted"
    resumed = train(again, root, progress=False)
    assert resumed["status"] == "finished"
    # Same data as a straight run of the same config: retrain it elsewhere and compare.
    import shutil

    fresh_root = tmp_path / "fresh"
    shutil.copytree(configs["src"].run_dir(root), configs["src"].run_dir(fresh_root))
    fresh = train(again, fresh_root, progress=False)
    a = read_model_state(again.run_dir(root) / MODEL_NAME)
    b = read_model_state(again.run_dir(fresh_root) / MODEL_NAME)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert fresh["model_fingerprint"] == resumed["model_fingerprint"]
    assert straight["remedy"]["de"]["indices"] != resumed["remedy"]["de"]["indices"]
