"""The GPU benchmark that `benchmarks/gpu.sh` runs on a CUDA machine, unattended.

    bash benchmarks/gpu.sh [DATA_DIR]                         # a fresh machine: makes its own venv
    python benchmarks/gpu.py --data-dir DATA --out runs/gpu   # where torch already has CUDA
    python benchmarks/gpu.py --dry-run --out /tmp/gpu         # the same steps on the CPU, in seconds

Steps: the machine's facts and device policy; the throughput benchmark; three training runs (the
lesson as it ran, float32 and eager; the lesson's recipe at the device's best settings; the fast
recipe), each with its first epoch, which pays for compilation, reported apart from the rest;
then DistributedDataParallel over every GPU when there are two or more. It writes result.json and
result.md into --out, for docs/RESULTS.md. Without --data-dir (or $CIFAR10_ROOT) the images are
random: the timings hold, the accuracies mean nothing, and the result says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.bench.throughput import BenchPlan, run_benchmark
from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import CIFAR10, load_cifar10, synthetic_cifar10
from alexnet_cifar.device import choose_policy
from alexnet_cifar.errors import UserError
from alexnet_cifar.training.loop import fit

# docs/RESULTS.md's targets for an H100/H200-class GPU, in seconds
TARGETS = {"lesson_20_epochs_s": 20.0, "fast_seconds_to_70": 3.0}
DDP_TIMEOUT_S = 1200  # an unattended run must end: a hung collective is reported, not waited on
RUNS = {  # name: (recipe, overrides)
    "lesson": ("seed", {}),  # as the lesson ran it: float32, eager
    "lesson-best": ("seed", {"amp": "auto", "compile": True}),  # the same recipe at the device's best settings
    "fast": ("fast", {"compile": True}),
}


def machine_facts(device: torch.device) -> dict[str, Any]:
    """What ran the benchmark: versions, and each GPU that torch sees (CUDA_VISIBLE_DEVICES counts)."""
    gpus = [
        {"name": torch.cuda.get_device_name(i), "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
        for i in range(gpu_count(device))
    ]
    policy = choose_policy(device, "auto", compile=True)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "device": str(device),
        "gpus": gpus,
        "policy_for_amp_auto": policy.to_dict(),
    }


def gpu_count(device: torch.device) -> int:
    return torch.cuda.device_count() if device.type == "cuda" else 0


def epochs_summary(history: list, compiled: bool) -> dict[str, Any]:
    """Seconds and accuracy of one run; with compilation, the first epoch (which pays for it) apart."""
    seconds = [r.seconds for r in history]
    later = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    compile_s = max(0.0, seconds[0] - later) if compiled else 0.0
    elapsed, to_70 = 0.0, None
    for record in history:
        elapsed += record.seconds
        if to_70 is None and record.valid_acc >= 0.70:
            to_70 = elapsed - compile_s
    return {
        "epochs": len(history),
        "first_epoch_s": seconds[0],
        "later_epoch_median_s": later,
        "compile_s": compile_s,  # the first epoch's excess over the others
        "total_s": sum(seconds),
        "total_without_compile_s": sum(seconds) - compile_s,
        "seconds_to_70": to_70,  # without compilation; None if 70% was never reached
        "last_acc": history[-1].valid_acc,
        "peak_acc": max(r.valid_acc for r in history),
    }


def train_run(name: str, data: CIFAR10, device: torch.device, out: Path, dry_run: bool) -> dict[str, Any]:
    recipe, overrides = RUNS[name]
    fields = {**overrides, "device": device.type}
    if dry_run:  # the CPU: one epoch, and no compilation (it alone would take a minute)
        fields.update(epochs=1, compile=False)
    cfg = resolve_config(recipe, fields)
    print(f"== {name}: recipe {recipe}, {cfg.epochs} epochs, amp {cfg.amp}, compile {cfg.compile}", flush=True)
    history = fit(cfg, data, RunDir.create(out / "runs" / name), show_progress=False)
    return {"recipe": recipe, "overrides": fields, **epochs_summary(history, cfg.compile)}


def ddp_command(gpus: int, data_args: list[str], run_dir: Path) -> list[str]:
    """torchrun over every GPU of this machine: the lesson's recipe for 2 epochs, batch 64 per GPU."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    train = ["-m", "alexnet_cifar", "train", "--device", "cuda", "--epochs", "2", "--quiet", "--no-download"]
    return [*torchrun, *train, *data_args, "--run-dir", str(run_dir)]


