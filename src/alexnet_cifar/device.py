"""The machine a command runs on: which device, and how a run uses it.

One policy decides, once per run, what depends on the device: the autocast dtype (and whether
float16's gradient scaler is needed), the dtype of the on-device metric sums, whether to compile,
cuDNN autotuning and TF32. It reads only three facts about the machine (the device type, a CUDA
GPU's compute capability, whether the CPU runs bfloat16 natively), so tests can fake each of them.
config.json records what it chose and why (docs/DEVICES.md has the table).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

import torch

from .errors import UsageError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
TENSOR_CORES = (7, 0)  # Volta: the first GPUs where float16 is much faster than float32
NATIVE_BF16 = (8, 0)  # Ampere: the first GPUs with bfloat16 (and TF32) in hardware


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
    # Only on a change: the call imports torch._inductor, about 2 s at every start-up.
    if torch.are_deterministic_algorithms_enabled() != enabled:
        torch.use_deterministic_algorithms(enabled)


def cpu_has_fast_bf16() -> bool:
    """oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX): autocast is then faster, not slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: absent in some builds
        return False


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) of a CUDA GPU: 7.5 for a T4, 8.0 for an A100, 9.0 for an H100 or H200."""
    return torch.cuda.get_device_capability(device)


@dataclass(frozen=True)
class DevicePolicy:
    """How a run uses its device; `reasons` says why, one line per choice."""

    device_type: str  # cpu, cuda or mps
    autocast: str | None  # "bf16" or "fp16" autocast; None = float32 throughout
    grad_scaler: bool  # float16 gradients underflow without loss scaling (torch.amp.GradScaler)
    compile: bool  # torch.compile the model
    cudnn_benchmark: bool  # let cuDNN time its algorithms once per shape and keep the fastest
    tf32: bool  # TensorFloat-32 matmuls and convolutions for what runs in float32 (CUDA >= 8.0)
    meter_dtype: str  # the metric sums on the device: float64, or float32 where there is none (MPS)
    reasons: tuple[str, ...] = ()

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES[self.autocast] if self.autocast else None

    def apply(self) -> None:
        """Set the process-wide switches this policy decides (cuDNN and TF32 exist only on CUDA)."""
        if self.device_type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "reasons": list(self.reasons)}


def choose_policy(
    device: torch.device, amp: str = "off", compile: bool = False, deterministic: bool = False
) -> DevicePolicy:
    """The policy for `device` given the config's amp mode (off, on, auto, bf16, fp16), compile and
    deterministic settings. An explicit choice the device cannot honour is a UsageError."""
    reasons: list[str] = []
    kind = device.type
    autocast = _autocast(amp, device, reasons)
    major_minor = cuda_capability(device) if kind == "cuda" else (0, 0)
    if compile and kind == "mps":
        reasons.append("compile: off on mps (torch.compile's MPS backend is a prototype)")
        compile = False
    if compile and kind == "cuda" and major_minor < TENSOR_CORES:
        reasons.append("compile: off on a GPU of capability < 7.0 (Triton does not support it)")
        compile = False
    benchmark = kind == "cuda" and not deterministic
    if benchmark:
        reasons.append("cudnn.benchmark: on (fixed input shapes; off with --deterministic)")
    tf32 = kind == "cuda" and major_minor >= NATIVE_BF16 and autocast is not None
    if kind == "cuda" and major_minor >= NATIVE_BF16:
        reasons.append(f"tf32: {'on (amp is on)' if tf32 else 'off (amp off keeps float32 arithmetic)'}")
    meter = str(meter_dtype(device)).removeprefix("torch.")
    if kind == "mps":
        reasons.append("metric sums: float32 (MPS has no float64)")
    return DevicePolicy(kind, autocast, autocast == "fp16", compile, benchmark, tf32, meter, tuple(reasons))


def _autocast(amp: str, device: torch.device, reasons: list[str]) -> str | None:
    """Which half-precision autocast `amp` asks for on `device`, appending the reason."""
    if amp == "off":
        reasons.append("amp: off, float32 throughout")
        return None
    if device.type == "cuda":
        return _cuda_autocast(amp, cuda_capability(device), reasons)
    if device.type == "mps":
        if amp == "auto":
            reasons.append("amp auto: float32 on mps (half precision there is unmeasured; --amp fp16 to try it)")
            return None
        choice = "fp16" if amp == "on" else amp
        reasons.append(f"amp {amp}: {choice} on mps (unmeasured)")
        return choice
    fast = cpu_has_fast_bf16()
    if amp == "auto":
        why = "native bfloat16 (AVX512-BF16 or AMX)" if fast else "no native bfloat16, where bf16 runs slower"
        reasons.append(f"amp auto: {'bf16' if fast else 'float32'} on this CPU ({why})")
        return "bf16" if fast else None
    choice = "bf16" if amp == "on" else amp
    note = ", slow on CPUs: for correctness checks" if choice == "fp16" else ""
    reasons.append(f"amp {amp}: {choice} on cpu{note}")
    return choice


def _cuda_autocast(amp: str, capability: tuple[int, int], reasons: list[str]) -> str | None:
    gpu = f"capability {capability[0]}.{capability[1]}"
    if amp == "bf16" and capability < NATIVE_BF16:
        raise UsageError(
            f"amp = 'bf16' on a GPU of {gpu}: bfloat16 needs 8.0 or newer (A100, RTX 30xx and later), "
            "it is emulated here and cannot be compiled; use --amp fp16 or --amp auto"
        )
    if amp == "auto" and capability < TENSOR_CORES:
        reasons.append(f"amp auto: float32 on a GPU of {gpu} (no tensor cores)")
        return None
    if amp in ("bf16", "fp16"):
        reasons.append(f"amp {amp}: {amp} as asked on a GPU of {gpu}")
        return amp
    choice = "bf16" if capability >= NATIVE_BF16 else "fp16"
    why = "native bfloat16" if choice == "bf16" else "no native bfloat16: float16 with a gradient scaler"
    reasons.append(f"amp {amp}: {choice} on a GPU of {gpu} ({why})")
    return choice


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`; a no-op context for float32 (dtype None)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def meter_dtype(device: torch.device) -> torch.dtype:
    """float64 sums keep a whole epoch's loss exact to the last digit shown; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def sync(device: torch.device) -> None:
    """Wait for the device's queued work: otherwise a GPU timing measures the queueing, not the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
