"""Silver target data (Yarmohammadi et al. 2021): θ_src's predictions as training labels.

The target training text θ_tgt uses (same cap, same featurisation) is labelled by
θ_src: tags for NER and POS, a label for XNLI, MST-decoded heads and relations for
parsing. The gold labels are dropped; they serve only to measure the silver labels'
agreement with them, with the task's own metric (span F1, accuracy, LAS).

Silver labels are a content-addressed artefact, `<checkpoint root>/silver/<key>.json`:
the key hashes the labelling run (id and model fingerprint), the gold split's
fingerprint, the featurisation (tokenizer, max_length) and the autocast dtype, so the
same inputs are labelled once and a changed input gets a new file. The file holds the
labels, the agreement and what produced them.

Parsing: predictions come from the training featurisation (the first `max_length`
subwords), so the words they cover are exactly the words training sees; the words past
them (and sentences the featuriser drops) get placeholder arcs (head 0, `dep`) that the
training featurisation cuts off again, and `n_labelled` records how many words of each
sentence are θ_src's. UPOS is kept: the parser's loss never reads it, only the
metric's punctuation filter does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from . import labels, metrics
from .checkpoints import finished_model_path, load_model_weights, read_record
from .config import TrainConfig
from .features import batches, featurize, tokenizer_fingerprint
from .labels import IGNORE_INDEX
from .model import build_run_model
from .paths import atomic_write
from .precision import autocast_context, autocast_dtype
from .readers import ParsedSentence, SentencePair, TaggedSentence
from .train import default_device, load_features
from .vocab import check_covered

SILVER_VERSION = "1"
PLACEHOLDER_DEPREL = "dep"


@torch.no_grad()
def predict_features(model, features, task: str, *, pad_token_id: int, device="cpu",
                     autocast_dtype=None, batch_size: int = 64) -> dict:
    """Return `model`'s predictions on `features` (training features of one split), by
    example index: a label id (xnli), an array of tag ids in word order (ner, pos), or
    (heads, relation ids) of the featurised words, heads 0 = ROOT else 1-based (parsing).

    The features' gold labels are read only as the featuriser's mask of which subword
    scores which word, never for their values. Each tagged word must be scored exactly
    once across windows.
    """
    model.to(device)
    model.eval()
    out: dict = {}
    words: dict[int, dict[int, int]] = {}
    for batch in batches(features, batch_size, pad_token_id):
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast_context(torch.device(device), autocast_dtype):
            pred = model.predict(batch)
        examples = batch["example_index"].cpu().tolist()
        if task == "xnli":
            for ex, p in zip(examples, pred["pred"].cpu().tolist(), strict=True):
                out[ex] = int(p)
        elif task in ("ner", "pos"):
            scored = (batch["labels"] != IGNORE_INDEX).cpu().numpy()
            tags = pred["pred"].cpu().numpy()
            index = batch["word_index"].cpu().numpy()
            for row, ex in enumerate(examples):
                seen = words.setdefault(ex, {})
                for w, t in zip(index[row][scored[row]], tags[row][scored[row]], strict=True):
                    if int(w) in seen:
                        raise ValueError(f"predict_features: example {ex} word {w} scored twice")
                    seen[int(w)] = int(t)
        else:
            heads, rels = pred["heads"].numpy(), pred["rels"].numpy()
            n_words = batch["word_mask"].sum(dim=1).cpu().numpy() - 1  # less ROOT
            for row, ex in enumerate(examples):
                n = int(n_words[row])
                out[ex] = (heads[row, 1:n + 1].astype(int).tolist(),
                           rels[row, 1:n + 1].astype(int).tolist())
    for ex, seen in words.items():
        if sorted(seen) != list(range(len(seen))):
            raise ValueError(f"predict_features: example {ex} lacks a prediction for some words")
        out[ex] = np.array([seen[w] for w in range(len(seen))], dtype=np.int64)
    return out


def silver_labels(examples, predictions: dict, task: str) -> dict:
    """Return the JSON-ready silver labels of `examples` from `predictions`
    (`predict_features`): {"labels": [...], "n_labelled": [...]} with label names (a
    tag list, a label, or [heads, relations]) and the words per example that carry a
    prediction. Raises ValueError naming an example a tagging or XNLI prediction lacks."""
    out, labelled = [], []
    for i, example in enumerate(examples):
        if task == "parsing":
            heads, rels = predictions.get(i, ([], []))
            rest = len(example.words) - len(heads)
            out.append([list(heads) + [0] * rest,
                        [labels.DEPREL_LABELS[r] for r in rels] + [PLACEHOLDER_DEPREL] * rest])
            labelled.append(len(heads))
            continue
        if i not in predictions:
            raise ValueError(f"silver_labels: no prediction for example {i}")
        if task == "xnli":
            out.append(labels.XNLI_LABELS[predictions[i]])
            labelled.append(1)
        else:
            names = labels.NER_LABELS if task == "ner" else labels.UPOS_LABELS
            tags = [names[t] for t in predictions[i]]
            if len(tags) != len(example.words):
                raise ValueError(f"silver_labels: example {i} has {len(example.words)} words, "
                                 f"{len(tags)} predicted tags")
            out.append(tags)
            labelled.append(len(tags))
    return {"labels": out, "n_labelled": labelled}


def apply_labels(examples, silver: dict, task: str) -> list:
    """Return copies of `examples` whose labels are the silver ones (`silver_labels`)."""
    out = []
    for example, label in zip(examples, silver["labels"], strict=True):
        if task == "xnli":
            out.append(SentencePair(example.premise, example.hypothesis, label))
        elif task == "parsing":
            out.append(ParsedSentence(example.words, example.upos, list(label[0]),
                                      list(label[1])))
        else:
            out.append(TaggedSentence(example.words, list(label)))
    return out


def agreement(gold_examples, silver: dict, task: str) -> float:
    """Return the silver labels' agreement with gold in the task's metric, a fraction:
    accuracy (xnli, pos), span F1 (ner), LAS over the labelled words whose gold head is
    among them, PUNCT and SYM excluded (parsing), as `evaluate` scores a model on the
    same training features."""
    if task == "xnli":
        ids = {name: i for i, name in enumerate(labels.XNLI_LABELS)}
        return metrics.accuracy([ids[s] for s in silver["labels"]],
                                [ids[g.label] for g in gold_examples])
    if task == "ner":
        return metrics.span_f1(silver["labels"], [g.tags for g in gold_examples])
    if task == "pos":
        return metrics.accuracy([t for s in silver["labels"] for t in s],
                                [t for g in gold_examples for t in g.tags])
    rel = {name: i for i, name in enumerate(labels.DEPREL_LABELS)}
    upos = {name: i for i, name in enumerate(labels.UPOS_LABELS)}
    cols = {k: [] for k in ("ph", "pr", "gh", "gr", "upos")}
    for gold, (heads, rels), n in zip(gold_examples, silver["labels"], silver["n_labelled"],
                                      strict=True):
        for w in range(n):
            cut_off = gold.heads[w] > n  # as the featuriser marks a head past the cut
            cols["ph"].append(heads[w])
            cols["pr"].append(rel[rels[w]])
            cols["gh"].append(IGNORE_INDEX if cut_off else gold.heads[w])
            cols["gr"].append(IGNORE_INDEX if cut_off else rel[gold.deprels[w]])
            cols["upos"].append(upos[gold.upos[w]])
    return metrics.attachment_scores(cols["ph"], cols["pr"], cols["gh"], cols["gr"],
                                     cols["upos"])["las"]


def silver_key(*, labeller: dict, gold_fingerprint: str, task: str, lang: str,
               tokenizer_fp: str, max_length: int, autocast: str | None) -> str:
    """Return the sha256 hex naming a silver-label artefact: everything the labels
    depend on (`labeller`: the labelling run's id and model fingerprint)."""
    content = {"labeller": labeller, "gold": gold_fingerprint, "task": task, "lang": lang,
               "tokenizer": tokenizer_fp, "max_length": int(max_length),
               "autocast": autocast, "version": SILVER_VERSION}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def silver_path(checkpoint_root: str | Path, key: str) -> Path:
    """Return the artefact file of silver-label key `key` under `checkpoint_root`."""
    return Path(checkpoint_root) / "silver" / f"{key[:20]}.json"


def read_artefact(path: Path, key: str) -> dict | None:
    """Return the artefact at `path` if it exists and was made for `key`, else None."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a damaged file is relabelled (and replaced atomically)
    return data if data.get("key") == key else None


def silver_split(config, tokenizer, lang: str, checkpoint_root: str | Path, *, kept=None,
                 device: str | None = None):
    """Return (silver split, artefact) for training language `lang` of silver run `config`.

    The gold split is `lang`'s capped training set as `config` loads it; the labeller is
    the finished run `config.silver_from`. Labels are read from their artefact when it
    exists for the same key, else predicted (on `device`, default cuda if available) and
    written atomically. The split's fingerprint names the artefact.
    """
    device = device or default_device()
    model_path = finished_model_path(checkpoint_root, config.silver_from)
    record = read_record(model_path.parent)
    labeller_config = TrainConfig.from_dict(record["config"])
    if labeller_config.task != config.task or labeller_config.encoder != config.encoder:
        raise ValueError(f"{model_path.parent}: labels {labeller_config.encoder}/"
                         f"{labeller_config.task}, not {config.encoder}/{config.task}")
    features, gold = load_features(config, tokenizer, lang, "train", kept=kept)
    autocast = autocast_dtype(labeller_config.precision, device)
    labeller = {"run_id": record["run_id"], "model_fingerprint": record["model_fingerprint"]}
    key = silver_key(labeller=labeller, gold_fingerprint=gold.fingerprint, task=config.task,
                     lang=lang, tokenizer_fp=tokenizer_fingerprint(tokenizer),
                     max_length=config.max_length, autocast=str(autocast) if autocast else None)
    path = silver_path(checkpoint_root, key)
    artefact = read_artefact(path, key)
    if artefact is None:
        model = build_run_model(labeller_config, tokenizer)
        load_model_weights(model, model_path)
        predictions = predict_features(model, features, config.task,
                                       pad_token_id=tokenizer.pad_token_id, device=device,
                                       autocast_dtype=autocast,
                                       batch_size=labeller_config.eval_batch_size)
        silver = silver_labels(gold.examples, predictions, config.task)
        artefact = {"key": key, "version": SILVER_VERSION, "task": config.task, "lang": lang,
                    "labeller": {**labeller, "run_dir": config.silver_from},
                    "gold_fingerprint": gold.fingerprint, "n_examples": len(gold.examples),
                    "metric": labels.TASK_METRIC[config.task],
                    "agreement": agreement(gold.examples, silver, config.task), **silver}
        with atomic_write(path, "w") as handle:
            json.dump(artefact, handle)
    split = dataclasses.replace(gold, examples=apply_labels(gold.examples, artefact,
                                                            config.task),
                                fingerprint=f"{gold.fingerprint}:silver-{key[:20]}")
    return split, artefact


def silver_features(config, tokenizer, lang: str, checkpoint_root: str | Path, kept=None):
    """Return (features, split, note) of silver run `config`'s training language `lang`:
    gold data for the labelling run's own languages (note None), silver-labelled data
    for the others (note: artefact key, labeller, metric, agreement)."""
    labeller_dir = finished_model_path(checkpoint_root, config.silver_from).parent
    labeller_langs = TrainConfig.from_dict(read_record(labeller_dir)["config"]).train_langs
    if lang in labeller_langs:
        feats, raw = load_features(config, tokenizer, lang, "train", kept=kept)
        return feats, raw, None
    split, artefact = silver_split(config, tokenizer, lang, checkpoint_root, kept=kept)
    feats = featurize(split, tokenizer, max_length=config.max_length, train=True)
    if kept is not None:
        check_covered(feats, kept, split, tokenizer)
    note = {"silver_key": artefact["key"], "labeller": artefact["labeller"]["run_id"],
            "metric": artefact["metric"], "agreement": artefact["agreement"],
            "n_examples": artefact["n_examples"],
            "artefact": silver_path(".", artefact["key"]).as_posix()}
    return feats, split, note
