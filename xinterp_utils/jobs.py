"""Run a list of independent jobs inline, on one machine's GPUs, or on a Slurm cluster.

Fine-tuning runs and sweeps are jobs: a picklable top-level function and its keyword
arguments. Every job is resumable and skips finished work, so re-running a list after a
failure or a pre-emption only does what is left.

- ``inline``: in this process, one after the other (notebooks, CI, debugging).
- ``local``: submitit's local executor, one job per GPU at a time (or ``workers`` CPU
  jobs at a time when there is no GPU), each in its own process.
- ``slurm``: submitit's Slurm executor, one array task per job.
"""

from __future__ import annotations

import getpass
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import tqdm
from .settings import EXECUTORS


class JobsFailed(RuntimeError):
    """Some jobs raised; `.failures` maps job index to (kwargs, error text, log path)."""

    def __init__(self, failures: dict[int, tuple[dict, str, str | None]], total: int):
        self.failures = failures
        lines = [f"{len(failures)} of {total} jobs failed:"]
        for index, (kwargs, error, log) in sorted(failures.items()):
            first = error.strip().splitlines()[-1] if error.strip() else "?"
            lines.append(f"  job {index} {kwargs}: {first}" + (f" (log: {log})" if log else ""))
        super().__init__("\n".join(lines))


@dataclass
class SlurmOptions:
    """Slurm resources for one job (submitit names). `extra` goes to `slurm_additional_parameters`."""

    partition: str | None = None
    timeout_min: int = 24 * 60
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 64
    array_parallelism: int = 64
    account: str | None = None
    extra: dict | None = None


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[dict],
    *,
    executor: str = "inline",
    folder: str | Path = "runs/submitit",
    gpus: Sequence[int] | None = None,
    workers: int = 1,
    timeout_min: float = 24 * 60,
    slurm: SlurmOptions | None = None,
    poll_seconds: float = 2.0,
    progress: bool = True,
) -> list[Any]:
    """Run ``fn(**kwargs)`` for every kwargs dict in `jobs`; return their results in order.

    Raises `JobsFailed` after all jobs have ended if any raised (the others' results are
    kept on disk by the jobs themselves). `gpus` (local) defaults to every visible GPU.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r}: expected one of {EXECUTORS}")
    jobs = [dict(kwargs) for kwargs in jobs]
    if not jobs:
        return []
    if executor == "inline":
        return _run_inline(fn, jobs, progress)
    # Imported here: only the local and Slurm paths need it, and every `xinterp` command
    # loads this module (through profiles).
    import submitit

    folder = Path(folder)
    if executor == "local":
        return _run_local(submitit, fn, jobs, folder, gpus, workers, timeout_min,
                          poll_seconds, progress)
    return _run_slurm(submitit, fn, jobs, folder, slurm or SlurmOptions(), poll_seconds, progress)


def _run_inline(fn, jobs, progress):
    results, failures = [], {}
    for index, kwargs in enumerate(tqdm(jobs, desc="jobs", unit="job", disable=not progress)):
        try:
            results.append(fn(**kwargs))
        except Exception as err:  # noqa: BLE001 - one job's failure must not stop the others
            failures[index] = (kwargs, f"{traceback.format_exc()}{err!r}", None)
            results.append(None)
    if failures:
        raise JobsFailed(failures, len(jobs))
    return results


def _visible_gpus() -> list[int]:
    # Imported here: profiles import this module and must load without torch.
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _run_local(submitit, fn, jobs, folder, gpus, workers, timeout_min, poll_seconds, progress):
    gpus = list(_visible_gpus() if gpus is None else gpus)
    # One job per GPU; with no GPU, `workers` CPU jobs side by side.
    slots: list[int | None] = gpus if gpus else [None] * max(1, workers)
    executor = submitit.LocalExecutor(folder=folder)
    pending = list(enumerate(jobs))
    running: dict[int | None, tuple[int, Any]] = {}
    free = list(range(len(slots)))
    results: list[Any] = [None] * len(jobs)
    failures = {}
    bar = tqdm(total=len(jobs), desc="jobs (local)", unit="job", disable=not progress)
    while pending or running:
        while pending and free:
            slot = free.pop(0)
            gpu = slots[slot]
            executor.update_parameters(
                timeout_min=timeout_min,
                gpus_per_node=0 if gpu is None else 1,
                visible_gpus=() if gpu is None else (gpu,),
            )
            index, kwargs = pending.pop(0)
            running[slot] = (index, executor.submit(fn, **kwargs))
        time.sleep(poll_seconds)
        for slot, (index, job) in list(running.items()):
            if job.done():
                _collect(job, index, jobs, results, failures)
                del running[slot]
                free.append(slot)
                bar.update(1)
    bar.close()
    if failures:
        raise JobsFailed(failures, len(jobs))
    return results


# Slurm states in which a job is still queued or running (submitit's list).
_SLURM_LIVE = ("READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED",
               "SUSPENDED", "CONFIGURING", "RESIZING")
# How long a job may be out of squeue with no result and no state in sacct before it is
# reported (sacct needs slurmdbd; without accounting every state reads UNKNOWN).
SLURM_UNKNOWN_GRACE_S = 60.0


def _squeue_ids() -> set[str] | None:
    """Return the ids of this user's queued or running jobs, one per array task
    (`123_4`), or None when squeue cannot be asked."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-u", getpass.getuser()],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.strip() for line in out.splitlines() if line.strip()}


