"""Throughput benchmark: the lesson's pipeline against ours, interleaved in one process.

    alexnet-cifar bench --data-dir DIR                  # about 3 minutes on 2 CPU cores
    python benchmarks/throughput.py --data-dir DIR      # the same

(a) lesson: PIL image per sample + the lesson's transform, DataLoader(64, shuffle), .item() per batch
(b) ours, same batch size and arithmetic: device-resident batches, channels_last, one sync per block
(c) ours at the best settings measured for the device
Each timed block is a fixed number of training batches; blocks run a, b, c, a, b, c, ... so that
drift in the machine's speed hits all three alike. Speeds are reported as medians with min-max.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import TrainConfig, resolve_config
from .data import CIFAR10
from .evaluate import evaluate
from .flops import training_flops_per_image
from .lesson import lesson_eval_step, lesson_loader, lesson_train_step
from .model import AlexNet
from .train import build_model, build_optimizer, make_loaders, runner, train_one_epoch

# Settings for (c), per device type, from measurements recorded in docs/RESULTS.md.
BEST_SETTINGS: dict[str, dict[str, object]] = {
    "cpu": {"batch_size": 64, "channels_last": True},
    "cuda": {"batch_size": 512, "channels_last": True, "amp": True, "compile": True},
}


@dataclass
class Timing:
    name: str
    images_per_s: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_s)

    def spread(self) -> str:
        return f"{min(self.images_per_s):8.0f} - {max(self.images_per_s):8.0f}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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
    model = build_model(cfg, device)
    step_model = runner(model, cfg)
    optimizer = build_optimizer(cfg, model)
    criterion = nn.CrossEntropyLoss()
    loader, _ = make_loaders(cfg, data, device)
    batches = max(1, images_per_block // cfg.batch_size)
    epochs = itertools.count()

    def run() -> int:
        loader.set_epoch(next(epochs))
        meter = train_one_epoch(step_model, loader, optimizer, criterion, amp=cfg.amp, max_batches=batches)
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
    model = runner(build_model(cfg, device), cfg)
    _, loader = make_loaders(cfg, data, device)
    criterion = nn.CrossEntropyLoss()

    def run() -> int:
        meter = evaluate(model, loader, criterion, amp=cfg.amp, max_batches=max(1, images // cfg.test_batch_size))
        meter.result()
        return meter.samples

    return run


def matmul_gflops(device: torch.device, n: int = 2048, seconds: float = 2.0) -> float:
    """Best float32 matrix-multiply rate over repeated n x n products: the roofline we compare to."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        rate = timed(lambda: (a @ b, 1)[1], device)  # products per second
        best = max(best, rate * 2 * n**3 / 1e9)
    return best


def full_epoch_seconds(cfg: TrainConfig, data: CIFAR10, device: torch.device) -> float:
    """Wall time of one whole epoch of `train`'s loop: every training batch, then the test set."""
    model = build_model(cfg, device)
    step_model = runner(model, cfg)
    optimizer = build_optimizer(cfg, model)
    criterion = nn.CrossEntropyLoss()
    train_loader, test_loader = make_loaders(cfg, data, device)
    start = time.perf_counter()
    train_one_epoch(step_model, train_loader, optimizer, criterion, amp=cfg.amp).result()
    evaluate(step_model, test_loader, criterion, amp=cfg.amp).result()
    return time.perf_counter() - start


