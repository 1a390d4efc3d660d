"""A smoke run of the benchmark on fake data: every pipeline runs; no speed is asserted."""

import pytest
import torch

from alexnet_cifar.bench.lesson import LessonDataset, data_tf
from alexnet_cifar.bench.throughput import BenchPlan, BenchResult, Timing, run_benchmark
from alexnet_cifar.cli import main
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.data.loader import DeviceLoader
from alexnet_cifar.model import AlexNet
from alexnet_cifar.report.flops import macs_per_layer, training_flops_per_image

pytestmark = pytest.mark.beyond_core  # the benchmark surrounds the core


def test_benchmark_smoke(fake_root):
    data = load_cifar10(fake_root)
    plan = BenchPlan(repeats=2, batches=1, eval_images=30, matmul_seconds=0.2)
    result = run_benchmark(data, torch.device("cpu"), plan, log=lambda s: None)
    assert [len(t.images_per_s) for t in result.train + result.evals] == [2] * 6
    assert all(v > 0 for t in result.train + result.evals for v in t.images_per_s)
    assert result.epoch_seconds["the seed recipe"] > 0 and result.matmul_gflops["float32"] > 0
    report = result.report()
    assert "b/a" in report and "of the float32 matmul rate" in report and "one epoch of the seed recipe" in report


def test_report_ratios_and_ceiling_by_hand():
    result = BenchResult(
        train=[Timing("a", [1000.0, 900, 1100]), Timing("b", [1500.0]), Timing("c", [3000.0])],
        evals=[Timing("a", [2000.0]), Timing("b", [5000.0]), Timing("c", [8000.0])],
        matmul_gflops={"float32": 200.0, "bfloat16": 400.0},
        flops_per_image=100_000_000,
        best_settings={"amp": "auto", "autocast": "bf16"},
        device="cpu",
        threads=2,
    )
    report = result.report()
    assert "b/a 1.50, c/a 3.00" in report and "ours/lesson 2.50, best/lesson 4.00" in report
    assert "(b) reaches 75% of the float32 matmul rate, (c) 75% of the bfloat16 one" in report
    # 200 GFLOP/s over 0.1 GFLOP per image = 2000 img/s at most, twice the lesson's 1000
    assert "ceiling at 100% of the float32 matmul rate: 2.00x" in report
    assert "ceiling at 100% of the bfloat16 matmul rate: 4.00x" in report


def test_bench_cli(fake_root, capsys):
    args = ["--repeats", "1", "--batches", "1", "--eval-images", "30", "--no-epoch", "--matmul-seconds", "0.2"]
    code = main(["bench", "--data-dir", str(fake_root), *args])
    assert code == 0 and "training ratios: b/a" in capsys.readouterr().out


def test_lesson_pipeline_gives_our_batches(fake_root):
    """(a) and (b) see the same numbers up to float rounding: the comparison is like for like."""
    data = load_cifar10(fake_root)
    lesson = torch.stack([LessonDataset(data.train)[i][0] for i in range(10)])
    ours, _ = next(iter(DeviceLoader(data.train.images[:10], data.train.labels[:10], 10)))
    torch.testing.assert_close(ours, lesson, rtol=0, atol=1e-6)
    assert data_tf(torch.zeros(2, 2, 3, dtype=torch.uint8).numpy()).shape == (3, 2, 2)


def test_arithmetic_counts_match_the_hand_count():
    macs = macs_per_layer(AlexNet())
    assert macs == {
        "conv1.0": 28 * 28 * 64 * 75,
        "conv2.0": 9 * 9 * 64 * 1600,
        "fc1.0": 1024 * 384,
        "fc2.0": 384 * 192,
        "fc3": 192 * 10,
    }
    assert sum(macs.values()) == 12_526_464
    assert training_flops_per_image(AlexNet()) == 2 * (3 * 12_526_464 - 3_763_200)
