"""Resumable 1D lines from θ_src to a remedy model, one tidy row per evaluation.

    θ(α) = (1 − α)·θ_start + α·θ_end

θ_start is θ_src (α = 0, the zero-shot model), θ_end a few-shot or silver model
(α = 1). The points are written into a model in place by `interpolate.InterpolationPlane`
(with θ_start in θ_bi's slot and θ_end in θ_src's: its (α, 0) is this line), so both
ends are exact. Each point is evaluated on the source and the target dev set; rows are
appended as each point finishes, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .checkpoints import MODEL_NAME, read_record
from .embedding_store import read_model_state
from .encoders import load_tokenizer
from .evaluate import evaluate
from .features import batches
from .interpolate import InterpolationPlane
from .jobs import run_jobs
from .model import build_run_model
from .precision import autocast_dtype
from .progress import tqdm
from .remedy_tables import LINE_COLUMNS
from .sweep_rows import append_csv_rows, read_complete_rows
from .train import default_device, load_features
from .vocab import trim_state_dict, trimmed_kept


@dataclass(frozen=True)
class LineSpec:
    """One line: its cell, the remedy it leads to (`remedy` "fewshot" with `k`, `draw`,
    or "silver"), the two runs' TrainConfigs, the α values and how to evaluate."""

    encoder: str
    task: str
    source: str
    target: str
    seed: int
    remedy: str
    start: object  # TrainConfig of θ_src
    end: object  # TrainConfig of the remedy model
    alphas: tuple[float, ...]
    k: int | None = None
    draw: int | None = None
    scope: str = "all"
    max_dev_examples: int | None = None
    eval_batch_size: int = 64

    def line_id(self) -> str:
        """Return a 12-hex-digit hash of what a point's score depends on (the two runs,
        scope, dev cap, batch size); the α grid is not part of it."""
        what = {"start": self.start.run_hash(), "end": self.end.run_hash(),
                "scope": self.scope, "max_dev_examples": self.max_dev_examples,
                "eval_batch_size": self.eval_batch_size}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]

    def result_path(self, results_root: str | Path) -> Path:
        """Return the CSV this line appends to: one file per line (named by the remedy
        model's run id), so lines run in parallel jobs never share a file."""
        enc = self.encoder.strip("/").replace("/", "--")
        return (Path(results_root) / "remedies" / "lines" / enc / self.task /
                f"{self.source}-{self.target}" /
                f"seed{self.seed}-{self.scope}-{self.end.run_hash()}.csv")


def _key(line_id: str, alpha, eval_lang: str) -> tuple:
    return (line_id, f"{float(alpha):.6f}", eval_lang)


def read_done(path: Path, *, repair: bool = True) -> set[tuple]:
    """Return the (line_id, α, eval_lang) keys already in `path`; a trailing partial line
    (a write cut by a kill) is ignored, and with `repair` cut from the file. Raises
    ValueError naming the file when its header is not `LINE_COLUMNS`."""
    return {_key(r["line_id"], r["alpha"], r["eval_lang"])
            for r in read_complete_rows(path, LINE_COLUMNS, repair=repair)}


def pending_alphas(spec: LineSpec, done: set[tuple]) -> list[float]:
    """Return the α values of `spec` lacking a row on the source or target dev set."""
    line_id = spec.line_id()
    return [a for a in spec.alphas
            if any(_key(line_id, a, lang) not in done for lang in (spec.source, spec.target))]


def line_complete(spec: LineSpec, results_root: str | Path) -> bool:
    """Return True when every point of `spec` has its rows (read only)."""
    return not pending_alphas(spec, read_done(spec.result_path(results_root), repair=False))


def run_line(spec: LineSpec, checkpoint_root: str | Path, results_root: str | Path, *,
             device: str | None = None, progress: bool = True) -> Path:
    """Evaluate every point of `spec` not yet in its CSV; return the CSV path. Raises
    FileNotFoundError naming a run that is not finished."""
    device = device or default_device()
    path = spec.result_path(results_root)
    done = read_done(path)
    todo = pending_alphas(spec, done)
    if not todo:
        return path
    records, states = {}, {}
    for role, config in (("start", spec.start), ("end", spec.end)):
        run_dir = config.run_dir(checkpoint_root)
        record = read_record(run_dir)
        if record is None or record.get("status") != "finished":
            raise FileNotFoundError(f"{run_dir}: not trained; run notebook 06's training first")
        records[role], states[role] = record, read_model_state(run_dir / MODEL_NAME)
    tokenizer = load_tokenizer(spec.encoder)
    eval_config = replace(spec.end, max_dev_examples=spec.max_dev_examples)
    model = build_run_model(eval_config, tokenizer)
    states = {role: trim_state_dict(s, model) for role, s in states.items()}
    line = InterpolationPlane(model, states["start"], states["end"], states["end"],
                              scope=spec.scope, device=device)
    del states
    kept = trimmed_kept(model)
    langs = {"source": spec.source, "target": spec.target}
    dev = {}
    for role, lang in langs.items():
        feats, _ = load_features(eval_config, tokenizer, lang, "dev", kept=kept)
        dev[role] = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
                     for b in batches(feats, spec.eval_batch_size, tokenizer.pad_token_id)]
    autocast = autocast_dtype(eval_config.precision, device)
    line_id = spec.line_id()
    for alpha in tqdm(todo, desc=f"line {spec.task} {spec.remedy} k={spec.k} d={spec.draw}",
                      unit="pt", disable=not progress, dynamic_ncols=True):
        line.set_point(float(alpha), 0.0)
        rows = []
        for role, lang in langs.items():
            result = evaluate(model, dev[role], spec.task, device=device,
                              autocast_dtype=autocast, progress=False)
            rows.append({
                "encoder": spec.encoder, "task": spec.task, "source": spec.source,
                "target": spec.target, "seed": spec.seed, "remedy": spec.remedy,
                "k": "" if spec.k is None else spec.k,
                "draw": "" if spec.draw is None else spec.draw, "alpha": alpha,
                "scope": spec.scope, "eval_lang": lang, "eval_role": role,
                "metric": result["metric"], "score": f"{result['score']:.6f}",
                "n_examples": result["n_examples"], "ckpt_start": records["start"]["run_id"],
                "ckpt_end": records["end"]["run_id"], "line_id": line_id})
        rows = [r for r in rows if _key(line_id, r["alpha"], r["eval_lang"]) not in done]
        append_csv_rows(path, rows, LINE_COLUMNS)
        done.update(_key(line_id, r["alpha"], r["eval_lang"]) for r in rows)
    return path


def run_lines(specs, checkpoint_root, results_root, *, executor: str = "inline",
              device: str | None = None, progress: bool = True, **executor_options) -> list:
    """Run `specs` as jobs (inline, local GPUs or Slurm); return their CSV paths."""
    jobs = [{"spec": spec, "checkpoint_root": str(checkpoint_root),
             "results_root": str(results_root), "device": device, "progress": progress}
            for spec in specs]
    return run_jobs(run_line, jobs, executor=executor,
                    folder=Path(checkpoint_root) / "submitit", progress=progress,
                    **executor_options)
