"""benchmarks/gpu.py and gpu.sh on a machine without a GPU: the same steps as on a CUDA machine, tiny."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpu  # benchmarks/ is on pytest's pythonpath
from alexnet_cifar.training.metrics import EpochRecord

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu.sh"


@pytest.mark.beyond_core
def test_the_dry_run_takes_every_step_and_writes_the_result(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", "")  # a dry run never reads the real data
    assert gpu.main(["--dry-run", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["dry_run"] and result["data"] == "random images (synthetic)"
    assert set(result["runs"]) == {"lesson", "lesson-best", "fast"}
    assert all(run["epochs"] == 1 and run["compile_s"] == 0 for run in result["runs"].values())
    assert result["runs"]["lesson-best"]["overrides"]["amp"] == "auto"
    assert result["ddp"] == {"skipped": "0 GPUs: DistributedDataParallel needs 2 or more"}
    assert result["targets"]["fast_seconds_to_70"] == "not measured: random images never reach 70%"
    assert "training ratios: b/a" in result["bench"]
    assert result["machine"]["policy_for_amp_auto"]["reasons"]
    md = (tmp_path / "result.md").read_text()
    assert md.count("\n| lesson") == 2 and "| fast | 1 |" in md  # lesson and lesson-best rows
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["fast", "lesson", "lesson-best"]


def record(epoch: int, seconds: float, acc: float) -> EpochRecord:
    return EpochRecord(epoch, 1.0, acc, 1.0, acc, 0.1, seconds, 1000.0)


def test_compilation_is_reported_apart_from_the_epochs():
    """A compiled run's first epoch pays for compilation: its excess over the later epochs' median is
    the compile time, and seconds to 70% leave it out."""
    history = [record(0, 9.0, 0.5), record(1, 1.0, 0.65), record(2, 1.2, 0.71), record(3, 1.0, 0.72)]
    summary = gpu.epochs_summary(history, compiled=True)
    assert summary["later_epoch_median_s"] == 1.0 and summary["compile_s"] == 8.0
    assert summary["total_s"] == pytest.approx(12.2) and summary["total_without_compile_s"] == pytest.approx(4.2)
    assert summary["seconds_to_70"] == pytest.approx(3.2)  # 9 + 1 + 1.2, less 8 s of compilation
    eager = gpu.epochs_summary(history, compiled=False)
    assert eager["compile_s"] == 0 and eager["seconds_to_70"] == pytest.approx(11.2)
    assert gpu.epochs_summary(history[:2], compiled=False)["seconds_to_70"] is None


def test_ddp_runs_over_every_gpu_and_only_with_two_or_more(tmp_path):
    assert gpu.ddp_run(1, None, tmp_path) == {"skipped": "1 GPU: DistributedDataParallel needs 2 or more"}
    cmd = gpu.ddp_command(4, ["--synthetic"], tmp_path / "ddp")
    assert "--nproc_per_node=4" in cmd and cmd[cmd.index("--device") + 1] == "cuda" and "--synthetic" in cmd


def test_a_cuda_target_on_this_cpu_is_one_line(capsys):
    if gpu.torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert gpu.main(["--out", "unused"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.process
def test_gpu_sh_without_a_cuda_torch_says_so_in_one_line(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    if done.returncode == 0:
        pytest.skip("this interpreter's torch has CUDA")
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith(f"gpu.sh: {sys.executable} has no CUDA build of torch")
    assert not (tmp_path / "out").exists()
