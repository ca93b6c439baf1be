"""Fine-tuning: one initialisation for three models, resume after SIGKILL, skip when done."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xinterp_utils.checkpoints import MODEL_NAME, STATE_NAME, parameter_fingerprint
from xinterp_utils.config import TrainConfig
from xinterp_utils.embedding_store import read_model_state
from xinterp_utils.finetune import finetune_table
from xinterp_utils.jobs import run_jobs
from xinterp_utils.model import build_task_model
from xinterp_utils.profiles import load_profile, plan_runs
from xinterp_utils.schedule import epoch_order, linear_warmup_decay
from xinterp_utils.train import ensure_dev_scores, train

from .conftest import TINY_ENCODER as ENCODER
from .conftest import TINY_HPARAMS as TINY


@pytest.fixture(scope="module")
def trained_pair(trained_pos_pair):
    """The three POS models of en→de (shared with the interpolation tests)."""
    return trained_pos_pair


def test_schedule_warms_up_then_decays_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = linear_warmup_decay(opt, total_steps=20, warmup_ratio=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(18 / 18) and lrs[11] == pytest.approx(9 / 18)
    assert lrs[-1] == pytest.approx(1 / 18)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))


def test_epoch_order_is_a_seeded_permutation():
    assert sorted(epoch_order(50, 1, 0)) == list(range(50))
    assert epoch_order(50, 1, 0) == epoch_order(50, 1, 0)
    assert epoch_order(50, 1, 0) != epoch_order(50, 1, 1)
    assert epoch_order(50, 1, 0) != epoch_order(50, 2, 0)


def test_three_models_share_one_initialisation(trained_pair):
    _, _configs, records = trained_pair
    inits = {role: r["init_fingerprint"] for role, r in records.items()}
    assert len(set(inits.values())) == 1, inits
    # ... and that fingerprint is the freshly built model of that seed, not of another.
    assert inits["src"] == parameter_fingerprint(build_task_model(ENCODER, "pos", 3))
    assert inits["src"] != parameter_fingerprint(build_task_model(ENCODER, "pos", 4))
    # Training moved them apart.
    finals = {r["model_fingerprint"] for r in records.values()}
    assert len(finals) == 3
    assert records["bi"]["config"]["train_langs"] == ["en", "de"]
    assert records["bi"]["train_examples"] > records["src"]["train_examples"]


def test_record_says_what_produced_the_model(trained_pair):
    root, configs, records = trained_pair
    record = records["src"]
    assert record["status"] == "finished"
    assert record["config"] == configs["src"].to_dict()
    assert set(record["data_fingerprints"]) >= {"en/train"}
    assert record["versions"]["torch"] == torch.__version__
    assert record["dev_scores"]["en"]["metric"] == "accuracy"
    assert 0.0 <= record["dev_scores"]["en"]["score"] <= 1.0
    assert record["dev_scores"]["en"]["n_examples"] == 16
    assert len(record["history"]) == 2
    run_dir = configs["src"].run_dir(root)
    assert (run_dir / MODEL_NAME).is_file() and not (run_dir / STATE_NAME).exists()
    on_disk = json.loads((run_dir / "record.json").read_text())
    assert on_disk["run_id"] == configs["src"].run_hash()


def test_finished_run_is_skipped(trained_pair):
    root, configs, _ = trained_pair
    model_file = configs["tgt"].run_dir(root) / MODEL_NAME
    before = model_file.stat().st_mtime_ns
    started = time.time()
    again = train(configs["tgt"], root, progress=False)
    assert again["status"] == "finished"
    assert model_file.stat().st_mtime_ns == before
    assert time.time() - started < 5


def test_monolingual_run_is_shared_between_pairs():
    profile = load_profile("smoke", ["pairs=[en-de, en-ru]", "tasks=[pos]", "seeds=[1]"])
    runs = plan_runs(profile)
    langs = sorted("+".join(c.train_langs) for c in runs)
    assert langs == ["de", "en", "en+de", "en+ru", "ru"]


def test_dev_scores_are_added_for_other_languages(trained_pair):
    root, configs, _ = trained_pair
    record = ensure_dev_scores(configs["src"], root, ("en", "de"))
    assert set(record["dev_scores"]) >= {"en", "de"}
    again = ensure_dev_scores(configs["src"], root, ("de",))
    assert again["dev_scores"]["de"] == record["dev_scores"]["de"]


def _launch(config_path: Path, root: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "xinterp_utils", "train", str(config_path), str(root),
           "--no-progress", "--save-every-steps", "1", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_sigkill_then_resume_gives_the_same_weights(tmp_path, data_dir):
    config = TrainConfig(ENCODER, "ner", ("en",), seed=5, **{**TINY, "max_train_examples": 40})
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config.to_dict()))

    straight = tmp_path / "straight"
    proc = _launch(config_path, straight)
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]

    killed = tmp_path / "killed"
    state = config.run_dir(killed) / STATE_NAME
    proc = _launch(config_path, killed)
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # land the kill in the middle of later steps
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists()
    assert not (config.run_dir(killed) / "record.json").exists()

    proc = _launch(config_path, killed)
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]

    a = read_model_state(config.run_dir(straight) / MODEL_NAME)
    b = read_model_state(config.run_dir(killed) / MODEL_NAME)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # No temporary files left behind by atomic writes.
    assert not list(config.run_dir(killed).glob(".*.tmp"))


def test_training_through_the_local_executor(tmp_path, data_dir):
    config = TrainConfig(ENCODER, "xnli", ("en",), seed=2, **{**TINY, "epochs": 1})
    records = run_jobs(train, [{"config": config, "checkpoint_root": str(tmp_path),
                                "progress": False}],
                       executor="local", folder=tmp_path / "submitit", poll_seconds=0.5,
                       progress=False)
    assert records[0]["status"] == "finished"
    assert records[0]["dev_scores"]["en"]["metric"] == "accuracy"


def test_finetune_table_is_tidy(trained_pair):
    root, _configs, _ = trained_pair
    profile = load_profile("smoke", ["tasks=[pos]", "pairs=[en-de]", "seeds=[3]",
                                     *[f"{k}={v}" for k, v in TINY.items()]])
    table = finetune_table(profile, root)
    assert len(table) == 6  # 3 models × 2 dev sets
    assert set(table["model"]) == {"src", "tgt", "bi"}
    zero_shot = table.query("model == 'src' and eval_role == 'target'")
    assert list(zero_shot["eval_lang"]) == ["de"]
    assert table["score"].between(0, 1).all()
    assert table["run_id"].nunique() == 3


def test_length_grouped_batches_use_every_example_once_with_less_padding(data_dir):
    from xinterp_utils.encoders import load_tokenizer
    from xinterp_utils.schedule import epoch_batches
    from xinterp_utils.train import load_features

    config = TrainConfig(ENCODER, "ner", ("en",), max_train_examples=3000)
    feats, _ = load_features(config, load_tokenizer(ENCODER), "en", "train")
    lengths = [len(f["input_ids"]) for f in feats]
    n, size = len(feats), 32

    def padded(plan):
        return sum(len(b) * max(lengths[i] for i in b) for b in plan)

    for batching in ("random", "length-grouped"):
        plan = epoch_batches(lengths, size, 1, 0, batching)
        assert sorted(i for b in plan for i in b) == list(range(n))
        assert len(plan) == -(-n // size)
        assert plan == epoch_batches(lengths, size, 1, 0, batching)  # fixed by (seed, epoch)
        assert plan != epoch_batches(lengths, size, 1, 1, batching)
        assert plan != epoch_batches(lengths, size, 2, 0, batching)
    random_plan = epoch_batches(lengths, size, 1, 0, "random")
    grouped = epoch_batches(lengths, size, 1, 0, "length-grouped")
    # Random batches: a batch of the grouped plan is not a contiguous slice of the order.
    assert random_plan[0] == epoch_order(n, 1, 0)[:size]
    assert padded(grouped) < 0.6 * padded(random_plan)
    # Each batch comes from one chunk of 50 batches of the epoch's permutation, and the
    # batches are shuffled: the longest batch is not always first.
    order = epoch_order(n, 1, 0)
    chunk_of = {i: pos // (50 * size) for pos, i in enumerate(order)}
    assert all(len({chunk_of[i] for i in b}) == 1 for b in grouped)
    firsts = [max(lengths[i] for i in epoch_batches(lengths, size, 1, e, "length-grouped")[0])
              for e in range(4)]
    assert len(set(firsts)) > 1


def test_precision_follows_the_setting_and_the_cpu():
    from xinterp_utils.precision import autocast_dtype, cpu_has_native_bf16

    lines = Path("/proc/cpuinfo").read_text().splitlines()
    flags = next((line for line in lines if line.startswith("flags")), "")
    native = "avx512_bf16" in flags.split() or "amx_bf16" in flags.split()
    assert cpu_has_native_bf16() == native
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("bf16-cuda", "cpu") is None  # what every earlier run did
    assert autocast_dtype("bf16-native", "cpu") == (torch.bfloat16 if native else None)
    with pytest.raises(ValueError, match="precision='bf17'"):
        autocast_dtype("bf17", "cpu")
    with pytest.raises(ValueError, match="TrainConfig.precision"):
        TrainConfig(ENCODER, "ner", ("en",), precision="half")


def test_learning_curve_is_recorded_and_tabulated(tmp_path, data_dir):
    from xinterp_utils.finetune import curve_rows
    from xinterp_utils.precision import autocast_dtype
    from xinterp_utils.tables import CURVE_COLUMNS

    config = TrainConfig(ENCODER, "pos", ("en",), seed=6, evals_per_epoch=2,
                         batching="length-grouped", precision="bf16-native",
                         **{**TINY, "max_train_examples": 40})
    record = train(config, tmp_path, progress=False)
    spe = record["total_steps"] // config.epochs  # steps per epoch (windows: >= 40 / 8)
    half = round(spe / 2)
    assert [p["step"] for p in record["history"]] == [half, spe, spe + half, 2 * spe]
    assert [p["selection"] for p in record["history"]] == [False, True, False, True]
    expected = autocast_dtype("bf16-native", "cpu")
    assert record["autocast"] == (str(expected) if expected else None)
    rows = curve_rows(record)
    assert len(rows) == 4 and set(rows[0]) == set(CURVE_COLUMNS)
    assert [r["epoch"] for r in rows] == [round(s / spe, 4) for s in (half, spe, spe + half,
                                                                       2 * spe)]
    assert all(r["run_id"] == config.run_hash() and r["eval_lang"] == "en" for r in rows)
    # The selected model is the best epoch-end point, and its dev score is the record's.
    ends = [p for p in record["history"] if p["selection"]]
    best = max(ends, key=lambda p: p["dev_mean"])
    assert record["best_epoch"] == best["epoch"]
    assert record["dev_scores"]["en"]["score"] == best["dev"]["en"]
    assert all(r["train_loss"] > 0 for r in rows)
