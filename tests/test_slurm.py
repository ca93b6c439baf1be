"""executor=slurm against a real single-node Slurm (scripts/slurm_local.sh).

Runs only where that cluster is up (`slurm_local.sh status`); .ci/run starts it before the
suite and sets XINTERP_REQUIRE_SLURM=1, under which a cluster that is not up is a test
failure (with the tail of the script's start log), never a skip.

What is checked, on the `smoke` profile narrowed to POS (3 fine-tuning runs, a 1D and a
2D sweep) submitted as submitit array jobs: a task cancelled with scancel is reported by
the job's name and array index; a rerun resumes (the finished runs are skipped) and
completes; the finetune table and the sweep CSV rows equal those of an inline run of the
same profile.
"""

from __future__ import annotations

import csv
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from xinterp_utils.finetune import finetune_table, run_finetuning
from xinterp_utils.jobs import JobsFailed, SlurmOptions, run_jobs
from xinterp_utils.profiles import load_profile
from xinterp_utils.sweep_spec import plan_sweeps
from xinterp_utils.sweeps import run_sweeps

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "slurm_local.sh"
STATE = Path(os.environ.get("XINTERP_SLURM_STATE", "/tmp/xinterp-slurm"))
RESOURCES = {"cpus_per_task": 1, "mem_gb": 2, "gpus_per_node": 0, "timeout_min": 15,
             "array_parallelism": 2}
NARROW = {"tasks": ["pos"], "max_train_examples": 48, "max_dev_examples": 16, "epochs": 1,
          "batch_size": 16, "alphas_2d": [0.0, 1.0]}

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster():
    """SLURM_CONF of the running local cluster; skips (or fails, under
    XINTERP_REQUIRE_SLURM=1) when `scripts/slurm_local.sh status` says it is not up."""
    conf = STATE / "etc" / "slurm.conf"
    env = {**os.environ, "XINTERP_SLURM_STATE": str(STATE), "SLURM_CONF": str(conf)}
    status = subprocess.run([str(SCRIPT), "status"], env=env, capture_output=True, text=True,
                            check=False)
    if status.returncode != 0:
        log = STATE / "start.log"
        tail = "\n".join(log.read_text().splitlines()[-30:]) if log.is_file() else "(no log)"
        message = (f"no local Slurm is up ({SCRIPT} status):\n{status.stdout}{status.stderr}"
                   f"\n{log}:\n{tail}")
        if os.environ.get("XINTERP_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "OMP_NUM_THREADS")}
    os.environ["SLURM_CONF"] = str(conf)
    # One thread in the jobs (which inherit this environment) and inline: the same sums
    # in the same order, so scores compare exactly.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield conf
    torch.set_num_threads(threads)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _sleepy(seconds: float) -> float:
    """A job that takes `seconds` (imported by the Slurm job from this module)."""
    time.sleep(seconds)
    return seconds


def _queue() -> dict[str, str]:
    """{array task id: state} of this user's queued jobs."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _cancel_when(predicate, timeout_s: float = 120.0) -> threading.Thread:
    """In a thread: wait until predicate(queue) names an array task, then scancel it."""
    def watch():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            task = predicate(_queue())
            if task:
                subprocess.run(["scancel", task], check=True)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_cancelled_task_is_reported_by_name_and_index(slurm_cluster, tmp_path):
    started = time.monotonic()
    # Task 1 sleeps; it is cancelled as soon as it runs. Task 0 finishes normally.
    watcher = _cancel_when(lambda q: next((t for t, s in q.items()
                                           if t.endswith("_1") and s == "RUNNING"), None))
    with pytest.raises(JobsFailed) as info:
        run_jobs(_sleepy, [{"seconds": 0.1}, {"seconds": 300}], executor="slurm",
                 folder=tmp_path, slurm=SlurmOptions(**RESOURCES), poll_seconds=0.5,
                 progress=False)
    watcher.join(1)
    message = str(info.value)
    assert set(info.value.failures) == {1}, message
    assert "1 of 2 jobs failed" in message
    assert "Slurm job '_sleepy'" in message and "(array index 1, job 1 of 2)" in message
    assert "ended CANCELLED" in message
    assert time.monotonic() - started < 60  # reported, not waited for (the job sleeps 300 s)


def _profile(tmp_path: Path, executor: str):
    return load_profile("smoke", {
        **NARROW, "executor": executor, "slurm": RESOURCES,
        "checkpoints": str(tmp_path / executor / "checkpoints"),
        "results": str(tmp_path / executor / "results")})


def _run_profile(profile, **executor_options):
    """Fine-tuning, the finetune table, and the 1D and 2D sweeps of `profile`."""
    run_finetuning(profile, profile.checkpoints, progress=False, **executor_options)
    table = finetune_table(profile, profile.checkpoints)
    specs = plan_sweeps(profile, two_d=False) + plan_sweeps(profile, two_d=True)
    paths = run_sweeps(specs, profile.checkpoints, profile.results, executor=profile.executor,
                       progress=False, **{**profile.executor_options(), **executor_options})
    return table, paths


def _sweep_rows(paths, root) -> list[tuple]:
    rows = []
    for path in sorted(set(map(str, paths))):  # the 1D and 2D sweeps share a CSV
        with open(path, newline="") as handle:
            rel = str(Path(path).relative_to(root))
            rows += [(rel, *sorted(row.items())) for row in csv.DictReader(handle)]
    return sorted(rows)


def test_smoke_profile_on_slurm_equals_inline(slurm_cluster, tmp_path):
    profile = _profile(tmp_path, "slurm")
    assert profile.executor == "slurm"
    # First submission: the third run (task 2, started when one of the first two has
    # finished) is cancelled as soon as it runs.
    watcher = _cancel_when(lambda q: next((t for t, s in q.items()
                                           if t.endswith("_2") and s == "RUNNING"), None))
    with pytest.raises(JobsFailed) as info:
        run_finetuning(profile, profile.checkpoints, progress=False, poll_seconds=0.5)
    watcher.join(1)
    assert set(info.value.failures) == {2}, str(info.value)
    assert "Slurm job 'train'" in str(info.value) and "(array index 2, job 2 of 3)" in str(
        info.value)
    assert "ended CANCELLED" in str(info.value)
    records = sorted(Path(profile.checkpoints).glob("*/*/*/*/record.json"))
    assert len(records) == 2  # the two runs that were not cancelled finished
    models = [p.with_name("model.safetensors") for p in records]
    mtimes = {p: p.stat().st_mtime_ns for p in models}

    # The rerun resumes: the finished runs are skipped (their models untouched; the
    # table adds dev scores to their records), the cancelled one is trained, and the
    # sweeps run as a second array.
    table, paths = _run_profile(profile, poll_seconds=0.5)
    assert {p: p.stat().st_mtime_ns for p in models} == mtimes
    assert len(sorted(Path(profile.checkpoints).glob("*/*/*/*/record.json"))) == 3
    assert len(paths) == 2 and all(Path(p).is_file() for p in paths)

    inline = _profile(tmp_path, "inline")
    table_inline, paths_inline = _run_profile(inline)
    assert len(table) == 6 and table["score"].between(0, 1).all()
    assert table.to_dict("records") == table_inline.to_dict("records")
    rows = _sweep_rows(paths, profile.results)
    assert len(rows) == 2 * 2 * len(profile.alphas_1d) + 2 * len(profile.alphas_2d) ** 2
    assert rows == _sweep_rows(paths_inline, inline.results)
