"""The set-up every notebook starts with: its profile, with the papermill parameters
applied, the folders it reads and writes, and figures shown inline as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .paths import repo_root
from .profiles import Profile, load_profile

# Resolution of the figures a notebook shows (the files in figures/ are written at 150
# dpi): executed notebooks are committed for reading on GitHub and must stay small.
INLINE_DPI = 80


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
    show_figures_inline()
    root = repo_root()
    print(f"profile {cfg.name}: encoders {cfg.encoders}, tasks {cfg.tasks}, pairs {cfg.pairs}, "
          f"seeds {cfg.seeds}, scope {cfg.scope}, executor {cfg.executor}")
    return NotebookSetup(cfg, root / cfg.checkpoints, root / cfg.results, root / cfg.figures)


def show_figures_inline(dpi: int = INLINE_DPI) -> bool:
    """Make the running IPython kernel display a returned or `display`ed matplotlib
    Figure as a PNG at `dpi` dots per inch; return False (and do nothing) outside IPython.

    The figures are plain `Figure` objects and the notebooks never import pyplot, whose
    inline backend is what otherwise teaches IPython to render a Figure: without this a
    notebook shows only "<Figure size … with 1 Axes>".
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("png", dpi=dpi)
    return True
