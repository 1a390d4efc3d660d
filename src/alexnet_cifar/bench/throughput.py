"""`alexnet-cifar bench`: the lesson's training and evaluation loops against ours, timed interleaved
in one process so that drift in the machine's speed hits all of them alike."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import TrainConfig, resolve_config
from ..data.cifar10 import CIFAR10
from ..device import choose_policy, sync
from ..inference.evaluate import evaluate
from ..model import AlexNet
from ..report.flops import training_flops_per_image
from ..training.epoch import train_one_epoch
from ..training.trainer import build_trainer, make_loaders
from .lesson import lesson_eval_step, lesson_loader, lesson_train_step


def best_settings(device: torch.device) -> dict[str, object]:
    """Settings for (c): the fastest measured on each kind of device (docs/RESULTS.md), with the
    autocast dtype that the device policy's amp = auto picks (`autocast`, None = float32).

    bfloat16 autocast is 1.6x faster on CPUs with native bf16 (AVX512-BF16, AMX) and slower on
    others. torch.compile measured slower than eager on the 2-core CPU; on CUDA it removes
    per-kernel launch overhead.
    """
    settings = {"batch_size": 64, "amp": "auto", "compile": device.type == "cuda"}
    return {**settings, "autocast": choose_policy(device, "auto").autocast}


def best_eval_batch(device: torch.device) -> int:
    """Large batches spill the CPU's caches (1000 runs 35% slower than 128); GPUs want them large."""
    return 1000 if device.type == "cuda" else 256


AUTOCAST_NAMES = {"bf16": "bfloat16", "fp16": "float16"}


@dataclass
class Timing:
    name: str
    images_per_s: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_s)

    def spread(self) -> str:
        return f"{min(self.images_per_s):8.0f} - {max(self.images_per_s):8.0f}"


def timed(fn: Callable[[], int], device: torch.device) -> float:
    """Images per second of one call of `fn`, which returns how many images it processed."""
    sync(device)
    start = time.perf_counter()
    images = fn()
    sync(device)
    return images / (time.perf_counter() - start)


def lesson_trainer(data: CIFAR10, batches: int, device: torch.device) -> Callable[[], int]:
    torch.manual_seed(0)
    model = AlexNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    loader = lesson_loader(data.train, batch_size=64, shuffle=True)

    def run() -> int:
        model.train()
        n = 0
        for images, labels in itertools.islice(loader, batches):
            lesson_train_step(model, images.to(device), labels.to(device), optimizer, criterion)
            n += len(labels)
        return n

    return run


