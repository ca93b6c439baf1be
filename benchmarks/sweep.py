"""Cost per point of a 1D interpolation sweep: naive, ours before, ours (`run_sweep`) and
pure forward.

One process, one set of end-points (trained once with tiny settings if missing, not
timed), the same points and the same dev examples, four ways:

- naive: per point, load the three state dicts from disk (`embedding_store.read_model_state`),
  build θ(α) on the CPU, `model.load_state_dict`, re-collate the dev features in file
  order padded to `max_length` tokens (128; longer features keep their length), and
  `evaluate()` them. The interpolation formula is ours, so both sides hold the same
  parameters bit for bit and must print the same scores (checked).
- ours before: `sweeps.run_sweep` with the settings every sweep had before the trimmed
  vocabulary and CPU bf16 existed (full 250k-row embedding, fp32 on a CPU), on the same
  end-point weights (copied into that spec's run folders). Must equal naive's scores.
- ours: `sweeps.run_sweep` on a `SweepSpec` with `vocab=trimmed` and
  `precision=bf16-native` (bf16 autocast where the CPU has native bf16), into a fresh
  results folder each repeat,
  timed end to end. Its per-point time runs from the first `set_point` to the return,
  i.e. it excludes the one-time set-up (end-points from disk, model build, plane on the
  device, features from the cache, batching) and includes everything a point costs:
  `set_point`, `evaluate` on both dev sets (forward, predictions to the CPU, metric,
  MST decoding for parsing), the CSV row append with its fsync.
- forward: `model.head(model.encode(batch), batch)` on ours' exact batches (captured
  from `run_sweep`, length-sorted, already on the device) with the parameters fixed,
  under `torch.inference_mode()` (and ours' autocast). No `predict`: no argmax, no
  metric, no MST decoding. This is the model's own compute: the floor.

The targets are per point: naive / ours >= 2 and ours / forward <= 1.15; ours before /
ours is the saving of the trimmed vocabulary and bf16. Repeats rotate
which contender goes first; the table shows medians. Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/sweep.py [--task parsing] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from xinterp_utils import labels
from xinterp_utils import sweeps as sweeps_mod
from xinterp_utils.checkpoints import MODEL_NAME, RECORD_NAME, load_model_weights
from xinterp_utils.embedding_store import read_model_state
from xinterp_utils.encoders import load_tokenizer
from xinterp_utils.evaluate import evaluate
from xinterp_utils.features import collate
from xinterp_utils.labels import IGNORE_INDEX, TASKS
from xinterp_utils.model import build_run_model, build_task_model
from xinterp_utils.precision import autocast_dtype
from xinterp_utils.sweep_spec import SweepSpec
from xinterp_utils.sweeps import run_sweep
from xinterp_utils.train import default_device, load_features, train

# End-points good enough to give non-trivial scores, trained in about a minute on 2 cores.
TRAIN_HPARAMS = {"epochs": 2, "batch_size": 16, "lr": 1e-4, "max_length": 128,
                 "max_train_examples": 256, "max_dev_examples": 64}
# What a sweep saves since: embedding rows of the data's pieces only, bf16 where native.
FAST = {"vocab": "trimmed", "precision": "bf16-native", "batching": "length-grouped"}
SOURCE, TARGET = "en", "de"


def _sync(device: str) -> None:
    # CUDA runs asynchronously: wait for queued work before reading the clock.
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class OursRun:
    """One timed `run_sweep` call and what happened inside it."""

    total: float = 0.0  # end to end
    setup: float = 0.0  # call to first set_point
    points: int = 0  # set_point calls (distinct points evaluated)
    set_point: float = 0.0
    evaluate: float = 0.0
    append: float = 0.0
    scores: list[float] = field(default_factory=list)  # per evaluate call, in order

    @property
    def per_point(self) -> float:
        return (self.total - self.setup) / self.points


@contextlib.contextmanager
def _instrumented(run: OursRun, device: str, captured: list | None):
    """Patch the names `run_sweep` looks up in its module to time its parts (and capture
    its batches into `captured`); restore them afterwards."""
    real_plane, real_eval = sweeps_mod.InterpolationPlane, sweeps_mod.evaluate
    real_append, real_batches = sweeps_mod.append_rows, sweeps_mod.batches
    start = time.perf_counter()

    class TimedPlane(real_plane):
        def set_point(self, alpha1, alpha2):
            _sync(device)
            tick = time.perf_counter()
            if run.points == 0:
                run.setup = tick - start
            super().set_point(alpha1, alpha2)
            _sync(device)
            run.set_point += time.perf_counter() - tick
            run.points += 1

    def timed_evaluate(*args, **kwargs):
        tick = time.perf_counter()
        result = real_eval(*args, **kwargs)
        run.evaluate += time.perf_counter() - tick
        run.scores.append(result["score"])
        return result

    def timed_append(*args, **kwargs):
        tick = time.perf_counter()
        real_append(*args, **kwargs)
        run.append += time.perf_counter() - tick

    def capturing_batches(*args, **kwargs):
        out = list(real_batches(*args, **kwargs))
        captured.append(out)
        return iter(out)

    sweeps_mod.InterpolationPlane, sweeps_mod.evaluate = TimedPlane, timed_evaluate
    sweeps_mod.append_rows = timed_append
    if captured is not None:
        sweeps_mod.batches = capturing_batches
    try:
        yield start
    finally:
        sweeps_mod.InterpolationPlane, sweeps_mod.evaluate = real_plane, real_eval
        sweeps_mod.append_rows, sweeps_mod.batches = real_append, real_batches


def run_ours(spec: SweepSpec, checkpoints: Path, device: str,
             captured: list | None = None) -> OursRun:
    """Time `run_sweep(spec)` into a fresh results folder."""
    run = OursRun()
    with tempfile.TemporaryDirectory(prefix="xinterp-bench-sweep-") as results:
        with _instrumented(run, device, captured) as start:
            path = run_sweep(spec, checkpoints, results, device=device, progress=False)
            _sync(device)
            run.total = time.perf_counter() - start
        n_rows = len(path.read_text().splitlines()) - 1
    distinct = len({(a1, a2) for _, _, a1, a2 in spec.points()})
    if run.points != distinct or n_rows != 2 * len(spec.points()):
        raise RuntimeError(f"run_sweep evaluated {run.points} points and wrote {n_rows} rows "
                           f"for {len(spec.points())} points; update this benchmark")
    return run


def _pad_tokens(batch: dict, width: int, pad_id: int) -> dict:
    """Pad the token axis of a collated batch to `width` (tokenizer-style max_length padding)."""
    t = batch["input_ids"].shape[1]
    if t >= width:
        return batch
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0,
            "labels": IGNORE_INDEX, "word_index": IGNORE_INDEX}
    out = dict(batch)
    for key, value in fill.items():
        if key in batch and batch[key].dim() == 2 and batch[key].shape[1] == t:
            out[key] = torch.nn.functional.pad(batch[key], (0, width - t), value=value)
    return out


def run_naive(model, paths: dict[str, Path], points, feats: dict[str, list], task: str,
              batch_size: int, width: int, pad_id: int, device: str,
              autocast) -> tuple[float, list[float]]:
    """Return (seconds, scores) of the naive sweep over `points` ((α1, α2) pairs)."""
    scores = []
    _sync(device)
    start = time.perf_counter()
    for a1, a2 in points:
        bi, src, tgt = (read_model_state(paths[role]) for role in ("bi", "src", "tgt"))
        c0 = 1.0 - a1 - a2
        state = {}
        for name, value in bi.items():
            if value.is_floating_point():  # the same operations as InterpolationPlane
                value = value * c0
                if a1 != 0.0:
                    value.add_(src[name], alpha=a1)
                if a2 != 0.0:
                    value.add_(tgt[name], alpha=a2)
            state[name] = value
        model.load_state_dict(state, strict=True)
        for lang_feats in feats.values():
            batches = [_pad_tokens(collate(lang_feats[i:i + batch_size], pad_id), width, pad_id)
                       for i in range(0, len(lang_feats), batch_size)]
            result = evaluate(model, batches, task, device=device, autocast_dtype=autocast,
                              progress=False)
            scores.append(result["score"])
    _sync(device)
    return time.perf_counter() - start, scores


def run_forward(model, batches: list[dict], n_points: int, device: str, autocast) -> float:
    """Return the seconds of `n_points` passes of encoder + head over `batches`."""
    model.eval()
    ctx = (torch.autocast(device_type=torch.device(device).type, dtype=autocast)
           if autocast is not None else contextlib.nullcontext())
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode(), ctx:
        for _ in range(n_points):
            for batch in batches:
                model.head(model.encode(batch), batch)
    _sync(device)
    return time.perf_counter() - start


def ensure_endpoints(spec: SweepSpec, checkpoints: Path, device: str) -> dict[str, Path]:
    """Train the sweep's three end-points unless finished; return their model files."""
    paths = {}
    for role, config in spec.configs().items():
        record = train(config, checkpoints, device=device, progress=False)
        paths[role] = Path(record["run_dir"]) / MODEL_NAME
    return paths


