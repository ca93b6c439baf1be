"""Run ids and sweep ids of results committed before a setting existed stay the same.

The literals are ids found in the committed results (the first offline reproduction,
lr 3e-4, batch 16, 320/50 examples): a setting added later must hash to nothing at the
value that reproduces those runs, or every committed row would silently stop matching
its checkpoint and `resume.complete_cells` would retrain everything.
"""

from __future__ import annotations

import dataclasses

import pytest

from xinterp_utils.config import IDENTITY_DEFAULTS, TrainConfig, pair_configs
from xinterp_utils.sweep_spec import SweepSpec

FIRST_REPRO = {"epochs": 2, "batch_size": 16, "lr": 3e-4, "max_length": 128,
               "warmup_ratio": 0.1, "max_train_examples": 320, "max_dev_examples": 50,
               "data_source": None}
# (task, role) -> run id, and task -> sweep id, of en-de seed 1 in the committed results.
RUN_IDS = {("ner", "src"): "d3f0b632e26f", ("ner", "tgt"): "54cd560404b0",
           ("ner", "bi"): "700477aed66c", ("parsing", "src"): "9b57bc7f8ee9",
           ("parsing", "bi"): "817f973f709c", ("xnli", "tgt"): "5f03f5ef8388"}
SWEEP_IDS = {"ner": "586b4e3efd0b", "parsing": "76e53a7c6bda", "xnli": "abd5cef9bcbb"}


@pytest.mark.parametrize(("task", "role"), sorted(RUN_IDS))
def test_committed_run_ids_are_stable(task, role):
    configs = pair_configs("offline", task, "en", "de", 1, **FIRST_REPRO)
    assert configs[role].run_hash() == RUN_IDS[(task, role)]
    # The later settings at their legacy values hash to the same id...
    legacy = dataclasses.replace(configs[role], **IDENTITY_DEFAULTS)
    assert legacy.run_hash() == RUN_IDS[(task, role)]
    # ...and any other value is another run.
    for name, other in (("batching", "length-grouped"), ("precision", "bf16-native"),
                        ("vocab", "trimmed"), ("evals_per_epoch", 4)):
        assert dataclasses.replace(configs[role], **{name: other}).run_hash() != RUN_IDS[
            (task, role)], name


@pytest.mark.parametrize("task", sorted(SWEEP_IDS))
def test_committed_sweep_ids_are_stable(task):
    for hparams in (FIRST_REPRO, {**FIRST_REPRO, **IDENTITY_DEFAULTS}):
        spec = SweepSpec("offline", task, "en", "de", 1, hparams=hparams,
                         planes=("eq1", "eq2"), alphas_1d=(0.0, 1.0), max_dev_examples=50)
        assert spec.sweep_id() == SWEEP_IDS[task]
    changed = SweepSpec("offline", task, "en", "de", 1,
                        hparams={**FIRST_REPRO, "precision": "bf16-native"},
                        max_dev_examples=50)
    assert changed.sweep_id() != SWEEP_IDS[task]


def test_the_profile_passes_every_training_setting_on():
    from xinterp_utils.profiles import load_profile

    profile = load_profile("smoke", ["batching=length-grouped", "precision=fp32",
                                     "vocab=trimmed", "evals_per_epoch=3"])
    config = TrainConfig("offline-small", "ner", ("en",), **profile.train_hparams())
    assert (config.batching, config.precision, config.vocab, config.evals_per_epoch) == (
        "length-grouped", "fp32", "trimmed", 3)
    with pytest.raises(ValueError, match="batching='sorted'"):
        load_profile("smoke", ["batching=sorted"])


def test_task_hparams_change_only_their_task():
    from xinterp_utils.profiles import load_profile
    from xinterp_utils.sweep_spec import plan_sweeps

    profile = load_profile("smoke", ["task_hparams={parsing: {epochs: 7, lr: 1.0e-3}}"])
    assert profile.train_hparams("parsing")["epochs"] == 7
    assert profile.train_hparams("parsing")["lr"] == 1e-3
    assert profile.train_hparams("ner")["epochs"] == profile.epochs == 2
    specs = {s.task: s for s in plan_sweeps(profile, two_d=False)}
    assert specs["parsing"].configs()["src"].epochs == 7
    assert specs["ner"].configs()["src"].epochs == 2
    for bad, field in (("{parsing: {max_length: 64}}", "parsing: settings"),
                       ("{tagging: {epochs: 3}}", "unknown task 'tagging'"),
                       ("{pos: {epochs: 0}}", "pos.epochs=0")):
        with pytest.raises(ValueError, match=field):
            load_profile("smoke", [f"task_hparams={bad}"])
