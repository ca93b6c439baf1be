"""Silver labels (notebook 06): θ_src's predictions, their agreement with gold, the run."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_ENCODER, TINY_HPARAMS
from xinterp_utils import silver
from xinterp_utils.checkpoints import MODEL_NAME, load_run_model, relative_run_dir
from xinterp_utils.config import TrainConfig
from xinterp_utils.encoders import load_tokenizer
from xinterp_utils.evaluate import evaluate
from xinterp_utils.features import batches, featurize
from xinterp_utils.readers import SentencePair, TaggedSentence
from xinterp_utils.remedies import silver_config
from xinterp_utils.train import load_features, train


def _labelled(task, src_config, bi_config, root):
    """(silver split, artefact, θ_src, its tokenizer, the gold pool's features)."""
    config = silver_config(src_config, bi_config)
    tokenizer = load_tokenizer(config.encoder)
    split, artefact = silver.silver_split(config, tokenizer, "de", root, device="cpu")
    model = load_run_model(src_config, root, tokenizer)
    gold_features, gold = load_features(config, tokenizer, "de", "train")
    return split, artefact, model, tokenizer, gold_features, gold


def _score(model, features, task, tokenizer):
    return evaluate(model, batches(features, 64, tokenizer.pad_token_id), task,
                    progress=False)["score"]


@pytest.fixture(scope="module")
def parsing_src(tmp_path_factory, data_dir):
    """A tiny θ_src for parsing en (seed 3) and the matching θ_bi config (not trained)."""
    root = tmp_path_factory.mktemp("parsing")
    src = TrainConfig(TINY_ENCODER, "parsing", ("en",), 3, **TINY_HPARAMS)
    train(src, root, progress=False)
    return root, src, TrainConfig(TINY_ENCODER, "parsing", ("en", "de"), 3, **TINY_HPARAMS)


def test_pos_silver_labels_are_theta_src_predictions(trained_pos_pair):
    root, configs, _ = trained_pos_pair
    split, artefact, model, tokenizer, gold_features, gold = _labelled(
        "pos", configs["src"], configs["bi"], root)
    silver_features = featurize(split, tokenizer, max_length=configs["bi"].max_length)
    # θ_src agrees with its own labels everywhere, and with gold as the artefact says.
    assert _score(model, silver_features, "pos", tokenizer) == 1.0
    assert artefact["agreement"] == pytest.approx(
        _score(model, gold_features, "pos", tokenizer), abs=1e-12)
    assert artefact["agreement"] < 1.0  # a tiny θ_src: the labels are not gold
    assert [e.words for e in split.examples] == [e.words for e in gold.examples]
    assert split.fingerprint != gold.fingerprint and "silver-" in split.fingerprint
    assert artefact["metric"] == "accuracy" and artefact["n_examples"] == len(gold.examples)


def test_parsing_silver_labels_are_mst_decoded_predictions(parsing_src):
    root, src, bi = parsing_src
    split, artefact, model, tokenizer, gold_features, _gold = _labelled(
        "parsing", src, bi, root)
    silver_features = featurize(split, tokenizer, max_length=bi.max_length)
    assert _score(model, silver_features, "parsing", tokenizer) == 1.0  # LAS on own labels
    assert artefact["agreement"] == pytest.approx(
        _score(model, gold_features, "parsing", tokenizer), abs=1e-12)
    for example, n in zip(split.examples, artefact["n_labelled"], strict=True):
        assert len(example.heads) == len(example.words) and 0 <= n <= len(example.words)
        assert all(0 <= h <= n for h in example.heads[:n])  # a tree over the covered words


def test_agreement_is_the_tasks_metric_on_hand_made_labels():
    gold = [TaggedSentence(["a", "b", "c"], ["B-PER", "I-PER", "O"]),
            TaggedSentence(["d", "e"], ["B-LOC", "O"])]
    labels = {"labels": [["B-PER", "I-PER", "O"], ["O", "O"]], "n_labelled": [3, 2]}
    assert silver.agreement(gold, labels, "ner") == pytest.approx(2 / 3)  # P 1, R 1/2
    pairs = [SentencePair("p", "h", lab) for lab in ("entailment", "neutral")]
    assert silver.agreement(pairs, {"labels": ["entailment", "entailment"]}, "xnli") == 0.5


def test_silver_labels_are_a_cached_content_addressed_artefact(trained_pos_pair, monkeypatch):
    root, configs, _ = trained_pos_pair
    _, first, *_ = _labelled("pos", configs["src"], configs["bi"], root)
    path = silver.silver_path(root, first["key"])
    assert json.loads(path.read_text())["key"] == first["key"]

    def never(*args, **kwargs):
        raise AssertionError("labels were predicted again")

    monkeypatch.setattr(silver, "predict_features", never)
    _, again, *_ = _labelled("pos", configs["src"], configs["bi"], root)
    assert again == first
    # Another labeller (θ_tgt's model) is another key.
    other = silver.silver_key(labeller={"run_id": configs["tgt"].run_hash(),
                                        "model_fingerprint": "x"},
                              gold_fingerprint="g", task="pos", lang="de", tokenizer_fp="t",
                              max_length=64, autocast=None)
    assert other != first["key"]


def test_silver_run_starts_where_theta_bi_does_and_records_agreement(trained_pos_pair):
    root, configs, records = trained_pos_pair
    config = silver_config(configs["src"], configs["bi"])
    assert config.silver_from == relative_run_dir(configs["src"])
    assert config.run_hash() not in {c.run_hash() for c in configs.values()}
    record = train(config, root, progress=False)
    assert record["init_fingerprint"] == records["bi"]["init_fingerprint"]  # same start
    note = record["remedy"]["de"]
    assert set(record["remedy"]) == {"de"}  # the source keeps its gold labels
    assert note["labeller"] == configs["src"].run_hash() and note["metric"] == "accuracy"
    assert (root / note["artefact"]).is_file()
    assert record["data_fingerprints"]["de/train"].endswith(note["silver_key"][:20])
    assert (config.run_dir(root) / MODEL_NAME).is_file()
