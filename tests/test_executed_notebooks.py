"""Executed notebooks are written for reading: figures inline as PNG at a moderate
resolution, progress bars reduced to their final state, one folder per profile."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import nbformat
from matplotlib.figure import Figure
from PIL import Image

from xinterp_utils.notebook_setup import INLINE_DPI, show_figures_inline
from xinterp_utils.notebooks import executed_dir, tidy_streams
from xinterp_utils.paths import repo_root


def _notebook(path, outputs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = outputs
    nb.cells = [cell]
    nbformat.write(nb, path)


def test_tidy_streams_keeps_what_a_terminal_shows(tmp_path):
    path = tmp_path / "run.ipynb"
    bar = ("training:   0%|  | 0/10\rtraining:  50%|# | 5/10\r"
           "\x1b[Atraining: 100%|##| 10/10\n")
    _notebook(path, [
        nbformat.v4.new_output("stream", name="stderr", text="loading\n" + bar + "done\n\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "a\rb"},
                               execution_count=1),
    ])
    removed = tidy_streams(path)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert outputs[0]["text"] == "loading\ntraining: 100%|##| 10/10\ndone\n\n"
    assert removed == len("loading\n" + bar + "done\n\n") - len(outputs[0]["text"])
    # Only printed streams are tidied: a value's repr is the value.
    assert outputs[1]["data"]["text/plain"] == "a\rb"


def test_a_bar_erased_when_it_closed_leaves_no_line(tmp_path):
    # tqdm(leave=False) ends by writing blanks over its line and returning to its start.
    path = tmp_path / "run.ipynb"
    erased = "table 1:   0%|  | 0/27\rtable 1: 100%|##| 27/27\r" + " " * 40 + "\r"
    _notebook(path, [nbformat.v4.new_output("stream", name="stderr",
                                            text=erased + "\nwrote table1.md\n")])
    tidy_streams(path)
    text = nbformat.read(path, as_version=4).cells[0].outputs[0]["text"]
    assert text == "wrote table1.md\n"


def test_a_bar_drawn_over_several_outputs_is_tidied_as_one_text(tmp_path):
    # The kernel sends each redraw as its own stream message.
    path = tmp_path / "run.ipynb"
    parts = ["\rsweep:   0%|  | 0/4", "\rsweep:  50%|# | 2/4", "\rsweep: 100%|##| 4/4",
             "\n"]
    _notebook(path, [
        *[nbformat.v4.new_output("stream", name="stderr", text=t) for t in parts],
        nbformat.v4.new_output("stream", name="stdout", text="done\n"),
        nbformat.v4.new_output("stream", name="stderr", text="\r" + " " * 20 + "\r"),
    ])
    tidy_streams(path)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [(o["name"], o["text"]) for o in outputs] == [
        ("stderr", "sweep: 100%|##| 4/4\n"), ("stdout", "done\n")]


def test_tidy_streams_leaves_a_tidy_notebook_untouched(tmp_path):
    path = tmp_path / "run.ipynb"
    _notebook(path, [nbformat.v4.new_output("stream", name="stdout", text="a\n\nb\n")])
    before = path.read_bytes()
    assert tidy_streams(path) == 0
    assert path.read_bytes() == before


def test_executed_copies_go_to_a_folder_per_profile():
    assert executed_dir("repro") == repo_root() / "notebooks" / "executed" / "repro"


def _png_width(shell, fig) -> int:
    data, _ = shell.display_formatter.format(fig)
    return Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).size[0]


def test_figures_display_inline_as_png_at_the_inline_resolution():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    fig = Figure(figsize=(4, 3))
    fig.subplots().plot([0, 1], [0, 1])
    assert show_figures_inline()
    width = _png_width(shell, fig)
    # bbox "tight" trims the margins: a little under 4 inches at INLINE_DPI.
    assert 0.8 * 4 * INLINE_DPI < width <= 4 * INLINE_DPI
    assert show_figures_inline(dpi=2 * INLINE_DPI)
    assert abs(_png_width(shell, fig) - 2 * width) <= 4
    show_figures_inline()


def test_outside_ipython_nothing_is_registered():
    code = ("from xinterp_utils.notebook_setup import show_figures_inline;"
            "print(show_figures_inline())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=repo_root())
    assert out.stdout.strip() == "False"
