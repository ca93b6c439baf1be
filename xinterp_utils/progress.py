"""The progress bar every module uses: tqdm's notebook widget where Jupyter can draw it,
its plain text bar everywhere else.

`tqdm.auto` picks the widget in any kernel and, without ipywidgets (not a dependency),
warns "IProgress not found" in every notebook run by papermill before falling back to
text. Choosing here avoids the warning and gives the same bars.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:
    from tqdm.std import tqdm

__all__ = ["tqdm"]
