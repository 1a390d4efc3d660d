"""The machine a command runs on: which device, and the runtime switches that depend on it."""

from __future__ import annotations

import os

import torch

from .errors import UsageError


def select_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; asking for one that is absent is an error."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(d for d, ok in available.items() if ok))
    if not available.get(name, False):
        have = ", ".join(d for d, ok in available.items() if ok)
        raise UsageError(f"device {name!r} is not available on this machine; use --device auto or one of: {have}")
    return torch.device(name)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels where the backend has them (CPU runs repeat bit for bit either way)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.backends.cudnn.benchmark = False
    # Only on a change: the call imports torch._inductor, about 2 s at every start-up.
    if torch.are_deterministic_algorithms_enabled() != enabled:
        torch.use_deterministic_algorithms(enabled)


def cpu_has_fast_bf16() -> bool:
    """oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX): autocast is then faster, not slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: absent in some builds
        return False


def use_amp(mode: str, device: torch.device) -> bool:
    """Whether to train and evaluate under bfloat16 autocast: `mode` is on, off or auto."""
    return mode == "on" or (mode == "auto" and fast_bf16(device))


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 autocast speeds training up on `device` (see docs/RESULTS.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()
