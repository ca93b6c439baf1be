"""The reproduction's helper scripts on a real tiny trained pair."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from .conftest import REPO
from .conftest import TINY_ENCODER as ENCODER
from .conftest import TINY_HPARAMS as TINY


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _overrides(root, results):
    tiny = [f"{k}={v}" for k, v in TINY.items()]
    return ["tasks=[pos]", "pairs=[en-de]", "seeds=[3]", f"encoders=[{ENCODER}]",
            f"checkpoints={root}", f"results={results}", "alphas_1d=[0.0, 0.5, 1.0]", *tiny]


def test_scope_sweeps_interpolate_only_their_part(trained_pos_pair, tmp_path, capsys):
    root, _configs, records = trained_pos_pair
    main = _script("scope_sweeps").main
    assert main(["smoke", *_overrides(root, tmp_path)]) == 0
    folder = tmp_path / "sweeps" / ENCODER / "pos" / "en-de"
    rows = {scope: pd.read_csv(folder / f"seed3-{scope}.csv") for scope in ("encoder", "head")}
    bi = records["bi"]["dev_scores"]
    for scope, frame in rows.items():
        assert set(frame["plane"]) == {"eq1"} and set(frame["scope"]) == {scope}
        assert sorted(frame["alpha"].unique()) == [0.0, 0.5, 1.0]
        # α = 1 is θ_bi whatever the scope: its own dev scores.
        at_bi = frame[frame["alpha"] == 1.0].set_index("eval_lang")["score"]
        for lang in ("en", "de"):
            assert at_bi[lang] == pytest.approx(bi[lang]["score"], abs=1e-6)
    # At α = 0 the encoder-only point (head of θ_bi) and the head-only point (encoder of
    # θ_bi) are two different models, neither of which is θ_src.
    zero = {s: f[f["alpha"] == 0.0].set_index("eval_lang")["score"] for s, f in rows.items()}
    src = records["src"]["dev_scores"]["en"]["score"]
    assert (zero["encoder"]["en"], zero["head"]["en"]) != (src, src)
    capsys.readouterr()
    assert main(["smoke", *_overrides(root, tmp_path)]) == 0  # all complete: nothing to run
    assert "2 complete, 0 to run" in capsys.readouterr().out


def test_convergence_tabulates_the_plateau(trained_pos_pair, tmp_path, capsys):
    root, configs, records = trained_pos_pair
    main = _script("convergence").main
    overrides = [o for o in _overrides(root, tmp_path) if not o.startswith("alphas")]
    assert main(["smoke", *overrides, "--skip-double", "--seed", "3"]) == 0
    table = pd.read_csv(tmp_path / "convergence.csv", dtype={"run_id": str})
    curves = pd.read_csv(tmp_path / "training_curves.csv", dtype={"run_id": str})
    row = table.iloc[0]
    assert row["run_id"] == configs["src"].run_hash()  # the profile's own θ_src, reused
    history = records["src"]["history"]
    assert row["best"] == pytest.approx(max(p["dev"]["en"] for p in history), abs=1e-6)
    assert row["last"] == pytest.approx(history[-1]["dev"]["en"], abs=1e-6)
    assert bool(row["on_plateau"]) == (row["best"] - row["last"] <= 0.01)
    assert len(curves) == len(history)