@dataclass
class BenchResult:
    train: list[Timing]
    evals: list[Timing]
    matmul_gflops: float
    flops_per_image: int
    best_settings: dict[str, object]
    device: str
    threads: int
    epoch_seconds: float | None = None  # one real epoch of the seed recipe through train's loop
    n_train: int = 50_000
    n_test: int = 10_000

    def lesson_epoch_seconds(self) -> float:
        """The lesson's epoch at the rates measured here: every training image, then the test set."""
        return self.n_train / self.train[0].median + self.n_test / self.evals[0].median

    def ratio(self, i: int) -> float:
        return self.train[i].median / self.train[0].median

    def roofline_fraction(self) -> float:
        return self.train[2].median * self.flops_per_image / (self.matmul_gflops * 1e9)

    def report(self) -> str:
        lines = [
            f"device {self.device}, {self.threads} threads; (c) settings {self.best_settings}",
            f"{'training':<44} {'median img/s':>12}   {'min - max':>19}",
        ]
        lines += [f"{t.name:<44} {t.median:12.0f}   {t.spread()}" for t in self.train]
        lines += [
            f"ratio b/a {self.ratio(1):.2f}, c/a {self.ratio(2):.2f}",
            f"{'evaluation':<44} {'median img/s':>12}   {'min - max':>19}",
        ]
        lines += [f"{t.name:<44} {t.median:12.0f}   {t.spread()}" for t in self.evals]
        lines += [
            f"evaluation ratio ours/lesson {self.evals[1].median / self.evals[0].median:.2f}",
            f"float32 matmul {self.matmul_gflops:.0f} GFLOP/s; network {self.flops_per_image / 1e6:.1f} "
            f"MFLOP per training image; (c) reaches {self.roofline_fraction():.0%} of the matmul rate",
        ]
        if self.epoch_seconds is not None:
            lesson = self.lesson_epoch_seconds()
            lines.append(
                f"one epoch of the seed recipe through train: {self.epoch_seconds:.1f} s; the lesson's loop "
                f"at the rates above: {lesson:.1f} s; ratio {self.epoch_seconds / lesson:.2f}"
            )
        return "\n".join(lines)


def run_benchmark(
    data: CIFAR10,
    device: torch.device,
    repeats: int = 5,
    batches: int = 100,
    eval_images: int = 5000,
    full_epoch: bool = True,
    log: Callable[[str], None] = print,
) -> BenchResult:
    """Time (a), (b), (c) interleaved `repeats` times over `batches` batches of 64 images each."""
    seed_cfg = resolve_config("seed", {"device": device.type})
    best_cfg = resolve_config("seed", {"device": device.type, **BEST_SETTINGS.get(device.type, {})})
    images = batches * 64
    trainers = [
        ("(a) lesson: PIL per sample, DataLoader, .item()", lesson_trainer(data, batches, device)),
        ("(b) ours: same batch and arithmetic", our_trainer(seed_cfg, data, images, device)),
        ("(c) ours: best settings for the device", our_trainer(best_cfg, data, images, device)),
    ]
    evaluators = [
        ("lesson eval loop (batch 128)", lesson_evaluator(data, eval_images, device)),
        (
            "ours (inference_mode, batch 1000)",
            our_evaluator(
                resolve_config("seed", {"device": device.type, "test_batch_size": 1000}), data, eval_images, device
            ),
        ),
    ]
    for _, fn in trainers + evaluators:  # warm-up: allocator, kernels, compilation
        fn()
    train = [Timing(name) for name, _ in trainers]
    evals = [Timing(name) for name, _ in evaluators]
    for r in range(repeats):
        for timing, (_, fn) in zip(train, trainers, strict=True):
            timing.images_per_s.append(timed(fn, device))
        for timing, (_, fn) in zip(evals, evaluators, strict=True):
            timing.images_per_s.append(timed(fn, device))
        log(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{t.images_per_s[-1]:.0f}" for t in train) + " img/s")
    epoch_seconds = full_epoch_seconds(seed_cfg, data, device) if full_epoch else None
    return BenchResult(
        train=train,
        evals=evals,
        matmul_gflops=matmul_gflops(device),
        flops_per_image=training_flops_per_image(AlexNet()),
        best_settings=BEST_SETTINGS.get(device.type, {}),
        device=str(device),
        threads=torch.get_num_threads(),
        epoch_seconds=epoch_seconds,
        n_train=len(data.train),
        n_test=len(data.test),
    )