def our_trainer(cfg: TrainConfig, data: CIFAR10, images_per_block: int, device: torch.device) -> Callable[[], int]:
    loader, _ = make_loaders(cfg, data, device)
    trainer = build_trainer(cfg, device, len(loader))
    batches = max(1, images_per_block // cfg.batch_size)
    epochs = itertools.count()

    def run() -> int:
        loader.set_epoch(next(epochs))
        meter = train_one_epoch(trainer, loader, max_batches=batches).meter
        meter.result()  # the one host sync per block, as per epoch in training
        return meter.samples

    return run


def lesson_evaluator(data: CIFAR10, images: int, device: torch.device) -> Callable[[], int]:
    model = AlexNet().to(device).eval()
    criterion = nn.CrossEntropyLoss()
    loader = lesson_loader(data.test, batch_size=128, shuffle=False)

    def run() -> int:
        n = 0
        for x, y in itertools.islice(loader, max(1, images // 128)):
            lesson_eval_step(model, x.to(device), y.to(device), criterion)
            n += len(y)
        return n

    return run


def our_evaluator(cfg: TrainConfig, data: CIFAR10, images: int, device: torch.device) -> Callable[[], int]:
    _, loader = make_loaders(cfg, data, device)
    trainer = build_trainer(cfg, device, 1)

    def run() -> int:
        batches = max(1, images // cfg.test_batch_size)
        model, criterion = trainer.eval_model(), trainer.criterion
        meter = evaluate(model, loader, criterion, autocast=trainer.autocast, max_batches=batches)
        meter.result()
        return meter.samples

    return run


def matmul_gflops(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 2.0
) -> float:
    """Best matrix-multiply rate over repeated n x n products: the roofline we compare to."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        rate = timed(lambda: (a @ b, 1)[1], device)  # products per second
        best = max(best, rate * 2 * n**3 / 1e9)
    return best


def full_epoch_seconds(cfg: TrainConfig, data: CIFAR10, device: torch.device) -> float:
    """Wall time of one whole epoch of `train`'s loop: every training batch, then the test set."""
    train_loader, test_loader = make_loaders(cfg, data, device)
    trainer = build_trainer(cfg, device, len(train_loader))
    start = time.perf_counter()
    train_one_epoch(trainer, train_loader).meter.result()
    evaluate(trainer.eval_model(), test_loader, trainer.criterion, autocast=trainer.autocast).result()
    return time.perf_counter() - start


@dataclass(frozen=True)
class BenchPlan:
    """How much `run_benchmark` times."""

    repeats: int = 5  # rounds of interleaved blocks
    batches: int = 100  # training batches of 64 images per timed block
    eval_images: int = 5000  # test images per timed evaluation block
    full_epoch: bool = True  # also time one whole epoch through train's loop
    matmul_seconds: float = 2.0  # per dtype, for the matmul rate the ratios are bounded by


@dataclass
class BenchResult:
    train: list[Timing]  # (a), (b), (c)
    evals: list[Timing]  # lesson, ours with the same arithmetic, ours at best settings
    matmul_gflops: dict[str, float]  # "float32" and, where (c) uses it, "bfloat16"
    flops_per_image: int
    best_settings: dict[str, object]
    device: str
    threads: int
    epoch_seconds: dict[str, float] = field(default_factory=dict)  # one real epoch through train's loop
    n_train: int = 50_000
    n_test: int = 10_000

    def lesson_epoch_seconds(self) -> float:
        """The lesson's epoch at the rates measured here: every training image, then the test set."""
        return self.n_train / self.train[0].median + self.n_test / self.evals[0].median

    def ratio(self, timings: list[Timing], i: int) -> float:
        return timings[i].median / timings[0].median

    def roofline_fraction(self, i: int, dtype: str) -> float:
        return self.train[i].median * self.flops_per_image / (self.matmul_gflops[dtype] * 1e9)

    def ceiling(self, dtype: str = "float32") -> float:
        """The highest ratio over (a) any pipeline could reach doing the network's arithmetic in
        `dtype` at the full matmul rate: what b/a (float32) or c/a (bfloat16) is bounded by."""
        return self.matmul_gflops[dtype] * 1e9 / self.flops_per_image / self.train[0].median

    def report(self) -> str:
        c_dtype = AUTOCAST_NAMES.get(self.best_settings.get("autocast"), "float32")
        lesson = self.lesson_epoch_seconds()
        lines = [
            f"device {self.device}, {self.threads} threads; (c) settings {self.best_settings}",
            *timing_table("training", self.train),
            f"training ratios: b/a {self.ratio(self.train, 1):.2f}, c/a {self.ratio(self.train, 2):.2f}",
            *timing_table("evaluation", self.evals),
            f"evaluation ratios: ours/lesson {self.ratio(self.evals, 1):.2f}, "
            f"best/lesson {self.ratio(self.evals, 2):.2f}",
            *(f"{dtype} matmul {rate:.0f} GFLOP/s" for dtype, rate in self.matmul_gflops.items()),
            f"network: {self.flops_per_image / 1e6:.1f} MFLOP per training image; (b) reaches "
            f"{self.roofline_fraction(1, 'float32'):.0%} of the float32 matmul rate, (c) "
            f"{self.roofline_fraction(2, c_dtype):.0%} of the {c_dtype} one",
        ]
        lines += [
            f"ceiling at 100% of the {dtype} matmul rate: {self.ceiling(dtype):.2f}x the lesson's loop"
            for dtype in self.matmul_gflops
        ]
        lines += [
            f"one epoch of {name} through train: {seconds:.1f} s; the lesson's loop at the rates above: "
            f"{lesson:.1f} s; ratio {seconds / lesson:.2f}"
            for name, seconds in self.epoch_seconds.items()
        ]
        return "\n".join(lines)


def timing_table(title: str, timings: list[Timing]) -> list[str]:
    """A header naming the columns, then one row per timing: median and min-max images per second."""
    header = f"{title:<50} {'median img/s':>12}   {'min - max':>19}"
    return [header, *(f"{t.name:<50} {t.median:12.0f}   {t.spread()}" for t in timings)]


def run_benchmark(
    data: CIFAR10, device: torch.device, plan: BenchPlan = BenchPlan(), log: Callable[[str], None] = print
) -> BenchResult:
    """Time (a), (b), (c) interleaved `plan.repeats` times over `plan.batches` batches of 64 images each:

    (a) lesson: PIL image per sample + the lesson's transform, DataLoader(64, shuffle), .item() per batch
    (b) ours, same batch size and arithmetic: device-resident batches, channels_last, one sync per block
    (c) ours at the best settings measured for the device (bfloat16 autocast where the CPU has native bf16)

    and the matching evaluation loops over `plan.eval_images` test images. Blocks run a, b, c, a, b, c, ...
    `alexnet-cifar bench` with the defaults takes about 3 minutes on 2 CPU cores.
    """
    # the switches `train` sets (cuDNN autotuning; TF32 off, so (b) keeps float32's arithmetic), once
    # for all blocks alike: they are process-wide
    choose_policy(device, "off").apply()
    best = best_settings(device)
    seed_cfg = resolve_config("seed", {"device": device.type})
    fields = {k: v for k, v in best.items() if k != "autocast"}
    best_cfg = resolve_config("seed", {"device": device.type, **fields, "test_batch_size": best_eval_batch(device)})
    images, eval_images = plan.batches * 64, plan.eval_images
    trainers = [
        ("(a) lesson: PIL per sample, DataLoader, .item()", lesson_trainer(data, plan.batches, device)),
        ("(b) ours: same batch and arithmetic", our_trainer(seed_cfg, data, images, device)),
        ("(c) ours: best settings for the device", our_trainer(best_cfg, data, images, device)),
    ]
    best_eval = f"ours, best (batch {best_cfg.test_batch_size}, autocast {best['autocast']})"
    evaluators = [
        ("lesson eval loop (batch 128, no_grad)", lesson_evaluator(data, eval_images, device)),
        ("ours, same arithmetic (batch 128, inference_mode)", our_evaluator(seed_cfg, data, eval_images, device)),
        (best_eval, our_evaluator(best_cfg, data, eval_images, device)),
    ]
    for _, fn in trainers + evaluators:  # warm-up: allocator, kernels, compilation
        fn()
    train = [Timing(name) for name, _ in trainers]
    evals = [Timing(name) for name, _ in evaluators]
    for r in range(plan.repeats):
        for timing, (_, fn) in zip(train + evals, trainers + evaluators, strict=True):
            timing.images_per_s.append(timed(fn, device))
        log(f"repeat {r + 1}/{plan.repeats}: " + ", ".join(f"{t.images_per_s[-1]:.0f}" for t in train) + " img/s")
    epochs = {}
    if plan.full_epoch:
        epochs["the seed recipe"] = full_epoch_seconds(seed_cfg, data, device)
        if best_cfg != seed_cfg:
            epochs["the seed recipe at (c)'s settings"] = full_epoch_seconds(best_cfg, data, device)
    rates = {"float32": matmul_gflops(device, seconds=plan.matmul_seconds)}
    if best["autocast"]:
        name = AUTOCAST_NAMES[best["autocast"]]
        rates[name] = matmul_gflops(device, getattr(torch, name), seconds=plan.matmul_seconds)
    return BenchResult(
        train=train,
        evals=evals,
        matmul_gflops=rates,
        flops_per_image=training_flops_per_image(AlexNet()),
        best_settings=best,
        device=str(device),
        threads=torch.get_num_threads(),
        epoch_seconds=epochs,
        n_train=len(data.train),
        n_test=len(data.test),
    )
