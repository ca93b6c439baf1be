"""Re-record what the notebook regression tests compare against.

Usage: python scripts/record_smoke_outputs.py

1. Executes the six committed notebooks with their default parameters (the smoke
   profile, outputs under runs/smoke/), exactly as `pytest --nbval-lax` does.
2. Copies the outputs of the cells marked `# NBVAL_CHECK_OUTPUT` back into the committed
   notebooks; every other cell is stored without outputs, so the notebooks stay small.
3. Writes tests/data/smoke_recorded.json: the smoke profile's fine-tuning scores, sweep
   scores and geometry, and notebook 06's remedy scores, silver agreement and plane
   coordinates, which tests/test_notebooks.py compares with tolerances.

Run it after a change that is meant to alter the smoke profile's numbers, and say why in
the commit message.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nbformat
import pandas as pd

from xinterp_utils.notebooks import execute_notebook, notebook_paths
from xinterp_utils.paths import atomic_write, repo_root
from xinterp_utils.profiles import load_profile
from xinterp_utils.sweep_rows import sweep_files

CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
RECORDED = repo_root() / "tests" / "data" / "smoke_recorded.json"


def copy_checked_outputs(source: Path, executed: Path) -> int:
    """Store `executed`'s outputs of the marked cells in `source`; return how many."""
    nb = nbformat.read(source, as_version=4)
    ran = {c.get("id"): c for c in nbformat.read(executed, as_version=4).cells}
    kept = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.outputs = []
        if cell.source.startswith(CHECK_MARKER):
            executed_cell = ran[cell.get("id")]
            cell.outputs = [o for o in executed_cell.outputs if o.output_type == "stream"]
            # nbval refuses stored outputs of a cell that has no execution count.
            cell.execution_count = executed_cell.execution_count
            kept += 1
    with atomic_write(source, "w") as handle:
        handle.write(nbformat.writes(nb) + "\n")
    return kept


def recorded_values(results: Path) -> dict:
    """Return the smoke numbers the papermill test asserts: {section: [row, ...]}."""
    finetune = pd.read_csv(results / "finetune.csv")
    sweeps = pd.concat(pd.read_csv(p) for p in sweep_files(results))
    geometry = pd.read_csv(results / "geometry.csv")
    keys = ["task", "plane", "alpha", "alpha1", "alpha2", "eval_lang"]
    return {**recorded_remedies(results),
        "finetune": finetune[["task", "model", "eval_lang", "score"]].to_dict("records"),
        "sweeps": sweeps[[*keys, "score"]].sort_values(keys).to_dict("records"),
        "geometry": geometry[["task", "norm_src", "norm_tgt", "ratio", "angle_deg"]]
        .to_dict("records"),
    }


def recorded_remedies(results: Path) -> dict:
    """Return notebook 06's smoke numbers: remedy dev scores, silver agreement, plane
    coordinates ({section: [row, ...]})."""
    remedies = pd.read_csv(results / "remedies.csv")
    silver = pd.read_csv(results / "silver.csv")
    coords = pd.read_csv(results / "plane_coords.csv")
    keys = ["task", "remedy", "k", "draw"]
    return {
        "remedies": remedies[[*keys, "eval_lang", "score"]].sort_values([*keys, "eval_lang"])
        .to_dict("records"),
        "silver": silver[["task", "agreement"]].to_dict("records"),
        "plane": coords[[*keys, "alpha1", "alpha2", "outside_fraction"]].sort_values(keys)
        .to_dict("records"),
    }


def main() -> None:
    """Execute, copy the checked outputs, write the recorded values."""
    with tempfile.TemporaryDirectory() as tmp:
        for source in notebook_paths():
            executed = Path(tmp) / source.name
            seconds = execute_notebook(source, executed, parameters={})
            print(f"{source.name}: {seconds:.0f} s, "
                  f"{copy_checked_outputs(source, executed)} checked cell(s) recorded")
    results = repo_root() / load_profile("smoke").results
    RECORDED.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(RECORDED, "w") as handle:
        handle.write(json.dumps(recorded_values(results), indent=1) + "\n")
    print("wrote", RECORDED)


if __name__ == "__main__":
    main()
