"""TaskModel construction from a seed, forward/predict, and evaluation with forced predictions."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import BertConfig, BertModel

from xinterp_utils import labels
from xinterp_utils.evaluate import evaluate
from xinterp_utils.model import TaskModel, build_task_model, build_task_model_from_encoder

NER = {tag: i for i, tag in enumerate(labels.NER_LABELS)}
U = {tag: i for i, tag in enumerate(labels.UPOS_LABELS)}
R = {rel: i for i, rel in enumerate(labels.DEPREL_LABELS)}


def _tiny_bert(seed: int = 0, layers: int = 1) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, type_vocab_size=2,
    )
    return BertModel(config, add_pooling_layer=False)


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize("task", ["xnli", "parsing"])
def test_same_seed_same_model_other_seed_other_head(task):
    encoder = _tiny_bert()
    encoder_before = _state(encoder)
    a = build_task_model_from_encoder(encoder, task, seed=7)
    torch.manual_seed(999)  # the global RNG state before the call must not matter
    b = build_task_model_from_encoder(encoder, task, seed=7)
    c = build_task_model_from_encoder(encoder, task, seed=8)
    assert _same(_state(a), _state(b))
    assert not _same(_state(a.head), _state(c.head))
    assert c.encoder is encoder and _same(_state(c.encoder), encoder_before)


def test_forward_loss_only_with_labels_and_gradients_reach_the_encoder():
    model = build_task_model_from_encoder(_tiny_bert(), "ner", seed=0)
    batch = {
        "input_ids": torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
    }
    loss, scores = model(batch)
    assert loss is None and scores.shape == (2, 5, len(labels.NER_LABELS))
    batch["labels"] = torch.tensor([[-100, 1, 2, 0, -100], [-100, 3, -100, -100, -100]])
    loss, _ = model(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grad = model.encoder.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad[5].abs().sum() > 0


def test_token_type_ids_are_passed_to_the_encoder():
    model = build_task_model_from_encoder(_tiny_bert(), "xnli", seed=0).eval()
    ids = torch.tensor([[2, 5, 6, 3, 7, 3]])
    mask = torch.ones_like(ids)
    types = torch.tensor([[0, 0, 0, 0, 1, 1]])
    with torch.no_grad():
        _, plain = model({"input_ids": ids, "attention_mask": mask})
        _, typed = model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        direct = model.encoder(input_ids=ids, attention_mask=mask, token_type_ids=types)
        expected = model.head(direct.last_hidden_state, {})
    torch.testing.assert_close(typed, expected)
    assert not torch.allclose(plain, typed)


def test_predict_shapes_for_every_task():
    encoder = _tiny_bert()
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    base = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    xnli = build_task_model_from_encoder(encoder, "xnli", 0).eval()
    assert xnli.predict(base)["pred"].shape == (2,)
    pos = build_task_model_from_encoder(encoder, "pos", 0).eval()
    assert pos.predict(base)["pred"].shape == (2, 5)
    parse = {**base, "word_starts": torch.tensor([[0, 1, 2, 3], [0, 1, 2, 0]]),
             "word_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)}
    out = build_task_model_from_encoder(encoder, "parsing", 0).eval().predict(parse)
    assert out["arc_scores"].shape == (2, 4, 4)
    assert out["rel_scores"].shape == (2, 4, 4, len(labels.DEPREL_LABELS))
    assert out["heads"].tolist()[1][3] == -100 and int((out["heads"][0, 1:] == 0).sum()) == 1


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="unknown task"):
        TaskModel(_tiny_bert(), torch.nn.Identity(), "srl")


@pytest.mark.skipif(
    importlib.util.find_spec("xinterp_utils.encoders") is None,
    reason="xinterp_utils/encoders.py (load_encoder) is not written yet",
)
def test_build_task_model_from_the_offline_small_encoder():
    a = build_task_model("offline-small", "pos", seed=1)
    b = build_task_model("offline-small", "pos", seed=1)
    c = build_task_model("offline-small", "pos", seed=2)
    assert _same(_state(a), _state(b))
    assert _same(_state(a.encoder), _state(c.encoder))
    assert not _same(_state(a.head), _state(c.head))
    from xinterp_utils.encoders import load_encoder

    _, tokenizer = load_encoder("offline-small")
    enc = tokenizer(["Hello world", "Zero-shot transfer"], padding=True, return_tensors="pt")
    batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    pred = a.eval().predict(batch)["pred"]
    assert pred.shape == enc["input_ids"].shape
    assert int(pred.max()) < len(labels.UPOS_LABELS)


# ------------------------------------------------------- evaluation, forced predictions
#
# A zero-layer BERT with zero position/type embeddings maps token t to LayerNorm(10 e_t):
# largest at dimension t. Head weights that read those dimensions make each prediction a
# known function of the token ids, so the expected scores can be worked out by hand.

H = 24
CLS, PAD, X = 20, 21, 22  # X: the word every other word attaches to (see _parser_model)


def _toy_encoder() -> BertModel:
    config = BertConfig(
        vocab_size=H, hidden_size=H, num_hidden_layers=0, num_attention_heads=1,
        intermediate_size=4, max_position_embeddings=64, hidden_dropout_prob=0.0,
    )
    encoder = BertModel(config, add_pooling_layer=False)
    with torch.no_grad():
        emb = encoder.embeddings
        emb.word_embeddings.weight.copy_(10 * torch.eye(H))
        emb.word_embeddings.weight[CLS, X] = 10.0  # ROOT: second-best head after X
        emb.word_embeddings.weight[PAD] = 0.0
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
    return encoder


def _reading_head(model: TaskModel) -> TaskModel:
    """Make a classifier/tagger predict label t for token t."""
    with torch.no_grad():
        linear = model.head.linear
        linear.weight.copy_(torch.eye(H)[: linear.out_features])
        linear.bias.zero_()
    return model


def _tag_batch(rows):
    """rows: (example, [(token, gold, word_index) ...]); gold None = not scored here."""
    width = max(len(toks) for _, toks in rows) + 1
    ids = torch.full((len(rows), width), PAD)
    gold = torch.full((len(rows), width), -100)
    word = torch.full((len(rows), width), -100)
    ids[:, 0] = CLS
    for r, (_, toks) in enumerate(rows):
        for t, (token, tag, w) in enumerate(toks, start=1):
            ids[r, t] = token
            if tag is not None:
                gold[r, t], word[r, t] = tag, w
    return {
        "input_ids": ids,
        "attention_mask": (ids != PAD).long(),
        "example_index": torch.tensor([e for e, _ in rows]),
        "labels": gold,
        "word_index": word,
    }


def _ner_sentence_1(split: bool):
    # pred  O     B-ORG I-ORG I-ORG I-LOC  (token ids = predicted tags)
    # gold  O     B-ORG I-ORG I-ORG O
    words = [(NER["O"], NER["O"]), (NER["B-ORG"], NER["B-ORG"]), (NER["I-ORG"], NER["I-ORG"]),
             (NER["I-ORG"], NER["I-ORG"]), (NER["I-LOC"], NER["O"])]
    full = [(tok, gold, w) for w, (tok, gold) in enumerate(words)]
    if not split:
        return [(1, full)]
    # Two windows cutting the ORG span; the second repeats words 1-2 as unscored context.
    first = full[:3]
    second = [(tok, None, -100) for tok, _, _ in full[1:3]] + full[3:]
    return [(1, second), (1, first)]


def _ner_batches(split: bool):
    # Sentence 0: pred B-PER I-PER O I-LOC (repaired to B-LOC), gold B-PER I-PER O B-LOC,
    # with a continuation subword (token 9, unscored) after word 0.
    s0 = [(NER["B-PER"], NER["B-PER"], 0), (9, None, -100), (NER["I-PER"], NER["I-PER"], 1),
          (NER["O"], NER["O"], 2), (NER["I-LOC"], NER["B-LOC"], 3)]
    rows = _ner_sentence_1(split)
    return [_tag_batch(rows[:1]), _tag_batch(rows[1:] + [(0, s0)])]


@pytest.mark.parametrize("split", [False, True])
def test_evaluate_ner_by_hand_and_sliding_windows(split):
    model = _reading_head(build_task_model_from_encoder(_toy_encoder(), "ner", seed=0))
    model.train()
    result = evaluate(model, _ner_batches(split), "ner", progress=False)
    # Predicted spans: PER, LOC | ORG[1,3], LOC[4]; gold: PER, LOC | ORG[1,3] -> 3 of 4 right.
    assert result["metric"] == "span_f1" and result["n_examples"] == 2
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(1.0)
    assert result["score"] == result["span_f1"] == pytest.approx(6 / 7)
    assert not model.training


def test_evaluate_ner_windows_scoring_a_word_twice_is_an_error():
    batches = _ner_batches(True)
    batches[0]["labels"][0, 1] = NER["I-ORG"]
    batches[0]["word_index"][0, 1] = 1  # word 1 is already scored by the other window
    model = _reading_head(build_task_model_from_encoder(_toy_encoder(), "ner", seed=0))
    with pytest.raises(ValueError, match="example 1 has word 1 where word 2"):
        evaluate(model, batches, "ner", progress=False)


def test_evaluate_pos_accuracy_bf16():
    model = _reading_head(build_task_model_from_encoder(_toy_encoder(), "pos", seed=0))
    rows = [(0, [(U["NOUN"], U["NOUN"], 0), (U["VERB"], U["NOUN"], 1), (U["X"], U["X"], 2)]),
            (1, [(U["PUNCT"], U["PUNCT"], 0), (U["ADJ"], U["DET"], 1)])]
    result = evaluate(model, [_tag_batch(rows)], "pos", autocast_dtype=torch.bfloat16,
                      progress=False)
    assert result["metric"] == "accuracy" and result["score"] == pytest.approx(3 / 5)
    assert result["n_examples"] == 2 and result["n_words"] == 5


def test_evaluate_xnli_accuracy():
    model = _reading_head(build_task_model_from_encoder(_toy_encoder(), "xnli", seed=0))
    # The first token decides the class: predictions 0, 2, 1, 2.
    ids = torch.tensor([[0, 5, 6], [2, 5, 6], [1, 7, PAD], [2, 8, PAD]])
    batches = [
        {"input_ids": ids[:2], "attention_mask": (ids[:2] != PAD).long(),
         "example_index": torch.tensor([0, 1]), "labels": torch.tensor([0, 1])},
        {"input_ids": ids[2:], "attention_mask": (ids[2:] != PAD).long(),
         "example_index": torch.tensor([2, 3]), "labels": torch.tensor([1, 2])},
    ]
    result = evaluate(model, batches, "xnli", progress=False)
    assert result == {"metric": "accuracy", "score": 0.75, "accuracy": 0.75, "n_examples": 4}
    with pytest.raises(KeyError, match="labels"):
        evaluate(model, [{k: v for k, v in batches[0].items() if k != "labels"}], "xnli",
                 progress=False)


def _parser_model() -> TaskModel:
    """Every word's best head is the word whose token is X; X's best head is ROOT."""
    model = build_task_model_from_encoder(_toy_encoder(), "parsing", seed=0)
    head = model.head
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.arc_head[0].weight[0, X] = 1.0  # arc-head feature 0 = how much X the word has
        head.arc_weight[-1, 0] = 1.0  # head-side bias: s[d, h] = that feature of h
        head.rel_weight[R["nsubj"], -1, -1] = 5.0  # every arc labelled nsubj
    return model


def test_evaluate_parsing_by_hand():
    # Sentence 0 words: a X . b (word 1 has a continuation subword); sentence 1: X c d.
    ids = torch.tensor([[CLS, 1, 9, X, 2, 3], [CLS, X, 4, 5, PAD, PAD]])
    batch = {
        "input_ids": ids,
        "attention_mask": (ids != PAD).long(),
        "example_index": torch.tensor([0, 1]),
        "word_starts": torch.tensor([[0, 1, 3, 4, 5], [0, 1, 2, 3, 0]]),
        "word_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool),
        # predicted: s0 heads 2 0 2 2, s1 heads 0 1 1; all nsubj
        "heads": torch.tensor([[-100, 2, 0, 2, 1], [-100, 0, 1, -100, -100]]),
        "rels": torch.tensor([[-100, R["nsubj"], R["root"], R["punct"], R["obj"]],
                              [-100, R["root"], R["nsubj"], -100, -100]]),
        "upos": torch.tensor([[-100, U["NOUN"], U["VERB"], U["PUNCT"], U["NOUN"]],
                              [-100, U["VERB"], U["NOUN"], U["NOUN"], -100]]),
    }
    model = _parser_model()
    out = model.eval().predict(batch)
    assert out["heads"].tolist() == [[-100, 2, 0, 2, 2], [-100, 0, 1, 1, -100]]
    # Scored: s0 w1 (ok, ok), w2 (ok, rel root != nsubj), w4 (wrong head); s0 w3 is PUNCT;
    # s1 w1 (ok, wrong rel), w2 (ok, ok); s1 w3's head was cut off.
    result = evaluate(model, [batch], "parsing", progress=False)
    assert result["metric"] == "las" and result["n_examples"] == 2
    assert result["uas"] == pytest.approx(4 / 5)
    assert result["score"] == result["las"] == pytest.approx(2 / 5)
    assert result["n_words"] == 5
    # One sentence per batch, and a pool-style map_fn, give the same numbers.
    halves = [{k: v[i : i + 1] for k, v in batch.items()} for i in range(2)]
    again = evaluate(model, halves, "parsing", map_fn=map, progress=False)
    assert again == result
