"""Resumable 1D/2D interpolation sweeps that append one tidy row per evaluation.

A sweep is one (encoder, task, source, target, seed, scope) and its three fine-tuned
end-points. Every point is evaluated on the source and the target dev set. Rows are
appended to the sweep's CSV as each point finishes, so a killed sweep restarts where
it stopped and computes no point twice. Points that are the same model (Eq. 1 at α = 1,
Eq. 2 at α = 1 and Eq. 3 at (0, 0) are all θ_bi) are evaluated once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from .encoders import load_tokenizer
from .evaluate import evaluate
from .features import batches
from .finetune import pair_grid
from .interpolate import IncompatibleEndpoints, InterpolationPlane, plane_coordinates
from .precision import autocast_dtype
from .progress import tqdm
from .train import (
    MODEL_NAME,
    TrainConfig,
    build_run_model,
    default_device,
    identity_hparams,
    load_features,
    pair_configs,
    read_record,
)
from .vocab import trim_state_dict, trimmed_kept

RESULT_COLUMNS = [
    "encoder", "task", "source", "target", "seed", "plane", "alpha", "alpha1", "alpha2",
    "scope", "eval_lang", "eval_role", "metric", "score", "n_examples",
    "ckpt_src", "ckpt_tgt", "ckpt_bi", "sweep_id",
]


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: the pair's three runs (through `hparams`) and the grids to evaluate."""

    encoder: str
    task: str
    source: str
    target: str
    seed: int
    hparams: dict = field(default_factory=dict)  # TrainConfig fields shared by the 3 runs
    planes: tuple[str, ...] = ("eq1", "eq2")
    alphas_1d: tuple[float, ...] = ()
    alphas_2d: tuple[float, ...] = ()  # both axes when `alphas_2d_y` is empty
    alphas_2d_y: tuple[float, ...] = ()
    scope: str = "all"
    max_dev_examples: int | None = None
    eval_batch_size: int = 64

    def configs(self) -> dict[str, TrainConfig]:
        """Return the three end-point runs (keys src, tgt, bi)."""
        return pair_configs(self.encoder, self.task, self.source, self.target, self.seed,
                            **self.hparams)

    def sweep_id(self) -> str:
        """Return a 12-hex-digit hash of what a point's score depends on (every row carries it).

        The grids are not part of it: extending a grid evaluates only the new points.
        """
        what = {k: v for k, v in asdict(self).items()
                if k not in ("planes", "alphas_1d", "alphas_2d", "alphas_2d_y")}
        what["hparams"] = identity_hparams(what["hparams"])
        blob = json.dumps(what, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def points(self) -> list[tuple[str, float | None, float, float]]:
        """Return (plane, alpha, α1, α2) for every point, in evaluation order."""
        out = []
        for plane in self.planes:
            if plane in ("eq1", "eq2"):
                for alpha in self.alphas_1d:
                    out.append((plane, float(alpha), *plane_coordinates(plane, alpha)))
            elif plane == "2d":
                ys = self.alphas_2d_y or self.alphas_2d
                for a2 in ys:
                    for a1 in self.alphas_2d:
                        out.append((plane, None, float(a1), float(a2)))
            else:
                raise ValueError(f"SweepSpec.planes: unknown plane {plane!r}")
        return out

    def result_path(self, results_root: str | Path) -> Path:
        """Return the CSV this sweep appends to."""
        enc = self.encoder.strip("/").replace("/", "--")
        return (Path(results_root) / "sweeps" / enc / self.task /
                f"{self.source}-{self.target}" / f"seed{self.seed}-{self.scope}.csv")


def _row_key(row: dict) -> tuple:
    alpha = "" if row["alpha"] in ("", None) else f"{float(row['alpha']):.6f}"
    return (row["plane"], alpha, f"{float(row['alpha1']):.6f}", f"{float(row['alpha2']):.6f}",
            row["eval_lang"])


def read_done(path: Path, sweep_id: str, *, repair: bool = True) -> set[tuple]:
    """Return the keys of rows of `sweep_id` already in `path`.

    A trailing partial line (a write cut by a kill) is ignored, and with `repair` also
    dropped from the file.
    """
    if not path.is_file():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(cut)
        data = data[:cut]
    reader = csv.DictReader(io.StringIO(data.decode()))
    if reader.fieldnames and reader.fieldnames != RESULT_COLUMNS:
        raise ValueError(f"{path}: header {reader.fieldnames} is not {RESULT_COLUMNS}")
    return {_row_key(r) for r in reader if r["sweep_id"] == sweep_id}


def _append_rows(path: Path, rows: list[dict]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    if new:
        writer.writeheader()
    writer.writerows(rows)
    # One write per point, flushed to disk, so a kill loses at most the point in flight.
    with open(path, "a") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def load_endpoints(spec: SweepSpec, checkpoint_root: str | Path) -> tuple[dict, dict]:
    """Return ({role: state dict}, {role: record}) of the sweep's three finished runs.

    Refuses end-points whose encoder (weights and tokenizer) differ, naming the runs.
    """
    states, records = {}, {}
    for role, config in spec.configs().items():
        run_dir = config.run_dir(checkpoint_root)
        record = read_record(run_dir)
        if record is None or record.get("status") != "finished":
            raise FileNotFoundError(f"{run_dir}: θ_{role} is not trained; run notebook 01 first")
        states[role] = load_file(str(run_dir / MODEL_NAME))
        records[role] = record
    fingerprints = {role: r["encoder_fingerprint"] for role, r in records.items()}
    if len(set(fingerprints.values())) != 1:
        raise IncompatibleEndpoints(f"end-points come from different encoders: {fingerprints}")
    return states, records


def pending_points(spec: SweepSpec, done: set[tuple]) -> list[tuple]:
    """Return the points of `spec` (as in `SweepSpec.points`) that lack a row in `done`
    (`read_done`) on the source or the target dev set."""
    return [p for p in spec.points()
            if any(_row_key({"plane": p[0], "alpha": p[1], "alpha1": p[2], "alpha2": p[3],
                             "eval_lang": lang}) not in done
                   for lang in (spec.source, spec.target))]


def sweep_complete(spec: SweepSpec, results_root: str | Path) -> bool:
    """Return True when every point of `spec` has its rows in the sweep's CSV (read only;
    the file is not touched)."""
    done = read_done(spec.result_path(results_root), spec.sweep_id(), repair=False)
    return not pending_points(spec, done)


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
    states, records = load_endpoints(spec, checkpoint_root)
    configs = spec.configs()
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
    # Dev sets: featurised once (cached on disk), sorted by length, moved to the device once.
    kept = trimmed_kept(model)
    dev = {}
    for role, lang in langs.items():
        feats, _ = load_features(eval_config, tokenizer, lang, "dev", kept=kept)
        dev[role] = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
                     for b in batches(feats, spec.eval_batch_size, tokenizer.pad_token_id)]
    autocast = autocast_dtype(eval_config.precision, device)
    ckpts = {f"ckpt_{role}": records[role]["run_id"] for role in ("src", "tgt", "bi")}
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
        rows = [r for r in rows if _row_key(r) not in done]
        _append_rows(path, rows)
        done.update(_row_key(r) for r in rows)
        bar.set_postfix(src=f"{seen[coords]['source']['score']:.3f}", refresh=False,
                        tgt=f"{seen[coords]['target']['score']:.3f}")
    return path


def sweep_files(results_root: str | Path) -> list[Path]:
    """Return every sweep CSV under `results_root`/sweeps (read them with
    `analysis.load_results`)."""
    return sorted(Path(results_root).glob("sweeps/**/*.csv"))


def plan_sweeps(profile, *, two_d: bool) -> list[SweepSpec]:
    """Return the profile's 1D sweeps (Eq. 1 and 2, every pair) or its 2D sweeps
    (Eq. 3, the profile's `pairs_2d` and `seeds_2d`), one per (encoder, task, pair, seed)."""
    grid = (pair_grid(profile, pairs=profile.pairs_2d_tuples(), seeds=profile.seeds_2d_list())
            if two_d else pair_grid(profile))
    return [SweepSpec(encoder, task, source, target, seed, hparams=profile.train_hparams(task),
                      planes=("2d",) if two_d else ("eq1", "eq2"),
                      alphas_1d=tuple(profile.alphas_1d),
                      alphas_2d=tuple(profile.alphas_2d) if two_d else (),
                      scope=profile.scope, max_dev_examples=profile.max_dev_examples)
            for encoder, task, source, target, seed in grid]


def run_sweeps(specs, checkpoint_root, results_root, *, executor: str = "inline",
               device: str | None = None, progress: bool = True, **executor_options) -> list:
    """Run `specs` as jobs (inline, local GPUs or Slurm); return their CSV paths."""
    from .jobs import run_jobs

    jobs = [{"spec": spec, "checkpoint_root": str(checkpoint_root),
             "results_root": str(results_root), "device": device, "progress": progress}
            for spec in specs]
    return run_jobs(run_sweep, jobs, executor=executor,
                    folder=Path(checkpoint_root) / "submitit", progress=progress,
                    **executor_options)


GEOMETRY_COLUMNS = ["encoder", "task", "source", "target", "seed", "scope", "norm_src",
                    "norm_tgt", "ratio", "cos", "angle_deg", "n_params",
                    "ckpt_src", "ckpt_tgt", "ckpt_bi"]


def geometry_row(spec: SweepSpec, checkpoint_root: str | Path) -> dict:
    """Return ‖δ_src‖, ‖δ_tgt‖, their ratio and angle (degrees) for one sweep's end-points
    (App. B), over the parameters of the spec's scope."""
    from .analysis import delta_geometry
    from .interpolate import interpolated_names

    states, records = load_endpoints(spec, checkpoint_root)
    names = interpolated_names(states["bi"], spec.scope)
    geo = delta_geometry(states["bi"], states["src"], states["tgt"], names=names)
    return {"encoder": spec.encoder, "task": spec.task, "source": spec.source,
            "target": spec.target, "seed": spec.seed, "scope": spec.scope,
            **{k: geo[k] for k in ("norm_src", "norm_tgt", "ratio", "cos", "angle_deg",
                                   "n_params")},
            **{f"ckpt_{role}": records[role]["run_id"] for role in ("src", "tgt", "bi")}}


# What identifies a row of geometry.csv (a later run of the same sweep replaces it).
GEOMETRY_KEY = ["encoder", "task", "source", "target", "seed", "scope"]


def geometry_table(specs, checkpoint_root: str | Path, skip=frozenset()) -> pd.DataFrame:
    """Return one geometry row per distinct (encoder, task, pair, seed, scope) in `specs`,
    leaving out the specs whose (encoder, task, source, target, seed) is in `skip`."""
    seen, rows = set(), []
    for spec in specs:
        key = (spec.encoder, spec.task, spec.source, spec.target, spec.seed, spec.scope)
        if key[:5] in skip:
            continue
        if key not in seen:
            seen.add(key)
            rows.append(geometry_row(spec, checkpoint_root))
    return pd.DataFrame(rows, columns=GEOMETRY_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    """``python -m xinterp_utils.sweeps SPEC.json CHECKPOINTS RESULTS``: run one sweep."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("spec")
    parser.add_argument("checkpoint_root")
    parser.add_argument("results_root")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    data = json.loads(Path(args.spec).read_text())
    for key in ("planes", "alphas_1d", "alphas_2d", "alphas_2d_y"):
        if key in data:
            data[key] = tuple(data[key])
    spec = SweepSpec(**data)
    print(run_sweep(spec, args.checkpoint_root, args.results_root, device=args.device,
                    progress=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
