"""Resumable 1D/2D interpolation sweeps that append one tidy row per evaluation.

A sweep (`sweep_spec.SweepSpec`) is one (encoder, task, source, target, seed, scope) and
its three fine-tuned end-points. Every point is evaluated on the source and the target
dev set. Rows are appended to the sweep's CSV as each point finishes (`sweep_rows`), so a
killed sweep restarts where it stopped and computes no point twice. Points that are the
same model (Eq. 1 at α = 1, Eq. 2 at α = 1 and Eq. 3 at (0, 0) are all θ_bi) are
evaluated once.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .checkpoints import load_endpoints
from .config import MODEL_ROLES
from .encoders import load_tokenizer
from .evaluate import evaluate
from .features import batches
from .interpolate import InterpolationPlane
from .jobs import run_jobs
from .model import build_run_model
from .precision import autocast_dtype
from .progress import tqdm
from .sweep_rows import append_rows, pending_points, read_done, row_key
from .sweep_spec import SweepSpec
from .train import default_device, load_features
from .vocab import trim_state_dict, trimmed_kept


def _dev_batches(spec: SweepSpec, eval_config, tokenizer, kept, device) -> dict[str, list]:
    """Return {eval role: the dev set's batches on `device`}: featurised once (cached on
    disk), sorted by length, moved to the device once for every point of the sweep."""
    dev = {}
    for role, lang in (("source", spec.source), ("target", spec.target)):
        feats, _ = load_features(eval_config, tokenizer, lang, "dev", kept=kept)
        dev[role] = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
                     for b in batches(feats, spec.eval_batch_size, tokenizer.pad_token_id)]
    return dev


def run_sweep(
    spec: SweepSpec, checkpoint_root: str | Path, results_root: str | Path, *,
    device: str | None = None, progress: bool = True,
) -> Path:
    """Evaluate every point of `spec` not yet in its CSV; return the CSV path."""
    device = device or default_device()
    path = spec.result_path(results_root)
    sweep_id = spec.sweep_id()
    done = read_done(path, sweep_id)
    langs = {"source": spec.source, "target": spec.target}
    todo = pending_points(spec, done)
    if not todo:
        return path
    configs = spec.configs()
    states, records = load_endpoints(configs, checkpoint_root)
    tokenizer = load_tokenizer(spec.encoder)
    eval_config = configs["bi"]
    if spec.max_dev_examples is not None:
        eval_config = replace(eval_config, max_dev_examples=spec.max_dev_examples)
    # The runs' own model: with a trimmed vocabulary the plane moves only the kept rows
    # (the others are the pretrained ones in all three end-points).
    model = build_run_model(eval_config, tokenizer)
    states = {role: trim_state_dict(state, model) for role, state in states.items()}
    plane = InterpolationPlane(model, states["bi"], states["src"], states["tgt"],
                               scope=spec.scope, device=device)
    del states
    dev = _dev_batches(spec, eval_config, tokenizer, trimmed_kept(model), device)
    autocast = autocast_dtype(eval_config.precision, device)
    ckpts = {f"ckpt_{role}": records[role]["run_id"] for role in MODEL_ROLES}
    seen: dict[tuple[float, float], dict[str, dict]] = {}
    bar = tqdm(todo, desc=f"sweep {spec.task} {spec.source}-{spec.target} s{spec.seed}",
               unit="pt", disable=not progress, dynamic_ncols=True)
    for plane_name, alpha, a1, a2 in bar:
        coords = (round(a1, 9), round(a2, 9))
        if coords not in seen:
            plane.set_point(a1, a2)
            seen[coords] = {role: evaluate(model, dev[role], spec.task, device=device,
                                           autocast_dtype=autocast, progress=False)
                            for role in langs}
        rows = []
        for role, lang in langs.items():
            result = seen[coords][role]
            rows.append({
                "encoder": spec.encoder, "task": spec.task, "source": spec.source,
                "target": spec.target, "seed": spec.seed, "plane": plane_name,
                "alpha": "" if alpha is None else alpha, "alpha1": a1, "alpha2": a2,
                "scope": spec.scope, "eval_lang": lang, "eval_role": role,
                "metric": result["metric"], "score": f"{result['score']:.6f}",
                "n_examples": result["n_examples"], **ckpts, "sweep_id": sweep_id,
            })
        rows = [r for r in rows if row_key(r) not in done]
        append_rows(path, rows)
        done.update(row_key(r) for r in rows)
        bar.set_postfix(src=f"{seen[coords]['source']['score']:.3f}", refresh=False,
                        tgt=f"{seen[coords]['target']['score']:.3f}")
    return path


def run_sweeps(specs, checkpoint_root, results_root, *, executor: str = "inline",
               device: str | None = None, progress: bool = True, **executor_options) -> list:
    """Run `specs` as jobs (inline, local GPUs or Slurm); return their CSV paths."""
    jobs = [{"spec": spec, "checkpoint_root": str(checkpoint_root),
             "results_root": str(results_root), "device": device, "progress": progress}
            for spec in specs]
    return run_jobs(run_sweep, jobs, executor=executor,
                    folder=Path(checkpoint_root) / "submitit", progress=progress,
                    **executor_options)
