"""`TaskModel`: a pretrained encoder plus a task head initialised from one seed."""

from __future__ import annotations

import torch
from torch import nn

from . import labels
from .config import TrainConfig
from .encoders import load_encoder
from .heads import build_head
from .vocab import kept_ids, trim_embeddings

# Batch keys the encoder reads; everything else in a batch is for the head or the metrics.
_ENCODER_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class TaskModel(nn.Module):
    """An encoder (a `transformers` model) and a head (`heads.py`) for one task.

    The three end-points of a sweep (θ_src, θ_tgt, θ_bi) are TaskModels with identical
    architecture, so their state dicts line up parameter by parameter. `task` (optional,
    validated) is kept as an attribute for callers' bookkeeping.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, task: str | None = None):
        super().__init__()
        if task is not None:
            labels.label_names(task)  # validates the task name
        self.encoder = encoder
        self.head = head
        self.task = task

    def encode(self, batch: dict) -> torch.Tensor:
        """Return the encoder's last hidden states [B, T, H] for `batch`."""
        inputs = {key: batch[key] for key in _ENCODER_KEYS if key in batch}
        return self.encoder(**inputs).last_hidden_state

    def forward(self, batch: dict) -> tuple[torch.Tensor | None, torch.Tensor | dict]:
        """Return ``(loss, scores)``: the head's scalar loss (None when the batch has no
        gold labels) and its scores (logits tensor, or a dict of them for parsing)."""
        scores = self.head(self.encode(batch), batch)
        if all(key in batch for key in self.head.label_keys):
            return self.head.loss(scores, batch), scores
        return None, scores

    @torch.no_grad()
    def predict(self, batch: dict, **decode_kwargs) -> dict:
        """Return predictions for `batch`.

        ``{"pred": [B]}`` class ids (xnli), ``{"pred": [B, T]}`` tag ids (ner, pos), or
        for parsing ``{"arc_scores": [B, W, W], "rel_scores": [B, W, W, R], "heads",
        "rels"}`` with heads/rels MST-decoded (`mst.decode`; CPU long [B, W], -100 in
        column 0 and on padding). `decode_kwargs` (e.g. ``map_fn``) go to `mst.decode`.
        """
        scores = self.head(self.encode(batch), batch)
        return self.head.predict(scores, batch, **decode_kwargs)


def build_task_model_from_encoder(
    encoder: nn.Module, task: str, seed: int, *, dropout: float | None = None
) -> TaskModel:
    """Return a TaskModel around an already-loaded `encoder` with a head drawn from `seed`.

    Seeds torch (`torch.manual_seed(seed)`) right before building the head on the CPU,
    so the head depends on `seed` alone; it is then moved to the encoder's device. The
    encoder is used as given (not copied). `dropout` None keeps the head's default.
    """
    hidden = encoder.config.hidden_size
    torch.manual_seed(seed)
    head = build_head(task, hidden, dropout=dropout)
    param = next(encoder.parameters(), None)
    if param is not None:
        head = head.to(param.device)
    return TaskModel(encoder, head, task)


def build_task_model(
    encoder_name: str, task: str, seed: int, *, dropout: float | None = None
) -> TaskModel:
    """Return a TaskModel: the pretrained encoder `encoder_name` plus a head drawn from `seed`.

    The encoder comes from `encoders.load_encoder` (hub name, local folder, ``offline``
    or ``offline-small``); two calls with the same arguments give parameter-identical
    models. The tokenizer is not kept; call `encoders.load_encoder` for it.
    """
    encoder, _tokenizer = load_encoder(encoder_name)
    return build_task_model_from_encoder(encoder, task, seed, dropout=dropout)


def build_run_model(config: TrainConfig, tokenizer) -> TaskModel:
    """Return the initial TaskModel of run `config` (pretrained encoder, head drawn from its
    seed), with the embedding trimmed to the data's pieces when ``config.vocab ==
    "trimmed"`` (`tokenizer` is the encoder's: it says which pieces those are)."""
    model = build_task_model(config.encoder, config.task, config.seed)
    if config.vocab == "trimmed":
        trim_embeddings(model.encoder, kept_ids(tokenizer, config.task, config.data_source))
    return model
