"""Load on `alexnet-cifar serve`: predictions per second and latency for 1, 8 and 32 concurrent
clients on loopback, against calling predict in-process on the same images.

    python benchmarks/serve_load.py runs/RUN [--requests 96]

Each client sends one 32x32 PNG per request, back to back, until the bounded number of requests
is done; the server runs in this process's thread on a free loopback port (uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from PIL import Image

from alexnet_cifar.artifacts.checkpoint import load_model
from alexnet_cifar.serve.app import create_app
from alexnet_cifar.serve.predictor import infer


def image_bytes(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (i * 37 % 256, i * 91 % 256, 80)).save(buffer, format="PNG")
    return buffer.getvalue()


async def load(port: int, run: str, clients: int, requests: int) -> tuple[float, list[float]]:
    """(requests per second, each request's seconds) for `clients` clients sharing `requests`."""
    latencies: list[float] = []
    left = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for i in left:
            start = time.perf_counter()
            reply = await http.post("/api/predict", data={"run": run}, files={"files": ("x.png", image_bytes(i))})
            reply.raise_for_status()
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return requests / (time.perf_counter() - start), latencies


def in_process(weights: Path, requests: int) -> float:
    """Predictions per second calling the server's own inference function directly, one image each."""
    model, _ = load_model(weights, torch.device("cpu"))
    pictures = [np.asarray(Image.open(io.BytesIO(image_bytes(i)))) for i in range(requests)]
    images = [torch.from_numpy(p.copy()).permute(2, 0, 1) for p in pictures]
    start = time.perf_counter()
    for image in images:
        infer(model, [image], torch.device("cpu"))
    return requests / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run directory with model.pt")
    p.add_argument("--requests", type=int, default=96, help="requests per level of concurrency (default: 96)")
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(args.run.parent)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    print(
        f"in-process infer(), one image per call: {in_process(args.run / 'model.pt', args.requests):.1f} predictions/s"
    )
    print("| clients | predictions/s | p50 latency ms | p99 latency ms | mean batch |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for clients in (1, 8, 32):
        asyncio.run(load(port, args.run.name, clients, 8))  # warm-up
        app.state.batcher.batches.clear()
        rate, latencies = asyncio.run(load(port, args.run.name, clients, args.requests))
        q = statistics.quantiles(latencies, n=100)
        mean_batch = statistics.mean(app.state.batcher.batches)
        print(f"| {clients} | {rate:.1f} | {q[49] * 1000:.0f} | {q[98] * 1000:.0f} | {mean_batch:.1f} |")
    server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
