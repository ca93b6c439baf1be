"""benchmarks/precision_agreement.py: θ_src trained in bf16 and in fp32, compared."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest

from xinterp_utils.precision import cpu_has_native_bf16

from .conftest import REPO
from .conftest import TINY_ENCODER as ENCODER
from .conftest import TINY_HPARAMS as TINY


def _module():
    path = REPO / "benchmarks" / "precision_agreement.py"
    spec = importlib.util.spec_from_file_location("precision_agreement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agreement_compares_the_mean_paired_difference_with_seed_noise():
    agreement = _module().agreement
    close = agreement(pd.DataFrame({"bf16": [0.70, 0.74, 0.72], "fp32": [0.71, 0.73, 0.72]}))
    assert close["mean_diff"] == pytest.approx(0.0, abs=1e-12)
    assert close["max_abs_diff"] == pytest.approx(0.01)
    assert close["sd_bf16"] == pytest.approx(0.02)
    assert close["sd_fp32"] == pytest.approx(0.01)
    assert close["within_noise"]
    # bf16 ahead by 0.05 on every seed, while seeds spread by 0.01-0.02: a real effect.
    shifted = agreement(pd.DataFrame({"bf16": [0.76, 0.79, 0.77], "fp32": [0.71, 0.74, 0.72]}))
    assert shifted["mean_diff"] == pytest.approx(0.05)
    assert not shifted["within_noise"]
    with pytest.raises(ValueError, match="two seeds"):
        agreement(pd.DataFrame({"bf16": [0.7], "fp32": [0.7]}))


def test_trains_both_precisions_per_seed_and_records_them(data_dir, tmp_path, capsys):
    overrides = [f"{k}={v}" for k, v in TINY.items()]
    args = ["smoke", "tasks=[pos]", "seeds=[3,4]", f"encoders=[{ENCODER}]",
            f"checkpoints={tmp_path / 'ckpt'}", f"results={tmp_path / 'results'}",
            "precision=bf16-native", *overrides, "--task", "pos"]
    assert _module().main(args) == 0
    table = pd.read_csv(tmp_path / "results" / "precision_agreement.csv",
                        dtype={"run_id": str})
    assert sorted(zip(table["seed"], table["precision"])) == [
        (3, "bf16-native"), (3, "fp32"), (4, "bf16-native"), (4, "fp32")]
    native = "torch.bfloat16" if cpu_has_native_bf16() else "fp32"
    assert set(table.loc[table["precision"] == "bf16-native", "autocast"]) == {native}
    assert set(table.loc[table["precision"] == "fp32", "autocast"]) == {"fp32"}
    assert table["run_id"].nunique() == 4  # precision is part of each run's identity
    for row in table.itertuples():
        record = json.loads(next((tmp_path / "ckpt").glob(
            f"*/pos/en/seed{row.seed}-{row.run_id}/record.json")).read_text())
        assert row.best_dev == pytest.approx(record["best_dev_mean"], abs=1e-9)
    assert "within seed noise:" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="two seeds"):
        _module().main([*args[:2], "seeds=[3]", *args[3:]])
