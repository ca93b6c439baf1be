"""benchmarks/gpu_check.py runs here: the bundle for a lent GPU, then every part with tiny
shapes on the CPU (`--cpu-dry-run`), and a clear refusal without a GPU otherwise."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _run(*args: str, env: dict | None = None, timeout: int = 300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, check=False,
                          env=env or os.environ, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("gpu") / "bundle"
    proc = _run("--prepare", str(out), "--data", str(data_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_prepare_writes_a_self_contained_bundle(bundle):
    manifest = json.loads((bundle / "data" / "manifest.json").read_text())
    for family in ("ud", "wikiann", "xnli"):
        assert set(manifest[family]) == {"en", "de"}
        for entry in manifest[family].values():
            assert "test" not in entry and {"train", "dev"} <= set(entry)
            for split in ("train", "dev"):
                value = entry[split]
                assert (bundle / "data" / (value["file"] if isinstance(value, dict)
                                           else value)).is_file()
    assert (bundle / "encoders" / "xlmr-tokenizer" / "tokenizer.json").is_file()
    assert (bundle / "encoders" / "offline-small" / "weights.q4.safetensors").is_file()
    assert (bundle / "site" / "conllu" / "__init__.py").is_file()
    assert (bundle / "site" / "seqeval" / "__init__.py").is_file()
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    assert size < 50 * 2**20  # the device tool carries 64 MiB with the working tree


def test_cpu_dry_run_measures_every_part(bundle, tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ)
    env.pop("XINTERP_DATA", None)  # the bundle's data, as on the GPU machine
    tick = time.perf_counter()
    proc = _run("--cpu-dry-run", "--bundle", str(bundle), "--out", str(out), env=env)
    seconds = time.perf_counter() - tick
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "CPU DRY RUN" in proc.stdout and "MFU assumes a peak of 989" in proc.stdout
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"]["kind"] == "cpu"
    assert report["data"] == str(bundle / "data")
    assert set(report["parts"]) == {"train", "sweep", "smoke"}
    for name, part in report["parts"].items():
        assert part["status"] == "ok", (name, part.get("error"))
        assert 0 < part["seconds"] <= part["budget_s"]
        assert "peak_gpu_memory_bytes" in part and part["peak_gpu_memory_bytes"] is None

    train = report["parts"]["train"]
    shape = train["model"]["config"]
    assert shape == {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
                     "intermediate_size": 256, "vocab_size": 250002,
                     "max_position_embeddings": 514, "pad_token_id": 1}
    assert 0 < train["model"]["non_embedding_parameters"] < train["model"]["parameters"]
    assert set(train["sides"]) == {"ours", "Trainer"}
    for side in train["sides"].values():
        assert side["repeats"] == 1
        assert side["real_tokens_per_s"] > 0 and side["sentences_per_s"] > 0
        assert side["s_per_step"] > 0 and 0 < side["real_token_fraction"] <= 1
        assert 0 < side["mfu_non_embedding"] < side["mfu"] <= 1
    assert train["ours_over_trainer"] > 0

    sweep = report["parts"]["sweep"]
    assert sweep["points"] == sweep["evaluated_points"] == 3
    assert sweep["s_per_point"]["ours"] > 0 and sweep["s_per_point"]["forward"] > 0
    assert sweep["ours_over_forward"] > 0 and sweep["real_tokens_per_point"] > 0

    smoke = report["parts"]["smoke"]  # run tiny: POS only, 16 examples, 1 epoch
    assert list(smoke["notebooks"]) == ["01_finetune", "02_interp_1d", "03_interp_2d",
                                        "04_variance", "05_norm_angle", "06_remedies"]
    assert smoke["runs"] == 3 and smoke["run_devices"] == ["cpu"]
    assert smoke["remedy_runs"] > 0  # notebook 06's few-shot and silver models
    assert smoke["sweep_rows"] > 0 and smoke["figures"] > 0
    print(f"dry run: {seconds:.0f} s")


def test_refuses_without_a_gpu(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = _run("--bundle", str(tmp_path), "--out", str(tmp_path / "x.json"), env=env,
                timeout=120)
    assert proc.returncode == 2
    assert "no CUDA device is visible" in proc.stderr and "--cpu-dry-run" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_budget_stops_a_part():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    with pytest.raises(module.PartTimeout), module.hard_budget(0.2):
        time.sleep(5)
    with module.hard_budget(5):  # cancelled on leaving
        pass
    time.sleep(0.01)
