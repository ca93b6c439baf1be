"""Command line: `xinterp prepare|plan|build-encoder|table1|figures|train|sweep|
compact-checkpoints|profile|default-profile` (also `python -m xinterp_utils`).

Each sub-command imports what it needs when it runs: `xinterp profile` or `xinterp
figures` must answer without loading torch and transformers (seconds), which `train` and
`sweep` need.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import TrainConfig
from .encoders import resolve_encoder
from .paths import repo_root
from .preflight import problems
from .profiles import default_profile, load_profile
from .sweep_spec import SweepSpec
from .table1 import write_table1


def _prepare(args) -> int:
    start = time.perf_counter()
    profile = load_profile(args.profile, args.overrides)
    found = problems(profile, log=lambda line: print(line, flush=True))
    if found:
        print(f"xinterp prepare: profile {profile.name!r} cannot run here "
              f"({len(found)} problem(s), found in {time.perf_counter() - start:.1f} s):",
              file=sys.stderr)
        for problem in found:
            print(f"  - {problem}", file=sys.stderr)
        print("Ways out: encoders=[offline] (or offline-small, or a local model folder) "
              "for the encoders; XINTERP_DATA=<folder with manifest.json> or "
              "data=<folder> for the data; or make the Hugging Face hub reachable "
              "(unset HF_HUB_OFFLINE, check HF_ENDPOINT and the network).", file=sys.stderr)
        return 3
    for name in profile.encoders:
        print(f"encoder {name}: {resolve_encoder(name)}", flush=True)
    out = Path(args.figures or repo_root() / profile.figures)
    for path in write_table1(out, source=profile.data):
        print(f"wrote {path}", flush=True)
    return 0


def _build_encoder(args) -> int:
    for name in args.names:
        print(f"{name}: {resolve_encoder(name)}", flush=True)
    return 0


def _table1(args) -> int:
    for path in write_table1(Path(args.out), source=args.data):
        print(f"wrote {path}")
    return 0


def _figures(args) -> int:
    from .figures import redraw  # matplotlib

    overrides = list(args.overrides)
    if "=" in args.profile:  # `xinterp figures seeds=[1]`: an override, not a profile name
        overrides.insert(0, args.profile)
        args.profile = "repro"
    profile = load_profile(args.profile, overrides)
    results = Path(args.results or repo_root() / profile.results)
    out = Path(args.out or repo_root() / profile.figures)
    start = time.perf_counter()
    paths = redraw(profile, results, out, table1=not args.no_table1,
                   log=lambda line: print(line, flush=True))
    print(f"wrote {len(paths)} files to {out} in {time.perf_counter() - start:.1f} s "
          f"(from {results})", flush=True)
    return 0


def _plan(args) -> int:
    from .plan import Assumptions, plan_profile, report  # tokenizers, torch

    profile = load_profile(args.profile, args.overrides)
    assumptions = Assumptions(peak_tflops=args.peak_tflops, mfu=args.mfu)
    for line in report(plan_profile(profile, assumptions)):
        print(line, flush=True)
    return 0


def _train(args) -> int:
    from .train import train  # torch, transformers

    config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    record = train(config, args.checkpoint_root, device=args.device,
                   save_every_steps=args.save_every_steps,
                   stop_after_steps=args.stop_after_steps, progress=not args.no_progress)
    print(json.dumps({"status": record["status"],
                      "run_dir": str(config.run_dir(args.checkpoint_root))}))
    return 0


def _sweep(args) -> int:
    from .sweeps import run_sweep  # torch, transformers

    spec = SweepSpec.from_dict(json.loads(Path(args.spec).read_text()))
    print(run_sweep(spec, args.checkpoint_root, args.results_root, device=args.device,
                    progress=not args.no_progress))
    return 0


def _profile(args) -> int:
    print(json.dumps(load_profile(args.profile, args.overrides).to_dict(), indent=1))
    return 0


def _default_profile(args) -> int:
    name, reason = default_profile()
    print(f"no profile given: {reason}, so the {name} profile", file=sys.stderr)
    print(name)
    return 0


def _compact(args) -> int:
    from .checkpoints import compact_checkpoints

    done = compact_checkpoints(args.checkpoint_root, log=lambda line: print(line, flush=True))
    before, after = sum(d[1] for d in done), sum(d[2] for d in done)
    print(f"{len(done)} model file(s) rewritten: {before / 2**30:.2f} GB -> "
          f"{after / 2**30:.2f} GB")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the sub-command; return the exit status."""
    parser = argparse.ArgumentParser(prog="xinterp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="build the profile's encoders and write Table 1")
    p.add_argument("profile")
    p.add_argument("overrides", nargs="*", help="key=value (YAML values)")
    p.add_argument("--figures", default=None, help="output folder (default: the profile's)")
    p.set_defaults(run=_prepare)

    p = sub.add_parser("build-encoder", help="resolve/build encoders (offline, offline-small)")
    p.add_argument("names", nargs="+")
    p.set_defaults(run=_build_encoder)

    p = sub.add_parser("table1", help="write Table 1 (dataset statistics)")
    p.add_argument("--out", default=str(repo_root() / "figures"))
    p.add_argument("--data", default=None, help="offline data folder or 'hub'")
    p.set_defaults(run=_table1)

    p = sub.add_parser("figures", help="redraw every figure and Table 1 from results/ "
                                       "(no model, no GPU)")
    p.add_argument("profile", nargs="?", default="repro", help="profile (default: repro)")
    p.add_argument("overrides", nargs="*", help="key=value (YAML values)")
    p.add_argument("--results", default=None, help="results folder (default: the profile's)")
    p.add_argument("--out", default=None, help="output folder (default: the profile's figures)")
    p.add_argument("--no-table1", action="store_true",
                   help="leave Table 1 out (it reads the data folder, not results/)")
    p.set_defaults(run=_figures)

    p = sub.add_parser("plan", help="print the size of a profile's work (runs, sweeps, "
                                    "points, examples, tokens) and a GPU-hour estimate")
    p.add_argument("profile")
    p.add_argument("overrides", nargs="*", help="key=value (YAML values)")
    p.add_argument("--peak-tflops", type=float, default=790.0,
                   help="dense bf16 TFLOP/s of one GPU (default 790: H100/H200-class)")
    p.add_argument("--mfu", type=float, default=0.35,
                   help="model FLOPs utilisation assumed (default 0.35)")
    p.set_defaults(run=_plan)

    p = sub.add_parser("train", help="train (or resume) one run from a TrainConfig JSON file "
                                     "(what a job of notebook 01 does)")
    p.add_argument("config", help="JSON file with a TrainConfig (TrainConfig.to_dict)")
    p.add_argument("checkpoint_root")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--save-every-steps", type=int, default=500)
    p.add_argument("--stop-after-steps", type=int, default=None,
                   help="save the state and stop after this many steps (resumable)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=_train)

    p = sub.add_parser("sweep", help="run (or resume) one sweep from a SweepSpec JSON file "
                                     "(what a job of notebooks 02 and 03 does)")
    p.add_argument("spec", help="JSON file with a SweepSpec (SweepSpec.to_dict)")
    p.add_argument("checkpoint_root")
    p.add_argument("results_root")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=_sweep)

    p = sub.add_parser("compact-checkpoints",
                       help="rewrite the full-sized model files of trimmed runs (made before "
                            "compact files existed) to store only the embedding rows "
                            "training moved; each is checked bit for bit first")
    p.add_argument("checkpoint_root")
    p.set_defaults(run=_compact)

    p = sub.add_parser("profile", help="print a profile with overrides applied")
    p.add_argument("profile")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(run=_profile)

    p = sub.add_parser("default-profile",
                       help="print the profile run_all.sh runs when none is given")
    p.set_defaults(run=_default_profile)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"xinterp {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
