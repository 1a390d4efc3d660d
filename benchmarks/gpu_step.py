"""Where a training step of the lesson's network goes on one GPU: eager, compiled, CUDA graphs.

    python3 benchmarks/gpu_step.py      # a CUDA machine, from the repository root; about a minute

Times bare training steps (random images already on the GPU, no loader, no metrics) of the
lesson's network with Nesterov SGD: eager in float32 and bf16 autocast, the whole step (forward,
backward, SGD) captured once as a CUDA graph and replayed, and torch.compile's default and
reduce-overhead modes, at batch 64 (the lesson's) and 512. A step this small is bound by kernel
launches, not arithmetic: the gap between eager and the replayed graph is what launching costs.
Results in docs/RESULTS.md ("GPU").
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, "src")  # the package, with or without it installed
from alexnet_cifar.model import AlexNet

N = 50_000  # images in an epoch (CIFAR-10's training set)
Step = Callable[[int], None]


def make(device: torch.device) -> tuple[AlexNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = AlexNet().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=True)
    return model, opt


def timeit(name: str, make_step: Callable[[], Step], batch: int, steps: int = 400, warm: int = 40) -> None:
    try:  # one variant failing must not end the probe
        step = make_step()
        for i in range(warm):
            step(i)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        torch.cuda.synchronize()
    except Exception as exc:
        print(f"{name}: failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
        return
    dt = (time.perf_counter() - start) / steps
    epoch = dt * (N // batch + 1)
    print(
        f"{name:40s} batch {batch:4d}: {dt * 1e3:6.3f} ms/step {batch / dt:9.0f} img/s"
        f"  epoch {epoch:5.2f} s  20 epochs {20 * epoch:6.1f} s",
        flush=True,
    )


def plain(data: torch.Tensor, labels: torch.Tensor, batch: int, bf16: bool, compile_mode: str | None = None) -> Step:
    """An ordinary step: each kernel launched from Python."""
    model, opt = make(data.device)
    forward = torch.compile(model, mode=compile_mode) if compile_mode else model

    def step(i: int) -> None:
        j = (i * batch) % (N - batch)
        with torch.autocast("cuda", torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(data[j : j + batch]), labels[j : j + batch])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def graphed(data: torch.Tensor, labels: torch.Tensor, batch: int, bf16: bool) -> Step:
    """The whole step (zeroing the gradients, forward, backward, SGD) captured once and replayed:
    no per-kernel launch cost. Each step copies its batch into the graph's static input."""
    model, opt = make(data.device)
    params = list(model.parameters())
    sx, sy = data[:batch].clone(), labels[:batch].clone()

    def body() -> None:
        if params[0].grad is not None:
            torch._foreach_zero_([p.grad for p in params])
        with torch.autocast("cuda", torch.bfloat16, enabled=bf16, cache_enabled=False):  # no cache under capture
            loss = F.cross_entropy(model(sx), sy)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graph's documentation asks
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(5):
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()

    def step(i: int) -> None:
        j = (i * batch) % (N - batch)
        sx.copy_(data[j : j + batch])
        sy.copy_(labels[j : j + batch])
        graph.replay()

    return step


def main() -> None:
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    data = torch.randn(N, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (N,), device=device)
    print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
    for b in (64, 512):
        timeit("eager fp32", lambda b=b: plain(data, labels, b, False), b)
        timeit("eager bf16", lambda b=b: plain(data, labels, b, True), b)
        timeit("CUDA graph of the whole step, fp32", lambda b=b: graphed(data, labels, b, False), b)
        timeit("CUDA graph of the whole step, bf16", lambda b=b: graphed(data, labels, b, True), b)
    for mode, bf16 in (("default", True), ("reduce-overhead", True), ("reduce-overhead", False)):
        start = time.perf_counter()
        name = f"compile {mode} {'bf16' if bf16 else 'fp32'}"
        timeit(name, lambda mode=mode, bf16=bf16: plain(data, labels, 64, bf16, mode), 64)
        print(f"  (with compilation: {time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
