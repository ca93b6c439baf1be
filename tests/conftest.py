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
