"""Repository-wide pytest hooks for nbval, which executes the committed notebooks.

nbval reads a kernel's output only after a cell has finished. A long cell (notebook 01
trains twelve models on the smoke profile) that redraws progress bars ten times a second
fills the kernel's output queue, which then drops messages, and nbval gives up after
5 s of waiting for the cell's end. Progress bars are therefore redrawn at most every
TQDM_MININTERVAL seconds in the kernels nbval starts (they inherit this environment),
and nbval waits longer for output on a busy machine.
"""

import os

os.environ.setdefault("TQDM_MININTERVAL", "10")
NBVAL_OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    """Give nbval's notebook cells a longer wait for their output."""
    for item in items:
        if type(item).__name__ == "IPyNbCell":
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
