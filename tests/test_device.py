"""The device policy: what each kind of machine gets, faked through the three facts it reads."""

import json

import pytest
import torch

from alexnet_cifar import device
from alexnet_cifar.device import DevicePolicy, choose_policy, select_device
from alexnet_cifar.errors import UsageError

from .conftest import tiny_fit


def test_unavailable_device_is_a_usage_error():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="'cuda' is not available"):
            select_device("cuda")


def machine(monkeypatch, capability=(0, 0), cpu_bf16=False):
    """Fake what the policy reads: a CUDA GPU's compute capability, the CPU's native bfloat16."""
    monkeypatch.setattr(device, "cuda_capability", lambda d: capability)
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: cpu_bf16)


# (device, capability, CPU bf16, amp) -> (autocast, gradient scaler, tf32)
TABLE = [
    # a 2-core CPU without native bf16 (this one), and a Sapphire Rapids with AMX
    ("cpu", None, False, "off", None, False, False),
    ("cpu", None, False, "auto", None, False, False),
    ("cpu", None, True, "auto", "bf16", False, False),
    ("cpu", None, False, "on", "bf16", False, False),
    ("cpu", None, False, "fp16", "fp16", True, False),
    # Pascal (P100, GTX 10xx): no tensor cores, so auto stays in float32
    ("cuda", (6, 0), False, "auto", None, False, False),
    ("cuda", (6, 1), False, "on", "fp16", True, False),
    # Volta and Turing (V100, T4): float16 with a scaler; bf16 would be emulated
    ("cuda", (7, 0), False, "auto", "fp16", True, False),
    ("cuda", (7, 5), False, "on", "fp16", True, False),
    ("cuda", (7, 5), True, "fp16", "fp16", True, False),
    # Ampere and Hopper (A100, RTX 30xx/40xx, H100, H200): native bf16, TF32 when amp is on
    ("cuda", (8, 0), False, "auto", "bf16", False, True),
    ("cuda", (8, 6), False, "fp16", "fp16", True, True),
    ("cuda", (9, 0), False, "on", "bf16", False, True),
    ("cuda", (9, 0), False, "off", None, False, False),  # the lesson's float32, not TF32
    # Apple Silicon: float32 unless asked (half precision there is unmeasured)
    ("mps", None, True, "auto", None, False, False),
    ("mps", None, True, "on", "fp16", True, False),
    ("mps", None, False, "bf16", "bf16", False, False),
]


