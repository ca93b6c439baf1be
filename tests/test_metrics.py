"""Accuracy, BIO repair + span F1, and UAS/LAS on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

from xinterp_utils import labels, metrics

U = {tag: i for i, tag in enumerate(labels.UPOS_LABELS)}
R = {rel: i for i, rel in enumerate(labels.DEPREL_LABELS)}


def test_accuracy_skips_ignored_positions():
    pred = np.array([[1, 2, 3], [0, 0, 1]])
    gold = np.array([[1, -100, 0], [0, -100, -100]])
    assert metrics.accuracy(pred, gold) == pytest.approx(2 / 3)
    assert metrics.accuracy(torch.tensor(pred), torch.tensor(gold)) == pytest.approx(2 / 3)
    assert metrics.accuracy([2, 1, 1, 0], [2, 1, 0, 1]) == pytest.approx(0.5)


def test_accuracy_errors():
    with pytest.raises(ValueError, match="shape"):
        metrics.accuracy(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="no scored"):
        metrics.accuracy([1, 2], [-100, -100])


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["O", "I-PER"], ["O", "B-PER"]),
        (["B-PER", "I-ORG"], ["B-PER", "B-ORG"]),
        (["I-LOC", "I-LOC", "O"], ["B-LOC", "I-LOC", "O"]),
        (
            ["B-PER", "I-PER", "I-ORG", "I-ORG", "B-ORG"],
            ["B-PER", "I-PER", "B-ORG", "I-ORG", "B-ORG"],
        ),
        (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
        ([], []),
    ],
)
def test_repair_bio(tags, expected):
    assert metrics.repair_bio(tags) == expected


def test_repair_bio_rejects_non_bio_tags():
    with pytest.raises(ValueError, match="tag 1 is 'PER'"):
        metrics.repair_bio(["O", "PER"])


def test_span_scores_two_sentences_by_hand():
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC"],  # PER[0,1], LOC[3]
        ["O", "B-ORG", "I-ORG", "I-ORG", "O"],  # ORG[1,3]
    ]
    pred = [
        ["B-PER", "I-PER", "O", "B-ORG"],  # PER[0,1] right, ORG[3] wrong type
        ["O", "I-ORG", "I-ORG", "O", "I-LOC"],  # repaired: ORG[1,2] wrong end, LOC[4] spurious
    ]
    # 4 predicted spans, 3 gold spans, 1 correct.
    scores = metrics.span_scores(pred, gold)
    assert scores["precision"] == pytest.approx(1 / 4)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(2 / 7)
    assert metrics.span_f1(pred, gold) == pytest.approx(2 / 7)


def test_span_f1_spans_do_not_cross_sentences():
    # A span ending one sentence and one starting the next stay two spans.
    gold = [["O", "B-PER"], ["I-PER", "O"]]
    assert metrics.span_scores(gold, gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    pred = [["O", "B-PER"], ["O", "O"]]
    assert metrics.span_scores(pred, gold) == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3}
    )


def test_span_f1_no_entities_is_zero():
    assert metrics.span_f1([["O", "O"]], [["O", "O"]]) == 0.0


def test_repaired_default_mode_equals_strict_iob2():
    rng = np.random.default_rng(0)
    tags = np.array(labels.NER_LABELS)
    gold = [list(rng.choice(tags, size=rng.integers(1, 9))) for _ in range(200)]
    pred = [list(rng.choice(tags, size=len(g))) for g in gold]
    strict = f1_score(
        [metrics.repair_bio(g) for g in gold],
        [metrics.repair_bio(p) for p in pred],
        mode="strict",
        scheme=IOB2,
    )
    assert metrics.span_f1(pred, gold) == pytest.approx(strict)
    assert 0.0 < strict < 1.0


def test_span_scores_length_mismatch_names_sentence():
    with pytest.raises(ValueError, match="sentence 1 has 1 predicted vs 2 gold"):
        metrics.span_scores([["O"], ["O"]], [["O"], ["O", "O"]])


def test_attachment_scores_exclude_punctuation_and_symbols():
    # Sentence 1: "dogs bark . loudly" ; sentence 2: "go $ there" with word 3's head cut off.
    gold_heads = np.array([[-100, 2, 0, 2, 2], [-100, 0, 1, -100, -100]])
    gold_rels = np.array(
        [
            [-100, R["nsubj"], R["root"], R["punct"], R["advmod"]],
            [-100, R["root"], R["dep"], R["advmod"], -100],
        ]
    )
    upos = np.array(
        [
            [-100, U["NOUN"], U["VERB"], U["PUNCT"], U["ADV"]],
            [-100, U["VERB"], U["SYM"], U["ADV"], -100],
        ]
    )
    pred_heads = np.array([[-100, 2, 0, 1, 3], [-100, 0, 3, 1, -100]])
    pred_rels = np.array(
        [
            [-100, R["obj"], R["root"], R["punct"], R["advmod"]],
            [-100, R["root"], R["dep"], R["advmod"], -100],
        ]
    )
    # Scored words: s1 w1 (head ok, rel wrong), s1 w2 (both ok), s1 w4 (head wrong),
    # s2 w1 (both ok); PUNCT s1 w3 and SYM s2 w2 (both wrong heads) and s2 w3 excluded.
    scores = metrics.attachment_scores(pred_heads, pred_rels, gold_heads, gold_rels, upos)
    assert scores == {"uas": 3 / 4, "las": 2 / 4, "n_words": 4}
    # Counting punctuation and symbols would give different numbers.
    no_exclusion = upos.copy()
    no_exclusion[no_exclusion >= 0] = U["NOUN"]
    counted = metrics.attachment_scores(pred_heads, pred_rels, gold_heads, gold_rels, no_exclusion)
    assert counted["uas"] == pytest.approx(3 / 6)
    torch_scores = metrics.attachment_scores(
        *(torch.tensor(a) for a in (pred_heads, pred_rels, gold_heads, gold_rels, upos))
    )
    assert torch_scores == scores


def test_attachment_scores_errors():
    heads = np.array([[-100, 0]])
    with pytest.raises(ValueError, match="no scored words"):
        metrics.attachment_scores(heads, heads, heads, heads, np.array([[-100, U["PUNCT"]]]))
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.attachment_scores(heads, heads, heads, heads, np.array([-100, 1]))


def test_orphan_i_tags_open_a_span_on_gold_and_predictions_alike():
    # Gold as in WikiANN zh: I- right after O. conlleval counts it as a span start.
    gold = [["O", "I-PER", "I-PER", "O", "I-LOC"]]
    pred = [["O", "B-PER", "I-PER", "O", "I-LOC"]]
    assert metrics.span_scores(pred, gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    # A type change inside a run of I- tags starts a new span on either side.
    gold = [["I-PER", "I-LOC"]]
    assert metrics.span_scores([["B-PER", "B-LOC"]], gold)["f1"] == 1.0
    assert metrics.span_scores([["B-PER", "I-PER"]], gold)["f1"] == 0.0


def test_zh_wikiann_gold_has_orphan_i_tags_as_the_docs_say(data_dir):
    # metrics.span_scores and the README quote these counts.
    from xinterp_utils.data import load_split

    def orphans(split):
        sentences = 0
        for ex in load_split("ner", "zh", split).examples:
            prev = ["O", *ex.tags[:-1]]
            if any(t.startswith("I-") and (p == "O" or p[2:] != t[2:])
                   for p, t in zip(prev, ex.tags, strict=True)):
                sentences += 1
        return sentences

    assert orphans("train") == 731 and orphans("dev") == 359
    en = load_split("ner", "en", "train").examples
    assert all(metrics.repair_bio(ex.tags) == list(ex.tags) for ex in en)  # valid IOB2