def ddp_run(gpus: int, data_dir: Path | None, out: Path) -> dict[str, Any]:
    if gpus < 2:
        return {"skipped": f"{gpus} GPU{'s' if gpus != 1 else ''}: DistributedDataParallel needs 2 or more"}
    data_args = ["--data-dir", str(data_dir)] if data_dir else ["--synthetic"]
    run_dir = out / "runs" / "ddp"
    print(f"== ddp: {gpus} GPUs", flush=True)
    try:
        done = subprocess.run(ddp_command(gpus, data_args, run_dir), timeout=DDP_TIMEOUT_S)  # its output shows
    except subprocess.TimeoutExpired:
        return {"failed": f"no end after {DDP_TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"failed": f"exit code {done.returncode}: see the output above"}
    history = RunDir(run_dir).history()
    return {"gpus": gpus, **epochs_summary(history, compiled=False)}


def markdown(result: dict[str, Any]) -> str:
    """The result as a short markdown section for docs/RESULTS.md."""
    facts = result["machine"]
    gpus = ", ".join(f"{g['name']} ({g['capability']})" for g in facts["gpus"]) or "none (CPU dry run)"
    lines = [
        f"GPU benchmark, {facts['date']}: {gpus}; torch {facts['torch']}, CUDA {facts['cuda']}; "
        f"data: {result['data']}.",
        "",
        "| run | epochs | first epoch s | later epochs s (median) | compile s | total s without compile "
        "| s to 70% | last acc | peak acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in result["runs"].items():
        to_70 = f"{run['seconds_to_70']:.1f}" if run["seconds_to_70"] is not None else "-"
        lines.append(
            f"| {name} | {run['epochs']} | {run['first_epoch_s']:.2f} | {run['later_epoch_median_s']:.2f} | "
            f"{run['compile_s']:.1f} | {run['total_without_compile_s']:.1f} | {to_70} | "
            f"{run['last_acc']:.4f} | {run['peak_acc']:.4f} |"
        )
    lines += ["", f"DDP: {json.dumps(result['ddp'])}", "", "Targets (H100/H200-class):"]
    lines += [f"- {target}: {verdict}" for target, verdict in result["targets"].items()]
    lines += ["", "Throughput benchmark:", "", "```", result["bench"], "```"]
    return "\n".join(lines) + "\n"


def judge(runs: dict[str, dict[str, Any]], synthetic: bool) -> dict[str, str]:
    """Each target of docs/RESULTS.md against this machine's numbers."""
    lesson = min(runs["lesson"]["total_without_compile_s"], runs["lesson-best"]["total_without_compile_s"])
    to_70 = runs["fast"]["seconds_to_70"]
    verdicts = {"lesson_20_epochs_s": f"{lesson:.1f} s (target < {TARGETS['lesson_20_epochs_s']:.0f} s)"}
    if synthetic:
        verdicts["fast_seconds_to_70"] = "not measured: random images never reach 70%"
    elif to_70 is None:
        verdicts["fast_seconds_to_70"] = "70% not reached"
    else:
        verdicts["fast_seconds_to_70"] = f"{to_70:.1f} s (target < {TARGETS['fast_seconds_to_70']:.0f} s)"
    return verdicts


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--data-dir", type=Path, help="folder holding cifar-10-batches-py/ (default: $CIFAR10_ROOT, else random images)"
    )
    p.add_argument("--out", type=Path, required=True, help="where result.json, result.md and the runs go")
    p.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, tiny: checks the logic")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        return benchmark(args)
    except UserError as exc:  # no data, an output folder in use: one line, as the tool itself says it
        print(f"gpu.py: {exc}", file=sys.stderr)
        return 1


def benchmark(args: argparse.Namespace) -> int:
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"torch {torch.__version__} sees no CUDA GPU; on a CPU machine use --dry-run")
    if (args.out / "runs").exists():
        raise UserError(f"{args.out} holds an earlier result; pass another --out")
    data_dir = args.data_dir or (None if args.dry_run else os.environ.get("CIFAR10_ROOT"))
    if data_dir:
        data, source = load_cifar10(Path(data_dir)), f"CIFAR-10 from {data_dir}"
    else:
        data, source = synthetic_cifar10(*((512, 256) if args.dry_run else ())), "random images (synthetic)"
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # each run's per-epoch lines
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine_facts(device), "data": source, "dry_run": args.dry_run}
    tiny = BenchPlan(repeats=1, batches=2, eval_images=256, full_epoch=False, matmul_seconds=0.1)
    plan = tiny if args.dry_run else BenchPlan()
    print("== throughput benchmark", flush=True)
    result["bench"] = run_benchmark(data, device, plan).report()
    result["runs"] = {name: train_run(name, data, device, args.out, args.dry_run) for name in RUNS}
    result["ddp"] = ddp_run(gpu_count(device), data_dir and Path(data_dir), args.out)
    result["targets"] = judge(result["runs"], synthetic=not data_dir)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "result.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
