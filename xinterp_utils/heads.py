"""Task heads on top of an encoder's last hidden states (Wu, Van Durme & Dredze 2022, App. A).

Every head has the same interface, used by `model.TaskModel`:

- ``head(hidden, batch) -> scores``: `hidden` is the encoder's last layer [B, T, H],
  `batch` the collated batch (docs/ARCHITECTURE.md, "Features and batches");
- ``head.loss(scores, batch) -> scalar tensor`` (needs the gold keys in ``label_keys``);
- ``head.predict(scores, batch) -> dict`` of predictions.

Parameters are drawn from the torch RNG at construction only, so seeding torch right
before building a head makes it identical across runs (the paper's shared initialisation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import labels, mst
from .labels import IGNORE_INDEX


class _LinearHead(nn.Module):
    """Dropout then one linear layer to `num_labels` scores; the heads below differ in which
    hidden states they score and how."""

    label_keys = ("labels",)

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, num_labels)


class ClassifierHead(_LinearHead):
    """Linear classifier on the first token's hidden state (XNLI): scores [B, num_labels]."""

    def forward(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        """Return logits [B, num_labels] from the first token ([CLS] / <s>)."""
        return self.linear(self.dropout(hidden[:, 0]))

    def loss(self, scores: torch.Tensor, batch: dict) -> torch.Tensor:
        """Return the mean cross-entropy against ``batch["labels"]`` [B]."""
        return F.cross_entropy(scores.float(), batch["labels"], ignore_index=IGNORE_INDEX)

    def predict(self, scores: torch.Tensor, batch: dict) -> dict:
        """Return ``{"pred": [B]}`` class ids."""
        return {"pred": scores.argmax(dim=-1)}


class TaggerHead(_LinearHead):
    """Linear tagger on every token (NER, POS): scores [B, T, num_labels].

    Only first subwords carry labels; the others are -100 (`IGNORE_INDEX`) and ignored by
    the loss.
    """

    def forward(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        """Return logits [B, T, num_labels]."""
        return self.linear(self.dropout(hidden))

    def loss(self, scores: torch.Tensor, batch: dict) -> torch.Tensor:
        """Return the mean cross-entropy over labelled tokens (``labels != -100``)."""
        return F.cross_entropy(
            scores.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX
        )

    def predict(self, scores: torch.Tensor, batch: dict) -> dict:
        """Return ``{"pred": [B, T]}`` tag ids (meaningful where ``labels != -100``)."""
        return {"pred": scores.argmax(dim=-1)}


class SharedDropout(nn.Module):
    """Dropout with one mask per sequence, shared across positions ([B, L, D] inputs).

    The "variational" dropout of Dozat & Manning's MLPs (and of the paper's codebase).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return `x` with whole feature channels of each sequence zeroed (training only)."""
        if not self.training or self.p == 0:
            return x
        keep = F.dropout(x.new_ones(x.shape[0], 1, x.shape[-1]), self.p, training=True)
        return x * keep


def _mlp(hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, out), nn.ELU(), SharedDropout(dropout))


class BiaffineParserHead(nn.Module):
    """Dozat & Manning (2017) biaffine dependency parser over word representations.

    Words are represented by their first subword (``batch["word_starts"]``; column 0 is
    the first token, standing for ROOT). Four MLPs (Linear, ELU, shared dropout) give
    arc-dependent, arc-head, rel-dependent and rel-head vectors. Arc scores are biaffine
    with a bias on the head side, ``s[d, h] = [dep_d; 1] U head_h`` = ``dep_d U' head_h +
    u . head_h`` (u: how likely h is to be any word's head; a dependent-only term would
    not change a softmax over heads); relation scores are biaffine in both,
    ``s[d, h, r] = [dep_d; 1] V_r [head_h; 1]`` (bilinear + both linear terms + bias).

    Defaults are the paper's codebase (shijie-wu/crosslingual-nlp): arc_dim 512,
    rel_dim 128, MLP dropout 0.33. The MLPs project any encoder width (384 for the
    offline encoder, 768 mBERT, 1024 XLM-R large) to these sizes, so one set of
    defaults fits all. The head has 1.4M parameters on a 384-wide encoder and 2.2M on a
    1024-wide one, negligible next to the encoder in time and memory, so there is no
    reason to shrink it for speed.

    Scores: ``{"arc_scores": [B, W, W] ([b, d, h], padded heads at the dtype's minimum),
    "rel_scores": [B, W, W, R]}``. All relation scores are computed (not only at gold
    heads): with W <= 129 words and R = 37 this costs far less than the encoder, and
    decoding needs them for every candidate head.
    """

    label_keys = ("heads", "rels")

    def __init__(
        self,
        hidden: int,
        num_rels: int,
        arc_dim: int = 512,
        rel_dim: int = 128,
        dropout: float = 0.33,
    ):
        super().__init__()
        self.arc_dep = _mlp(hidden, arc_dim, dropout)
        self.arc_head = _mlp(hidden, arc_dim, dropout)
        self.rel_dep = _mlp(hidden, rel_dim, dropout)
        self.rel_head = _mlp(hidden, rel_dim, dropout)
        self.arc_weight = nn.Parameter(torch.empty(arc_dim + 1, arc_dim))
        self.rel_weight = nn.Parameter(torch.empty(num_rels, rel_dim + 1, rel_dim + 1))
        # As in the codebase: Xavier for the arc biaffine, nn.Bilinear's uniform for labels.
        nn.init.xavier_uniform_(self.arc_weight)
        bound = 1.0 / math.sqrt(rel_dim + 1)
        nn.init.uniform_(self.rel_weight, -bound, bound)

    @staticmethod
    def _with_one(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1)

    def forward(self, hidden: torch.Tensor, batch: dict) -> dict:
        """Return ``{"arc_scores": [B, W, W], "rel_scores": [B, W, W, R]}`` logits."""
        starts = batch["word_starts"]
        words = torch.gather(hidden, 1, starts[..., None].expand(-1, -1, hidden.shape[-1]))
        arc_dep = self._with_one(self.arc_dep(words))
        arc_head = self.arc_head(words)
        # [B, W, A+1] @ [A+1, A] @ [B, A, W] -> [B, W(dep), W(head)]
        arc = (arc_dep @ self.arc_weight.to(arc_dep.dtype)) @ arc_head.transpose(1, 2)
        mask = batch["word_mask"].bool()
        arc = arc.masked_fill(~mask[:, None, :], torch.finfo(arc.dtype).min)

        rel_dep = self._with_one(self.rel_dep(words))  # [B, W, K]
        rel_head = self._with_one(self.rel_head(words))
        b, w, k = rel_dep.shape
        r = self.rel_weight.shape[0]
        weight = self.rel_weight.to(rel_dep.dtype)
        # [B, W, K] x [K, R*K] -> [B, W*R, K] x [B, K, W] -> [B, W, R, W] -> [B, W, W, R]
        left = (rel_dep @ weight.permute(1, 0, 2).reshape(k, r * k)).reshape(b, w * r, k)
        rel = (left @ rel_head.transpose(1, 2)).reshape(b, w, r, w).permute(0, 1, 3, 2)
        return {"arc_scores": arc, "rel_scores": rel}

    def loss(self, scores: dict, batch: dict) -> torch.Tensor:
        """Return arc cross-entropy over heads + relation cross-entropy at the gold head.

        Each is a mean over the words with a gold head (``heads != -100``).
        """
        arc = scores["arc_scores"].float()
        gold_heads = batch["heads"]
        arc_loss = F.cross_entropy(
            arc.flatten(0, 1), gold_heads.flatten(), ignore_index=IGNORE_INDEX
        )
        rel = scores["rel_scores"]
        index = gold_heads.clamp(min=0)[..., None, None].expand(-1, -1, 1, rel.shape[-1])
        rel_at_gold = torch.gather(rel, 2, index)[:, :, 0].float()  # [B, W, R]
        rels = batch["rels"].masked_fill(gold_heads == IGNORE_INDEX, IGNORE_INDEX)
        rel_loss = F.cross_entropy(
            rel_at_gold.flatten(0, 1), rels.flatten(), ignore_index=IGNORE_INDEX
        )
        return arc_loss + rel_loss

    def predict(self, scores: dict, batch: dict, **decode_kwargs) -> dict:
        """Return the scores plus MST-decoded ``heads`` and ``rels``.

        heads/rels are CPU long tensors [B, W] with -100 in column 0 and on padding.
        """
        heads, rels = mst.decode(
            scores["arc_scores"], scores["rel_scores"], batch["word_mask"], **decode_kwargs
        )
        return {**scores, "heads": torch.from_numpy(heads), "rels": torch.from_numpy(rels)}


def build_head(task: str, hidden: int, *, dropout: float | None = None) -> nn.Module:
    """Return a freshly initialised head for `task` on an encoder of width `hidden`.

    `dropout` None keeps each head's default (0.1 classifier/tagger, 0.33 parser MLPs).
    The number of outputs comes from `labels.label_names(task)`.
    """
    num = len(labels.label_names(task))
    kwargs = {} if dropout is None else {"dropout": dropout}
    if task == "xnli":
        return ClassifierHead(hidden, num, **kwargs)
    if task in ("ner", "pos"):
        return TaggerHead(hidden, num, **kwargs)
    return BiaffineParserHead(hidden, num, **kwargs)
