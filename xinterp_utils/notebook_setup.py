"""The set-up every notebook starts with: its profile, with the papermill parameters
applied, and the folders it reads and writes."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .paths import repo_root
from .profiles import Profile, load_profile


class NotebookSetup(NamedTuple):
    """A notebook's profile and its folders (absolute, under the repository root)."""

    cfg: Profile
    checkpoint_root: Path
    results_root: Path
    figures_dir: Path


def setup_notebook(profile: str, overrides=None, **fields) -> NotebookSetup:
    """Return the named profile with `overrides` ("key=value" strings, as `run_all.sh`
    takes them, or a dict) and `fields` applied (None keeps the profile's value: the notebooks'
    parameters default to None), and its checkpoint, results and figures folders; print
    one line naming the grid that runs."""
    cfg = load_profile(profile, overrides, **fields)
    root = repo_root()
    print(f"profile {cfg.name}: encoders {cfg.encoders}, tasks {cfg.tasks}, pairs {cfg.pairs}, "
          f"seeds {cfg.seeds}, scope {cfg.scope}, executor {cfg.executor}")
    return NotebookSetup(cfg, root / cfg.checkpoints, root / cfg.results, root / cfg.figures)
