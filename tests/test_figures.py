"""`xinterp figures`: every figure and Table 1 redrawn from the committed results/ alone."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from tests.conftest import REPO
from xinterp_utils import cli, figures
from xinterp_utils.profiles import load_profile

FIGURES = REPO / "figures"
RESULTS = REPO / "results"
NUMBERS = (2, 3, 4, 5, 6, 7, 8, 9, 10)


@pytest.fixture(scope="module")
def redrawn(tmp_path_factory):
    """`xinterp figures repro` into a fresh folder, from the committed results/; its output."""
    if not (RESULTS / "sweeps").is_dir():
        pytest.skip("no committed results/sweeps in this checkout")
    out = tmp_path_factory.mktemp("figures")
    assert cli.main(["figures", "repro", "--out", str(out), "--no-table1"]) == 0
    return out


@pytest.mark.parametrize("number", NUMBERS)
def test_figures_from_results_are_byte_identical_to_the_committed_ones(redrawn, number):
    for fmt in ("pdf", "png"):
        name = f"fig{number}.{fmt}"
        committed = FIGURES / name
        if not (redrawn / name).is_file():
            # The results hold no rows for it (e.g. a task's sweeps being recomputed): a
            # committed copy would be a figure of results that are no longer there.
            assert not committed.is_file(), f"{committed} is stale: results/ cannot draw it"
            continue
        assert committed.is_file(), f"{committed} is not committed"
        assert (redrawn / name).read_bytes() == committed.read_bytes(), (
            f"{name} drawn from results/ differs from figures/{name}: redraw with "
            "`xinterp figures repro` and commit both")


def test_figures_imports_no_torch(redrawn):
    # Drawing needs no model: the command must not pull in torch or transformers.
    import subprocess

    code = ("import sys; from xinterp_utils import figures, cli; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_table1_is_byte_identical(tmp_path, data_dir):
    paths = figures.redraw(load_profile("repro", [f"data={data_dir}"]), RESULTS, tmp_path,
                           log=lambda line: None)
    for name in ("table1.md", "table1.csv"):
        assert tmp_path / name in paths
        assert (tmp_path / name).read_bytes() == (FIGURES / name).read_bytes()


def test_missing_results_folder_is_refused_with_its_path(tmp_path, capsys):
    missing = tmp_path / "no-such-results"
    status = cli.main(["figures", "repro", "--results", str(missing), "--out",
                       str(tmp_path / "out"), "--no-table1"])
    err = capsys.readouterr().err
    assert status == 2
    assert "xinterp figures: error: results folder" in err and str(missing) in err
    assert "does not exist" in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_results_folder_without_results_is_refused(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(FileNotFoundError, match="nothing to draw figures from"):
        figures.redraw(load_profile("repro"), tmp_path / "results", tmp_path / "out",
                       table1=False)


def test_figures_the_results_do_not_support_are_skipped(tmp_path):
    # Only the Eq. 1/2 sweeps of one task: Figs. 3, 4, 10 and the other tasks' are skipped.
    results = tmp_path / "results"
    src = RESULTS / "sweeps" / "offline" / "ner"
    if not src.is_dir():
        pytest.skip("no committed NER sweeps")
    for path in src.rglob("*.csv"):  # the 2D rows share a file with the seed's 1D rows
        rows = pd.read_csv(path, dtype=str, keep_default_na=False)
        dest = results / "sweeps" / path.relative_to(RESULTS / "sweeps")
        dest.parent.mkdir(parents=True, exist_ok=True)
        rows[rows["plane"] != "2d"].to_csv(dest, index=False)
    lines = []
    paths = figures.redraw(load_profile("repro"), results, tmp_path / "out", table1=False,
                           log=lines.append)
    assert sorted(p.name for p in paths) == sorted(
        f"fig{n}.{fmt}" for n in (2, 5, 7) for fmt in ("pdf", "png"))
    text = "\n".join(lines)
    assert "fig3, fig10: skipped" in text and "fig4: skipped" in text
