"""Which floating-point precision to compute in: ``fp32``, ``bf16`` (or ``fp16`` on CUDA), and ``auto``.

``auto`` means bf16 where the device does bf16 matrix products in hardware — a CPU
with AVX512-BF16 or AMX (the oneDNN kernels behind ``nn.LSTM``/``nn.GRU`` and
``Linear`` then run about 4× the fp32 rate) or a CUDA device with bf16 support —
and fp32 elsewhere, where bf16 is emulated and slower than fp32.

Training (``train.amp``) and decoding (``--precision``) resolve their setting here,
so both read the same probe; tests monkeypatch :func:`cpu_flags` to play another CPU.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "auto")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of the bf16 dot-product units


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def fast_bf16(device: torch.device) -> bool:
    """Does ``device`` compute bf16 matrix products in hardware?"""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)
    return False


def resolve_precision(setting: str, device: torch.device) -> str:
    """``fp32``/``bf16``/``fp16`` as given; ``auto`` → ``bf16`` where :func:`fast_bf16`, else ``fp32``.
    (``none`` is train.amp's name for fp32.)"""
    if setting == "none":
        return "fp32"
    if setting == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return setting


def why(setting: str, device: torch.device, resolved: str) -> str:
    """A short reason for the log: what ``auto`` saw."""
    if setting != "auto":
        return "as configured"
    if device.type == "cuda":
        return "auto: the CUDA device " + ("supports" if resolved == "bf16" else "lacks") + " bf16"
    found = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags()]
    return f"auto: this CPU has {', '.join(found)}" if found else "auto: this CPU has no AVX512-BF16/AMX"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision; None for fp32 (no autocast)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
