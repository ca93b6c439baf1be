"""The paper's footnote 2: Eq. 1 with only the encoder, or only the head, interpolated.

For every (encoder, task, pair, seed) of the profile (narrow it with overrides such as
`pairs=[en-de]`), runs the Eq. 1 sweep with `scope=encoder` and with `scope=head` on the
profile's 1D grid: parameters outside the scope stay at θ_bi. Rows go to
`<results>/sweeps/<encoder>/<task>/<pair>/seed<N>-<scope>.csv` beside the `scope=all`
sweeps; finished points are skipped, so a rerun (or a fresh clone with the committed
results) does nothing more. The end-points must be trained (notebook 01). Usage:

    .venv/bin/python scripts/scope_sweeps.py repro pairs=[en-de] [--scopes encoder,head]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from xinterp_utils.paths import repo_root
from xinterp_utils.profiles import load_profile
from xinterp_utils.sweep_rows import sweep_complete
from xinterp_utils.sweep_spec import plan_sweeps
from xinterp_utils.sweeps import run_sweeps


def main(argv: list[str] | None = None) -> int:
    """Run the scope sweeps; print what was run and what was already complete."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile")
    parser.add_argument("overrides", nargs="*", help="profile overrides, key=value")
    parser.add_argument("--scopes", default="encoder,head")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    profile = load_profile(args.profile, args.overrides)
    root = repo_root()
    results, checkpoints = root / profile.results, root / profile.checkpoints
    specs = []
    for scope in args.scopes.split(","):
        for spec in plan_sweeps(dataclasses.replace(profile, scope=scope), two_d=False):
            specs.append(dataclasses.replace(spec, planes=("eq1",)))
    todo = [s for s in specs if not sweep_complete(s, results)]
    print(f"{len(specs)} scope sweeps, {len(specs) - len(todo)} complete, {len(todo)} to run",
          flush=True)
    for path in run_sweeps(todo, checkpoints, results, executor=profile.executor,
                           device=args.device, **profile.executor_options()):
        print("wrote", path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
