"""Predictions for the server: each run's model loaded once and shared, and one worker that takes
the waiting requests together as batches (never one model call per request thread)."""

from __future__ import annotations

import asyncio
import base64
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from ..artifacts.checkpoint import load_model
from ..data.cifar10 import CLASSES
from ..data.loader import normalize
from ..inspection.saliency import grad_cam

MAX_BATCH = 32  # images taken from the queue at once
REPLY_WITHIN_S = 120  # a request whose prediction takes longer gets an error instead of waiting for ever
OVERLAY_SIZE = 128  # pixels of the saliency picture sent back


@dataclass
class Models:
    """Each run's weights, loaded on first use and again only when the file changes (a running run);
    used by the batcher's one thread only."""

    device: torch.device
    loaded: dict[Path, tuple[tuple[int, int], nn.Module]] = field(default_factory=dict)

    def get(self, weights: Path) -> nn.Module:
        stat = weights.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self.loaded.get(weights)
        if cached is None or cached[0] != stamp:
            model, _ = load_model(weights, self.device)
            self.loaded[weights] = (stamp, model)
        return self.loaded[weights][1]


def infer(model: nn.Module, images: list[torch.Tensor], device: torch.device) -> list[dict[str, object]]:
    """Top-5 classes and a Grad-CAM overlay (PNG, base64) for each uint8 (3, 32, 32) image."""
    x = normalize(torch.stack(images), memory_format=torch.channels_last).to(device)
    model.eval()
    with torch.no_grad():
        probs = model(x).float().softmax(1).cpu()
    predicted = probs.argmax(1)
    cams = grad_cam(model, x, predicted.to(device))
    results = []
    for image, p, cam in zip(images, probs, cams, strict=True):
        values, indices = p.topk(5)
        top5 = [{"class": CLASSES[i], "probability": v} for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
        results.append({"top5": top5, "saliency_png": overlay_png(image, cam)})
    return results


def overlay_png(image: torch.Tensor, cam: torch.Tensor) -> str:
    """The image with its Grad-CAM map blended over it, enlarged, as base64 PNG."""
    rgb = image.permute(1, 2, 0).numpy().astype(np.float32) / 255
    heat = colormaps["jet"](cam.numpy())[..., :3].astype(np.float32)
    blend = (0.55 * rgb + 0.45 * heat) * 255
    picture = Image.fromarray(blend.round().astype(np.uint8)).resize((OVERLAY_SIZE, OVERLAY_SIZE), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class Batcher:
    """Requests wait in one queue; a single worker takes up to MAX_BATCH of them at a time and runs
    those of the same weights as one batch, in one thread (which alone loads and calls the models),
    so concurrent requests never compete for the model."""

    def __init__(self, models: Models) -> None:
        self.models = models
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.worker: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the latest batches (the tests and the benchmark read it)

    async def predict(self, weights: Path, image: torch.Tensor) -> dict[str, object]:
        if self.worker is None or self.worker.done():  # started on first use, in the server's loop
            self.worker = asyncio.create_task(self.run())
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((weights, image, done))
        return await asyncio.wait_for(done, timeout=REPLY_WITHIN_S)

    async def run(self) -> None:
        while True:
            waiting = [await self.queue.get()]
            while len(waiting) < MAX_BATCH and not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            for weights in dict.fromkeys(w for w, _, _ in waiting):
                await self.run_batch(weights, [(image, done) for w, image, done in waiting if w == weights])

    async def run_batch(self, weights: Path, requests: list[tuple[torch.Tensor, asyncio.Future]]) -> None:
        """One model call for these requests; an error is each request's answer, never the worker's end."""
        self.batches = [*self.batches[-999:], len(requests)]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, self.infer, weights, [image for image, _ in requests])
        except Exception as exc:
            results = [exc] * len(requests)
        for (_, done), result in zip(requests, results, strict=True):
            if done.done():  # its request was cancelled or timed out meanwhile
                continue
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result)

    def infer(self, weights: Path, images: list[torch.Tensor]) -> list[dict[str, object]]:
        return infer(self.models.get(weights), images, self.models.device)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