def _slurm_label(job, name: str, index: int, total: int) -> str:
    """`Slurm job 'train' 123_4 (array index 4 of 10)`."""
    task = str(job.job_id).rpartition("_")[2] if "_" in str(job.job_id) else "?"
    return f"Slurm job {name!r} {job.job_id} (array index {task}, job {index} of {total})"


def _run_slurm(submitit, fn, jobs, folder, opts: SlurmOptions, poll_seconds, progress,
               unknown_grace_s: float | None = None):
    """Submit `jobs` as one Slurm array and wait for every task.

    A task that ends without a result (cancelled with scancel, failed, timed out, node
    failure) is reported by the job's name, its Slurm id and array index and its final
    state, as soon as it has left the queue; one that has left the queue and that sacct
    knows nothing of for `unknown_grace_s` (no accounting) is reported too, instead of
    being waited for forever."""
    grace = SLURM_UNKNOWN_GRACE_S if unknown_grace_s is None else unknown_grace_s
    name = getattr(fn, "__name__", "job")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {
        "name": name,
        "timeout_min": opts.timeout_min,
        "gpus_per_node": opts.gpus_per_node,
        "cpus_per_task": opts.cpus_per_task,
        "mem_gb": opts.mem_gb,
        "slurm_array_parallelism": opts.array_parallelism,
    }
    if opts.partition:
        params["slurm_partition"] = opts.partition
    if opts.account:
        params["slurm_account"] = opts.account
    if opts.extra:
        params["slurm_additional_parameters"] = dict(opts.extra)
    executor.update_parameters(**params)
    with executor.batch():
        submitted = [executor.submit(fn, **kwargs) for kwargs in jobs]
    results: list[Any] = [None] * len(jobs)
    failures = {}
    bar = tqdm(total=len(jobs), desc="jobs (slurm)", unit="job", disable=not progress)
    remaining = dict(enumerate(submitted))
    unknown_since: dict[int, float] = {}
    while remaining:
        time.sleep(poll_seconds)
        queued = _squeue_ids()
        for index, job in list(remaining.items()):
            label = _slurm_label(job, name, index, len(jobs))
            if job.done():
                _collect(job, index, jobs, results, failures)
                if index in failures:
                    kwargs, error, log = failures[index]
                    state = job.watcher.get_state(job.job_id, mode="force")
                    failures[index] = (kwargs, f"{error}\n{label} ended {state}", log)
            elif queued is not None and str(job.job_id) not in queued:
                # Out of the queue with no result: ask sacct now rather than at its next poll.
                state = job.watcher.get_state(job.job_id, mode="force")
                if job.paths.result_pickle.exists():
                    continue  # finished between the two looks; collected next round
                if state.split()[0].upper() not in _SLURM_LIVE:
                    failures[index] = (jobs[index], f"{label} ended {state} without a result",
                                       str(job.paths.stderr))
                elif time.monotonic() - unknown_since.setdefault(index, time.monotonic()) > grace:
                    failures[index] = (jobs[index], (
                        f"{label} left the queue without a result, and sacct reports its "
                        f"state as {state} after {grace:g} s: is Slurm accounting (slurmdbd) "
                        f"configured?"), str(job.paths.stderr))
                else:
                    continue
            else:
                unknown_since.pop(index, None)
                continue
            del remaining[index]
            bar.update(1)
    bar.close()
    if failures:
        raise JobsFailed(failures, len(jobs))
    return results


def _collect(job, index, jobs, results, failures) -> None:
    try:
        results[index] = job.result()
    except Exception as err:  # noqa: BLE001 - whatever the job raised is reported below
        log = str(job.paths.stderr) if hasattr(job, "paths") else None
        failures[index] = (jobs[index], str(err), log)
