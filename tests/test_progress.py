"""What run_all.sh shows while a notebook runs: cells, progress bars, heartbeats, times."""

from __future__ import annotations

import json

from xinterp_utils.notebooks import _duration, execute_notebook


def _notebook(path):
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# tiny"]},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None,
         "outputs": [], "source": ["steps = 40"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import time\n", "from tqdm.auto import tqdm\n",
                    "for _ in tqdm(range(steps), desc='training'):\n",
                    "    time.sleep(0.05)\n"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["# a long silent step\n", "time.sleep(3.5)\n", "print('done')"]},
    ]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3",
                                                      "display_name": "Python 3",
                                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i}"
    path.write_text(json.dumps(nb))
    return path


def test_progress_lines_of_a_running_notebook(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "10")  # what a log file gets (no terminal)
    source = _notebook(tmp_path / "07_tiny.ipynb")
    seconds = execute_notebook(source, tmp_path / "out.ipynb", {"steps": 40},
                               heartbeat_s=1.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("  07 | ") for line in lines), lines
    text = [line[len("  07 | "):] for line in lines]
    # Each code cell is announced with its first line (papermill's injected cell counts).
    assert text[:3] == ["cell 2/5: steps = 40", "cell 3/5: (parameters injected by papermill)",
                        "cell 4/5: import time"]
    assert "cell 5/5: time.sleep(3.5)" in text
    # The progress bar arrives as its latest states, never as raw redraws, and rarely.
    bars = [t for t in text if t.startswith("training:")]
    assert any("40/40" in t for t in bars), text
    assert len(bars) <= 3, bars
    assert not any("\r" in line for line in lines)
    # The silent cell gets a heartbeat, then its own output.
    assert any(t.startswith("cell 5/5 still running (0 min 0") for t in text), text
    assert text[-1] == "done"
    assert 3.5 < seconds < 120


def test_durations_read_well():
    assert _duration(42.4) == "42 s"
    assert _duration(185) == "3 min 05 s"
    assert _duration(3600) == "60 min 00 s"


def test_a_failing_notebook_leaves_the_earlier_executed_copy_whole(tmp_path):
    import pytest

    source = _notebook(tmp_path / "07_tiny.ipynb")
    good = tmp_path / "executed" / "07_tiny.ipynb"
    execute_notebook(source, good, {"steps": 2}, heartbeat_s=60)
    before = good.read_bytes()
    assert "".join(json.loads(before)["cells"][-1]["outputs"][0]["text"]) == "done\n"
    with pytest.raises(RuntimeError) as err:
        execute_notebook(source, good, {"steps": "not a number"}, heartbeat_s=60)
    failed = tmp_path / "executed" / "07_tiny.failed.ipynb"
    assert str(failed) in str(err.value) and "07_tiny.ipynb: cell" in str(err.value)
    assert good.read_bytes() == before  # the good copy was never touched
    assert "TypeError" in failed.read_text()
    assert not (tmp_path / "executed" / "07_tiny.running.ipynb").exists()
    # The next successful run replaces the copy and clears the failed one.
    execute_notebook(source, good, {"steps": 3}, heartbeat_s=60)
    assert "steps = 3" in good.read_text() and "steps = 2" not in good.read_text()
    assert not failed.exists()
    assert sorted(p.name for p in good.parent.iterdir()) == ["07_tiny.ipynb"]
