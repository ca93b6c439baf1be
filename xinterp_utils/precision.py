"""Which floating-point precision a run trains and evaluates in.

Mixed precision (bf16 autocast) is what App. A uses on GPUs. On a CPU it pays only where
the processor does bf16 arithmetic natively (AVX512-BF16 or AMX); elsewhere it is
emulated and slower than fp32. So the choice is a setting of the run, resolved on the
machine that runs it, and the resolved dtype is written into the run's record.

- ``bf16-cuda``: bf16 autocast on CUDA, fp32 on a CPU (what every run before this
  setting existed did; the default, so that their ids stay the same).
- ``bf16-native``: bf16 autocast wherever the device has native bf16, fp32 elsewhere.
- ``fp32``: never autocast.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

from .settings import PRECISIONS

# CPU feature flags (Linux /proc/cpuinfo) that mean bf16 matrix arithmetic in hardware.
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Return True when this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX)."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return False
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(flag in flags for flag in _NATIVE_BF16_FLAGS)
    return False


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """Return the autocast dtype (torch.bfloat16) that `precision` gives on `device`, or
    None for plain fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
    kind = torch.device(device).type
    if precision == "fp32":
        return None
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if precision == "bf16-native" and kind == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast_context(device: str | torch.device, dtype: torch.dtype | None):
    """Return the autocast context for `dtype` on `device` (a no-op context when None)."""
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=dtype, enabled=dtype is not None)
