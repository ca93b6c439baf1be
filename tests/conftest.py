"""Shared test setup: offline hub, a repo-local cache, and the offline data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tests never touch the network: the hub is unreachable here and must stay so in CI.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Built encoders and feature caches go to a cache inside the checkout (git-ignored),
# so a test run never depends on what another run left elsewhere.
os.environ.setdefault("XINTERP_CACHE", str(REPO / ".cache"))


def _require_data() -> bool:
    return os.environ.get("XINTERP_REQUIRE_DATA") == "1"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The offline data folder; skips (or fails, under XINTERP_REQUIRE_DATA=1) without it."""
    from xinterp_utils.paths import offline_data_dir

    path = offline_data_dir()
    if path is None:
        message = "offline data not found: set XINTERP_DATA to a folder with manifest.json"
        if _require_data():
            pytest.fail(message)
        pytest.skip(message)
    return path


# A tiny but real fine-tuning setting on the 2-layer offline encoder (seconds per model).
TINY_ENCODER = "offline-small"
TINY_HPARAMS = {"epochs": 2, "batch_size": 8, "max_length": 64, "max_train_examples": 24,
                "max_dev_examples": 16, "lr": 1e-4}


@pytest.fixture(scope="session")
def trained_pos_pair(tmp_path_factory, data_dir):
    """θ_src, θ_tgt, θ_bi for POS en→de (seed 3), trained once per test session.

    Returns (checkpoint_root, {role: TrainConfig}, {role: record}).
    """
    from xinterp_utils.config import pair_configs
    from xinterp_utils.train import train

    root = tmp_path_factory.mktemp("checkpoints")
    configs = pair_configs(TINY_ENCODER, "pos", "en", "de", seed=3, **TINY_HPARAMS)
    records = {role: train(c, root, progress=False) for role, c in configs.items()}
    return root, configs, records
