"""Where a remedy run's training data comes from (`train.train` asks here).

A few-shot run (`TrainConfig.shots`) trains on drawn shots (`fewshot.shot_features`); a
silver run (`TrainConfig.silver_from`) on silver-labelled target data
(`silver.silver_features`). One remedy per run.
"""

from __future__ import annotations

from pathlib import Path

from .fewshot import shot_features
from .silver import silver_features


def remedy_features(config, tokenizer, lang: str, checkpoint_root: str | Path | None,
                    kept=None):
    """Return (features, split, note) for training language `lang` of remedy run
    `config`; `note` (a dict, or None) goes into the run's record under "remedy".
    Raises ValueError when `config` asks for both remedies or for neither, or when a
    silver run has no checkpoint root to find its labelling run in."""
    if config.shots is not None and config.silver_from is not None:
        raise ValueError("TrainConfig: shots and silver_from together; a run takes one remedy")
    if config.shots is not None:
        return shot_features(config, tokenizer, lang, kept=kept)
    if config.silver_from is None:
        raise ValueError("remedy_features: the config asks for no remedy")
    if checkpoint_root is None:
        raise ValueError("remedy_features: a silver run needs the checkpoint root of its "
                         f"labelling run {config.silver_from}")
    return silver_features(config, tokenizer, lang, checkpoint_root, kept=kept)
