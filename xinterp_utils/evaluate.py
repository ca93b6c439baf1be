"""Evaluate a `TaskModel` on collated batches: the paper's metric for its task."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import labels, metrics, mst
from .labels import IGNORE_INDEX
from .precision import autocast_context
from .progress import tqdm


def _to_device(batch: dict, device: torch.device) -> dict:
    return {
        key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
        for key, value in batch.items()
    }


def _require(batch: dict, keys: tuple[str, ...], task: str) -> None:
    missing = [key for key in keys if key not in batch]
    if missing:
        raise KeyError(f"evaluate: {task} batch lacks gold key(s) {missing}")


def _words_by_sentence(
    example: np.ndarray, word: np.ndarray, *values: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sort scored words by (example, word); check each example has words 0..n-1 once.

    Returns the boundaries of each example's run in the sorted order and the sorted
    `values`.
    """
    order = np.lexsort((word, example))
    example, word = example[order], word[order]
    starts = np.flatnonzero(np.r_[True, example[1:] != example[:-1]])
    position = np.arange(len(word)) - np.repeat(starts, np.diff(np.r_[starts, len(word)]))
    bad = np.flatnonzero(word != position)
    if len(bad):
        i = bad[0]
        raise ValueError(
            f"evaluate: example {example[i]} has word {word[i]} where word {position[i]} was"
            " expected (each word must be scored exactly once across windows)"
        )
    return starts, [v[order] for v in values]


def _tagging_scores(task: str, parts: dict[str, list[np.ndarray]]) -> dict:
    example = np.concatenate(parts["example"])
    word = np.concatenate(parts["word"])
    pred = np.concatenate(parts["pred"])
    gold = np.concatenate(parts["gold"])
    starts, (pred, gold) = _words_by_sentence(example, word, pred, gold)
    n_examples = len(starts)
    if task == "pos":
        return {"accuracy": metrics.accuracy(pred, gold), "n_examples": n_examples,
                "n_words": len(gold)}
    names = np.asarray(labels.NER_LABELS, dtype=object)
    cuts = starts[1:]
    pred_sents = [s.tolist() for s in np.split(names[pred], cuts)]
    gold_sents = [s.tolist() for s in np.split(names[gold], cuts)]
    scores = metrics.span_scores(pred_sents, gold_sents)
    return {"span_f1": scores["f1"], "precision": scores["precision"],
            "recall": scores["recall"], "n_examples": n_examples, "n_words": len(gold)}


def _decode_in_worker(scores: dict, word_mask: torch.Tensor, decode_kwargs: dict):
    # A worker thread does not inherit the caller's inference mode.
    with torch.inference_mode():
        return mst.decode(scores["arc_scores"], scores["rel_scores"], word_mask, **decode_kwargs)


def evaluate(
    model: torch.nn.Module,
    batches: Iterable[dict],
    task: str,
    *,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    map_fn: Callable | None = None,
    progress: bool = True,
) -> dict:
    """Return the task's dev/test score of `model` (a `TaskModel`) on `batches`.

    Keys: ``metric`` (`labels.TASK_METRIC[task]`), ``score`` in [0, 1], ``n_examples``
    (sentences or pairs), the metric under its own name, and extras: ``precision`` and
    ``recall`` (ner), ``uas`` and ``n_words`` (parsing), ``n_words`` (tagging).

    Batches follow docs/ARCHITECTURE.md and must carry gold labels. Tagging predictions
    are put back per (example_index, word_index), so sliding windows of one sentence are
    reassembled before scoring; parsing heads and relations come from MST decoding
    (`map_fn` is handed to `mst.decode`, e.g. a worker pool's map). Runs under
    `torch.inference_mode` with the model in eval mode, with autocast to
    `autocast_dtype` (e.g. torch.bfloat16) when given.
    """
    metric = labels.TASK_METRIC.get(task)
    if metric is None:
        raise ValueError(f"evaluate: unknown task {task!r}; expected one of {labels.TASKS}")
    device = torch.device(device)
    model.to(device)
    model.eval()
    autocast = autocast_context(device, autocast_dtype)
    decode_kwargs = {"map_fn": map_fn} if task == "parsing" and map_fn is not None else {}
    gold_keys = ("heads", "rels", "upos") if task == "parsing" else ("labels",)
    parts: dict[str, list[np.ndarray]] = {}

    def add(key: str, value: torch.Tensor | np.ndarray) -> None:
        if torch.is_tensor(value):
            value = value.cpu().numpy()
        parts.setdefault(key, []).append(value)

    def add_parse(batch: dict, decoded: tuple[np.ndarray, np.ndarray]) -> None:
        words = batch["heads"] != IGNORE_INDEX
        add("n_sent", np.array([batch["heads"].shape[0]]))
        add("pred_heads", decoded[0][words.cpu().numpy()])
        add("pred_rels", decoded[1][words.cpu().numpy()])
        for key in gold_keys:
            add(key, batch[key][words])

    # Parsing: batch i's trees are decoded (MST, on the CPU) in a background thread while
    # batch i+1 runs through the encoder; torch kernels and numpy release the GIL. One
    # batch in flight at most, since relation scores are [B, W, W, R].
    pool = ThreadPoolExecutor(max_workers=1) if task == "parsing" else None
    in_flight = None
    with torch.inference_mode(), autocast, contextlib.ExitStack() as stack:
        if pool is not None:
            stack.callback(pool.shutdown)
        for batch in tqdm(batches, desc=f"eval {task}", leave=False, disable=not progress):
            _require(batch, gold_keys, task)
            batch = _to_device(batch, device)
            if task == "parsing":
                scores = model.head(model.encode(batch), batch)
                job = pool.submit(_decode_in_worker, scores, batch["word_mask"], decode_kwargs)
                if in_flight is not None:
                    add_parse(in_flight[0], in_flight[1].result())
                in_flight = (batch, job)
                continue
            out = model.predict(batch, **decode_kwargs)
            if task == "xnli":
                add("pred", out["pred"])
                add("gold", batch["labels"])
            else:
                if "word_index" not in batch or "example_index" not in batch:
                    raise KeyError(f"evaluate: {task} batch lacks example_index/word_index")
                scored = batch["labels"] != IGNORE_INDEX
                example = batch["example_index"][:, None].expand_as(scored)
                add("example", example[scored])
                add("word", batch["word_index"][scored])
                add("pred", out["pred"][scored])
                add("gold", batch["labels"][scored])
        if in_flight is not None:
            add_parse(in_flight[0], in_flight[1].result())
    if not parts:
        raise ValueError(f"evaluate: no batches for {task}")

    if task == "xnli":
        gold = np.concatenate(parts["gold"])
        result = {"accuracy": metrics.accuracy(np.concatenate(parts["pred"]), gold),
                  "n_examples": len(gold)}
    elif task == "parsing":
        cat = {key: np.concatenate(value) for key, value in parts.items()}
        scores = metrics.attachment_scores(
            cat["pred_heads"], cat["pred_rels"], cat["heads"], cat["rels"], cat["upos"]
        )
        result = {**scores, "n_examples": int(cat["n_sent"].sum())}
    else:
        result = _tagging_scores(task, parts)
    return {"metric": metric, "score": result[metric], **result}