def mirror_endpoints(paths: dict[str, Path], spec: SweepSpec, checkpoints: Path) -> None:
    """Put the end-points at `paths` where `spec` looks for its own (as full-sized files),
    so two sweep settings evaluate the very same weights."""
    for role, config in spec.configs().items():
        run_dir = config.run_dir(checkpoints)
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / MODEL_NAME).exists():
            save_file(read_model_state(paths[role]), str(run_dir / MODEL_NAME))
        if not (run_dir / RECORD_NAME).exists():
            (run_dir / RECORD_NAME).write_bytes((paths[role].parent / RECORD_NAME).read_bytes())


def main(argv: list[str] | None = None) -> int:
    """Print seconds per sweep point of naive / ours / pure forward and their ratios."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--encoder", default="offline-small")
    parser.add_argument("--task", default="ner", choices=TASKS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--checkpoints", default="runs/bench/checkpoints")
    parser.add_argument("--dev-examples", type=int, default=200, help="per language")
    parser.add_argument("--points", type=int, default=8, help="α grid size per plane")
    parser.add_argument("--planes", default="eq1", help="eq1, eq2 or eq1,eq2")
    parser.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=default_device(), choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--score-tol", type=float, default=1e-6,
                        help="largest allowed |naive - ours| score difference")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if min(args.dev_examples, args.points, args.repeats, args.batch_size) < 1:
        parser.error("--dev-examples, --points, --repeats and --batch-size must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    device = args.device
    checkpoints = Path(args.checkpoints)
    alphas = tuple(float(a) for a in np.round(np.linspace(-0.5, 1.5, args.points), 6))
    spec = SweepSpec(args.encoder, args.task, SOURCE, TARGET, args.seed,
                     hparams={**TRAIN_HPARAMS, **FAST},
                     planes=tuple(args.planes.split(",")), alphas_1d=alphas,
                     max_dev_examples=args.dev_examples, eval_batch_size=args.batch_size)
    spec_before = replace(spec, hparams=TRAIN_HPARAMS)
    # Points shared by Eq. 1 and Eq. 2 (α = 1: θ_bi) are one model; run_sweep evaluates
    # them once, and so does the naive side.
    points = list(dict.fromkeys((a1, a2) for _, _, a1, a2 in spec.points()))

    # ---- set-up, not timed
    print(f"set-up: end-points in {checkpoints} (trained now if missing) ...", flush=True)
    tick = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # train()'s evaluation progress bars
        paths = ensure_endpoints(spec, checkpoints, device)
    mirror_endpoints(paths, spec_before, checkpoints)
    print(f"set-up: end-points ready in {time.perf_counter() - tick:.0f} s", flush=True)
    tokenizer = load_tokenizer(args.encoder)
    pad_id = tokenizer.pad_token_id
    eval_config = replace(spec.configs()["bi"], max_dev_examples=args.dev_examples)
    feats = {lang: load_features(eval_config, tokenizer, lang, "dev")[0]
             for lang in (SOURCE, TARGET)}
    width = max(eval_config.max_length, *(len(f["input_ids"]) for fs in feats.values()
                                          for f in fs))
    # Naive: the full model in the precision sweeps had before (fp32 on a CPU).
    model = build_task_model(args.encoder, args.task, args.seed).to(device)
    model.load_state_dict(read_model_state(paths["bi"]))
    autocast_before = autocast_dtype("bf16-cuda", device)
    # Forward floor: ours' own model (trimmed) and precision.
    fast_config = replace(spec.configs()["bi"], max_dev_examples=args.dev_examples)
    fast_model = build_run_model(fast_config, tokenizer)
    load_model_weights(fast_model, paths["bi"])
    fast_model.to(device)
    autocast = autocast_dtype(fast_config.precision, device)
    captured: list[list[dict]] = []
    warm = run_ours(spec, checkpoints, device, captured)  # warm-up; captures ours' batches
    run_ours(spec_before, checkpoints, device)
    ours_batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
                    for lang_batches in captured for b in lang_batches]
    run_forward(fast_model, ours_batches, 1, device, autocast)

    # ---- timed, interleaved
    n = len(points)
    order = ["naive", "before", "ours", "forward"]
    times: dict[str, list[float]] = {side: [] for side in order}
    ours_runs: list[OursRun] = []
    before_runs: list[OursRun] = []
    naive_scores: list[float] = []
    for r in range(args.repeats):
        for side in order[r % 4:] + order[:r % 4]:
            if args.threads:
                torch.set_num_threads(args.threads)
            if side == "naive":
                seconds, naive_scores = run_naive(model, paths, points, feats, args.task,
                                                  args.batch_size, width, pad_id, device,
                                                  autocast_before)
                times[side].append(seconds / n)
            elif side in ("ours", "before"):
                run = run_ours(spec if side == "ours" else spec_before, checkpoints, device)
                (ours_runs if side == "ours" else before_runs).append(run)
                times[side].append(run.per_point)
            else:
                times[side].append(run_forward(fast_model, ours_batches, n, device, autocast)
                                   / n)
            print(f"  repeat {r + 1}/{args.repeats} {side:>7}: {times[side][-1]:.4f} s/point",
                  flush=True)

    # ---- same computation?
    ours_scores, before_scores = ours_runs[0].scores, before_runs[0].scores
    if any(run.scores != ours_scores for run in [warm, *ours_runs]):
        raise RuntimeError("run_sweep gave different scores across repeats")
    diff = max(abs(a - b) for a, b in zip(naive_scores, before_scores, strict=True))
    if diff > args.score_tol:
        raise RuntimeError(f"naive and ours before disagree by {diff:.3g} > {args.score_tol}: "
                           f"naive {naive_scores} vs ours before {before_scores}")
    bf16_diff = max(abs(a - b) for a, b in zip(ours_scores, before_scores, strict=True))

    med = {side: statistics.median(values) for side, values in times.items()}
    part = {key: statistics.median(getattr(run, key) / run.points for run in ours_runs)
            for key in ("set_point", "evaluate", "append")}
    part["rest"] = statistics.median(
        run.per_point - (run.set_point + run.evaluate + run.append) / run.points
        for run in ours_runs)
    total = statistics.median(run.total for run in ours_runs)
    setup = statistics.median(run.setup for run in ours_runs)
    n_feats = {lang: len(fs) for lang, fs in feats.items()}
    tokens = sum(int(b["attention_mask"].sum()) for b in ours_batches)
    naive_positions = sum(min(len(fs) - i, args.batch_size) * width
                          for fs in feats.values() for i in range(0, len(fs), args.batch_size))
    sorted_positions = sum(b["input_ids"].numel() for b in ours_batches)
    device_name = (torch.cuda.get_device_name() if device == "cuda"
                   else platform.processor() or platform.machine())
    naive_ours, ours_fwd = med["naive"] / med["ours"], med["ours"] / med["forward"]
    before_ours = med["before"] / med["ours"]

    print()
    print(f"device      {device} ({device_name}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; autocast: ours "
          f"{'bf16' if autocast else 'off (fp32)'}, naive and before "
          f"{'bf16' if autocast_before else 'off (fp32)'}; ours' vocabulary "
          f"{fast_model.encoder.get_input_embeddings().weight.shape[0]} of {len(tokenizer)} "
          "pieces")
    print(f"sweep       {args.encoder} {args.task} {SOURCE}-{TARGET} seed {args.seed}, planes "
          f"{','.join(spec.planes)}, {n} points (α {alphas[0]}..{alphas[-1]}), "
          f"{args.repeats} repeats (medians)")
    print(f"dev sets    {args.dev_examples} examples per language -> features "
          + ", ".join(f"{lang} {k}" for lang, k in n_feats.items())
          + f"; batch {args.batch_size}; {tokens} real tokens per point; padded positions: "
          f"ours {sorted_positions}, naive {naive_positions} (width {width})")
    print(f"scores      naive == ours before at every point and language (max |diff| "
          f"{diff:.1e}); ours (bf16) vs ours before (fp32): max |diff| {bf16_diff:.4f}; "
          f"{spec.task} {labels.TASK_METRIC[spec.task]} (src/tgt) at the first point "
          f"{ours_scores[0]:.4f}/{ours_scores[1]:.4f}, at the last "
          f"{ours_scores[-2]:.4f}/{ours_scores[-1]:.4f}")
    print()
    print(f"{'':9} {'s/point':>9}  per repeat")
    for side in order:
        print(f"{side:9} {med[side]:9.4f}  {', '.join(f'{t:.4f}' for t in times[side])}")
    print()
    print(f"ours, split per point: set_point {part['set_point']:.4f} s, evaluate (2 dev sets) "
          f"{part['evaluate']:.4f} s, CSV append {part['append']:.4f} s, rest "
          f"{part['rest']:.4f} s")
    print(f"ours end to end: {total:.2f} s = set-up {setup:.2f} s + {n} points "
          f"({(total - setup) / n:.4f} s each)")
    print(f"ours, first call in this process (first-shape kernels, cold caches): "
          f"{warm.total:.2f} s = set-up {warm.setup:.2f} s + {n} points")
    print()
    print(f"before / ours  = {before_ours:5.2f}x   (trimmed vocabulary + bf16 against full fp32)")
    print(f"naive / ours   = {naive_ours:5.2f}x   target >= 2     "
          f"{'met' if naive_ours >= 2 else 'NOT MET'}   (per point)")
    print(f"ours / forward = {ours_fwd:5.2f}x   target <= 1.15  "
          f"{'met' if ours_fwd <= 1.15 else 'NOT MET'}   (per point)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
