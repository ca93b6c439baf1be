"""The paper's metrics: accuracy (XNLI, POS), span F1 (NER), UAS/LAS (parsing).

All scores are fractions in [0, 1]. Positions whose gold value is -100 are never scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

from . import labels
from .labels import IGNORE_INDEX

# UPOS ids of the tags excluded from attachment scores (PUNCT, SYM).
EXCLUDED_UPOS_IDS = tuple(labels.UPOS_LABELS.index(tag) for tag in labels.PARSING_EXCLUDED_UPOS)


def _as_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name}: expected a rectangular numeric array")
    return arr


def _same_shape(**arrays: np.ndarray) -> None:
    shapes = {name: arr.shape for name, arr in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shape mismatch: {shapes}")


def accuracy(pred, gold) -> float:
    """Return the fraction of positions where `pred == gold`, skipping gold == -100.

    `pred` and `gold` are same-shaped integer arrays or tensors (any shape).
    """
    pred, gold = _as_array(pred, "pred"), _as_array(gold, "gold")
    _same_shape(pred=pred, gold=gold)
    scored = gold != IGNORE_INDEX
    n = int(scored.sum())
    if n == 0:
        raise ValueError("accuracy: no scored positions (every gold value is -100)")
    return float((pred[scored] == gold[scored]).sum()) / n


def repair_bio(tags: Sequence[str]) -> list[str]:
    """Return IOB2 tags where every orphan ``I-X`` starts a span (becomes ``B-X``).

    An ``I-X`` is an orphan at the start of a sentence, after ``O``, or after a tag of
    another type; ``O``, ``B-X`` and continuing ``I-X`` tags are kept as they are.
    """
    out = []
    current = None  # entity type of the span the previous tag belongs to
    for i, tag in enumerate(tags):
        if tag == "O":
            current = None
        elif tag.startswith("B-") and len(tag) > 2:
            current = tag[2:]
        elif tag.startswith("I-") and len(tag) > 2:
            if tag[2:] != current:
                tag = "B-" + tag[2:]
                current = tag[2:]
        else:
            raise ValueError(f"repair_bio: tag {i} is {tag!r}, not O, B-X or I-X")
        out.append(tag)
    return out


def span_scores(
    pred_sentences: Sequence[Sequence[str]], gold_sentences: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Return micro-averaged span ``precision``, ``recall`` and ``f1`` in [0, 1].

    Both gold and predicted tags are BIO-repaired first (`repair_bio`): an orphan ``I-X``
    (at the start of a sentence, after ``O`` or after a tag of another type) opens a
    span, as conlleval treats it. This matters for gold too: WikiANN zh is not valid
    IOB2 (in the offline copy, 731 of its 20,000 training sentences and 359 of its
    10,000 dev sentences have an ``I-`` tag right after ``O``); the other languages'
    gold is valid IOB2 and is left unchanged. Spans are then counted with seqeval's
    default (conlleval) mode, which on the repaired (valid IOB2) tags agrees with its
    strict IOB2 mode: a span is correct when type, start and end all match. A score
    whose denominator is 0 is 0.
    """
    if len(pred_sentences) != len(gold_sentences):
        raise ValueError(
            f"span_scores: {len(pred_sentences)} predicted vs {len(gold_sentences)} gold sentences"
        )
    preds, golds = [], []
    for i, (p, g) in enumerate(zip(pred_sentences, gold_sentences, strict=True)):
        if len(p) != len(g):
            raise ValueError(
                f"span_scores: sentence {i} has {len(p)} predicted vs {len(g)} gold tags"
            )
        preds.append(repair_bio(p))
        golds.append(repair_bio(g))
    precision, recall, f1, _ = precision_recall_fscore_support(
        golds, preds, average="micro", zero_division=0
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def span_f1(
    pred_sentences: Sequence[Sequence[str]], gold_sentences: Sequence[Sequence[str]]
) -> float:
    """Return the micro span F1 in [0, 1] after BIO repair (see `span_scores`)."""
    return span_scores(pred_sentences, gold_sentences)["f1"]


def attachment_scores(pred_heads, pred_rels, gold_heads, gold_rels, upos) -> dict[str, float]:
    """Return ``{"uas", "las", "n_words"}``: unlabelled/labelled attachment in [0, 1].

    All inputs are same-shaped integer arrays or tensors (e.g. [B, W] batches). A word is
    scored when its gold head is not -100 and its UPOS id is not PUNCT or SYM
    (`labels.PARSING_EXCLUDED_UPOS`); UAS counts correct heads, LAS correct heads with
    the correct relation. `n_words` is the number of scored words.
    """
    arrays = {
        "pred_heads": _as_array(pred_heads, "pred_heads"),
        "pred_rels": _as_array(pred_rels, "pred_rels"),
        "gold_heads": _as_array(gold_heads, "gold_heads"),
        "gold_rels": _as_array(gold_rels, "gold_rels"),
        "upos": _as_array(upos, "upos"),
    }
    _same_shape(**arrays)
    gold_h = arrays["gold_heads"]
    scored = (gold_h != IGNORE_INDEX) & ~np.isin(arrays["upos"], EXCLUDED_UPOS_IDS)
    n = int(scored.sum())
    if n == 0:
        raise ValueError("attachment_scores: no scored words (all -100 or punctuation)")
    head_ok = (arrays["pred_heads"] == gold_h) & scored
    label_ok = head_ok & (arrays["pred_rels"] == arrays["gold_rels"])
    return {"uas": float(head_ok.sum()) / n, "las": float(label_ok.sum()) / n, "n_words": n}