@pytest.mark.parametrize("kind, capability, cpu_bf16, amp, autocast, scaler, tf32", TABLE)
def test_policy_for_each_kind_of_machine(monkeypatch, kind, capability, cpu_bf16, amp, autocast, scaler, tf32):
    machine(monkeypatch, capability, cpu_bf16)
    policy = choose_policy(torch.device(kind), amp)
    assert (policy.autocast, policy.grad_scaler, policy.tf32) == (autocast, scaler, tf32)
    assert policy.autocast_dtype == {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[autocast]
    assert policy.meter_dtype == ("float32" if kind == "mps" else "float64")  # MPS has no float64
    assert policy.reasons and any(r.startswith(f"amp {amp}") or r.startswith("amp: off") for r in policy.reasons)


def test_cudnn_benchmark_on_cuda_unless_deterministic_and_no_compile_on_mps(monkeypatch):
    machine(monkeypatch, (8, 0))
    assert choose_policy(torch.device("cuda")).cudnn_benchmark
    assert not choose_policy(torch.device("cuda"), deterministic=True).cudnn_benchmark
    assert not choose_policy(torch.device("cpu")).cudnn_benchmark
    assert choose_policy(torch.device("cuda"), compile=True).compile
    assert choose_policy(torch.device("cpu"), compile=True).compile
    mps = choose_policy(torch.device("mps"), compile=True)
    assert not mps.compile and any("compile: off on mps" in r for r in mps.reasons)


def test_bf16_asked_for_on_a_gpu_without_it_is_a_usage_error(monkeypatch):
    machine(monkeypatch, (7, 5))
    with pytest.raises(UsageError, match=r"amp = 'bf16' on a GPU of capability 7.5: .*use --amp fp16 or --amp auto"):
        choose_policy(torch.device("cuda"), "bf16")


def test_apply_sets_the_cuda_switches_it_decided():
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        for on in (True, False):
            DevicePolicy("cuda", None, False, False, cudnn_benchmark=on, tf32=not on, meter_dtype="float64").apply()
            assert torch.backends.cudnn.benchmark is on
            assert torch.backends.cudnn.allow_tf32 is torch.backends.cuda.matmul.allow_tf32 is (not on)
    finally:  # process-wide switches (the matmul one is not an attribute monkeypatch can restore)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.backends.cuda.matmul.allow_tf32 = saved[2]


def test_amp_in_config_takes_every_mode_and_the_old_switch():
    from alexnet_cifar.config import RECIPES, resolve_config

    assert RECIPES["seed"].amp == "off" and RECIPES["fast"].amp == RECIPES["best"].amp == "auto"
    assert resolve_config("seed", {"amp": True}).amp == "on"  # runs and files from before "auto"
    assert resolve_config("seed", {"amp": False}).amp == "off"
    assert resolve_config("seed", {"amp": "fp16"}).amp == "fp16"
    with pytest.raises(UsageError, match="amp = 'maybe' is not allowed; use one of off, on, auto, bf16, fp16"):
        resolve_config("seed", {"amp": "maybe"})


def test_config_json_records_what_the_policy_chose_and_why(tmp_path, monkeypatch):
    machine(monkeypatch, cpu_bf16=False)
    _, run = tiny_fit(tmp_path, epochs=1, amp="auto")
    info = json.loads(run.config.read_text())
    policy = info["environment"]["device_policy"]
    assert info["config"]["amp"] == "auto" and info["environment"]["autocast"] is None
    assert policy["autocast"] is None and policy["meter_dtype"] == "float64"
    assert "amp auto: float32 on this CPU (no native bfloat16, where bf16 runs slower)" in policy["reasons"]


def test_a_run_with_float32_metric_sums_as_on_mps_gives_the_same_numbers(tmp_path, monkeypatch):
    """MPS has no float64: the meter sums in float32 there. Faked on the CPU, a run's metrics agree
    with float64's to float32 rounding, and its weights are the same."""
    from alexnet_cifar.training import metrics

    wide, a = tiny_fit(tmp_path, "float64", epochs=1)
    monkeypatch.setattr(metrics, "meter_dtype", lambda d: torch.float32)
    narrow, b = tiny_fit(tmp_path, "float32", epochs=1)
    assert torch.equal(torch.load(a.weights)["fc3.weight"], torch.load(b.weights)["fc3.weight"])
    timing = ("seconds", "images_per_s")
    for key, value in wide[0].to_row().items():
        assert key in timing or narrow[0].to_row()[key] == pytest.approx(value, rel=1e-6), key


def test_fit_applies_the_policy_it_records(tmp_path, monkeypatch):
    applied = []
    monkeypatch.setattr(DevicePolicy, "apply", lambda self: applied.append(self))
    _, run = tiny_fit(tmp_path, epochs=1)
    assert len(applied) == 1
    assert json.loads(run.config.read_text())["environment"]["device_policy"] == applied[0].to_dict()


def test_torchrun_on_mps_is_refused_in_one_line():
    from alexnet_cifar.training import distributed
    from alexnet_cifar.training.ranks import DistInfo

    with pytest.raises(UsageError, match="torch.distributed has no MPS backend; run one process, or use --device cpu"):
        distributed.init(DistInfo(rank=0, world_size=2), torch.device("mps"))


def test_no_compile_where_triton_cannot(monkeypatch):
    machine(monkeypatch, (6, 1))
    pascal = choose_policy(torch.device("cuda"), "auto", compile=True)
    assert not pascal.compile and any("capability < 7.0" in r for r in pascal.reasons)
    machine(monkeypatch, (7, 0))
    assert choose_policy(torch.device("cuda"), "auto", compile=True).compile


def test_a_run_stopped_with_float64_sums_resumes_with_float32_ones(tmp_path, fake_root, monkeypatch):
    """A checkpoint from a CPU or GPU (float64 partial sums) resumed on a Mac (float32 sums)."""
    from alexnet_cifar.artifacts.checkpoint import load_checkpoint
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.config import resolve_config
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.errors import Interrupted
    from alexnet_cifar.training import metrics
    from alexnet_cifar.training.loop import fit

    from .conftest import stop_after

    data, cfg = load_cifar10(fake_root), resolve_config("seed", {"epochs": 1, "batch_size": 16, "lr": 0.02})
    unbroken = fit(cfg, data, RunDir.create(tmp_path / "unbroken"), show_progress=False)
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(Interrupted):
        fit(cfg, data, run, show_progress=False, stop=stop_after(6))
    state = load_checkpoint(run.last, training=True)
    assert state["progress"]["meter"]["sums"].dtype == torch.float64
    assert state["progress"]["meter"]["ranks"] == 1  # the processes whose sums these are (test_metrics rescales)
    monkeypatch.setattr(metrics, "meter_dtype", lambda d: torch.float32)
    (resumed,) = fit(cfg, data, run, resume=state, show_progress=False)
    assert resumed.train_loss == pytest.approx(unbroken[0].train_loss, rel=1e-6)
    assert resumed.valid_acc == unbroken[0].valid_acc
