"""Classifier, tagger and biaffine parser heads: shapes, formulas, losses, seeding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xinterp_utils import heads, labels


def _params(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("task", labels.TASKS)
def test_same_seed_same_head_different_seed_different_head(task):
    torch.manual_seed(3)
    a = heads.build_head(task, 24)
    torch.manual_seed(3)
    b = heads.build_head(task, 24)
    torch.manual_seed(4)
    c = heads.build_head(task, 24)
    pa, pb, pc = _params(a), _params(b), _params(c)
    assert pa.keys() == pb.keys() == pc.keys()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], pc[k]) for k in pa)


def test_build_head_types_sizes_and_dropout():
    assert isinstance(heads.build_head("xnli", 16), heads.ClassifierHead)
    assert heads.build_head("ner", 16).linear.out_features == len(labels.NER_LABELS)
    assert heads.build_head("pos", 16).linear.out_features == len(labels.UPOS_LABELS)
    parser = heads.build_head("parsing", 16, dropout=0.5)
    assert parser.rel_weight.shape == (len(labels.DEPREL_LABELS), 129, 129)
    assert parser.arc_weight.shape == (513, 512)
    assert parser.arc_dep[2].p == 0.5
    assert heads.build_head("xnli", 16).dropout.p == 0.1
    with pytest.raises(ValueError, match="unknown task"):
        heads.build_head("srl", 16)


def test_classifier_reads_only_the_first_token():
    torch.manual_seed(0)
    head = heads.ClassifierHead(8, 3).eval()
    hidden = torch.randn(2, 5, 8)
    scores = head(hidden, {})
    assert scores.shape == (2, 3)
    other = hidden.clone()
    other[:, 1:] = torch.randn(2, 4, 8)
    torch.testing.assert_close(head(other, {}), scores)
    torch.testing.assert_close(scores, hidden[:, 0] @ head.linear.weight.T + head.linear.bias)
    gold = torch.tensor([2, 0])
    expected = -(F.log_softmax(scores, -1)[0, 2] + F.log_softmax(scores, -1)[1, 0]) / 2
    torch.testing.assert_close(head.loss(scores, {"labels": gold}), expected)
    assert torch.equal(head.predict(scores, {})["pred"], scores.argmax(-1))


def test_tagger_loss_counts_only_labelled_tokens():
    torch.manual_seed(0)
    head = heads.TaggerHead(8, 7).eval()
    hidden = torch.randn(2, 4, 8)
    scores = head(hidden, {})
    assert scores.shape == (2, 4, 7)
    gold = torch.tensor([[-100, 3, -100, 1], [-100, 0, -100, -100]])
    logp = F.log_softmax(scores, -1)
    expected = -(logp[0, 1, 3] + logp[0, 3, 1] + logp[1, 1, 0]) / 3
    torch.testing.assert_close(head.loss(scores, {"labels": gold}), expected)


def test_dropout_is_active_only_in_training():
    torch.manual_seed(0)
    head = heads.TaggerHead(64, 7, dropout=0.5)
    hidden = torch.randn(2, 3, 64)
    head.train()
    assert not torch.allclose(head(hidden, {}), head(hidden, {}))
    head.eval()
    torch.testing.assert_close(head(hidden, {}), head(hidden, {}))


def test_shared_dropout_mask_is_shared_across_positions():
    torch.manual_seed(0)
    drop = heads.SharedDropout(0.5).train()
    out = drop(torch.ones(3, 6, 40))
    zero = out == 0
    assert zero.any() and not zero.all()
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same channels at every position
    assert torch.allclose(out[~zero], torch.tensor(2.0))
    assert torch.equal(drop.eval()(out), out)


def _parser_batch():
    # Sentence 0: 3 words starting at tokens 1, 2, 4; sentence 1: 2 words at tokens 1, 3.
    return {
        "word_starts": torch.tensor([[0, 1, 2, 4], [0, 1, 3, 0]]),
        "word_mask": torch.tensor([[True, True, True, True], [True, True, True, False]]),
        "heads": torch.tensor([[-100, 2, 0, 2], [-100, 0, 1, -100]]),
        "rels": torch.tensor([[-100, 26, 34, 32], [-100, 34, 3, -100]]),
    }


def _parser_and_hidden(num_rels=37):
    torch.manual_seed(0)
    head = heads.BiaffineParserHead(12, num_rels, arc_dim=6, rel_dim=5).eval()
    hidden = torch.randn(2, 6, 12)
    return head, hidden


def test_parser_scores_follow_the_biaffine_formulas():
    head, hidden = _parser_and_hidden()
    batch = _parser_batch()
    scores = head(hidden, batch)
    arc, rel = scores["arc_scores"], scores["rel_scores"]
    assert arc.shape == (2, 4, 4) and rel.shape == (2, 4, 4, 37)
    one = torch.ones(1)
    for b in range(2):
        words = hidden[b, batch["word_starts"][b]]
        dep = head.arc_dep(words)
        hd = head.arc_head(words)
        rdep = head.rel_dep(words)
        rhead = head.rel_head(words)
        for d in range(4):
            for h in range(4):
                dep1 = torch.cat([dep[d], one])
                if batch["word_mask"][b, h]:
                    torch.testing.assert_close(arc[b, d, h], dep1 @ head.arc_weight @ hd[h])
                else:
                    assert arc[b, d, h] == torch.finfo(arc.dtype).min
                expected = torch.einsum(
                    "i,rij,j->r", torch.cat([rdep[d], one]), head.rel_weight,
                    torch.cat([rhead[h], one]),
                )
                torch.testing.assert_close(rel[b, d, h], expected)


def test_parser_ignores_non_initial_subwords():
    head, hidden = _parser_and_hidden()
    batch = _parser_batch()
    scores = head(hidden, batch)
    other = hidden.clone()
    other[0, 3] = torch.randn(12)  # a continuation subword of sentence 0
    other[1, 2] = torch.randn(12)
    other[1, 4:] = torch.randn(2, 12)  # padding
    again = head(other, batch)
    torch.testing.assert_close(again["arc_scores"], scores["arc_scores"])
    torch.testing.assert_close(again["rel_scores"], scores["rel_scores"])
    other[0, 2] = torch.randn(12)  # word 2 of sentence 0: its row and column change
    changed = head(other, batch)["arc_scores"]
    assert not torch.allclose(changed[0, 2], scores["arc_scores"][0, 2])
    torch.testing.assert_close(changed[1], scores["arc_scores"][1])


def test_parser_loss_is_arc_plus_relation_cross_entropy():
    head, hidden = _parser_and_hidden()
    batch = _parser_batch()
    scores = head(hidden, batch)
    arc, rel = scores["arc_scores"], scores["rel_scores"]
    arc_terms, rel_terms = [], []
    for b in range(2):
        valid = batch["word_mask"][b]
        for d in range(4):
            g = int(batch["heads"][b, d])
            if g == -100:
                continue
            arc_terms.append(-F.log_softmax(arc[b, d][valid], -1)[g])
            rel_terms.append(-F.log_softmax(rel[b, d, g], -1)[batch["rels"][b, d]])
    expected = torch.stack(arc_terms).mean() + torch.stack(rel_terms).mean()
    loss = head.loss(scores, batch)
    torch.testing.assert_close(loss, expected)

    head.train()
    head.zero_grad()
    head.loss(head(hidden.requires_grad_(), batch), batch).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_parser_predict_decodes_trees():
    head, hidden = _parser_and_hidden()
    batch = _parser_batch()
    out = head.predict(head(hidden, batch), batch)
    assert out["heads"].shape == (2, 4) and out["rels"].dtype == torch.long
    assert out["heads"][0, 0] == -100 and out["heads"][1, 3] == -100
    for b, n in ((0, 3), (1, 2)):
        h = out["heads"][b, 1 : n + 1]
        assert int((h == 0).sum()) == 1
        assert ((h >= 0) & (h <= n)).all()
