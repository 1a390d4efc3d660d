"""Training: the lesson's loop on device-resident batches, printing the lesson's per-epoch line.

alexnet-cifar train                      # the lesson's recipe, 20 epochs
alexnet-cifar train --epochs 1 --data-dir ../data
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from .checkpoint import save_checkpoint, save_weights
from .config import TrainConfig
from .data import CIFAR10
from .errors import UsageError
from .evaluate import evaluate
from .loader import Augment, DeviceLoader
from .metrics import EpochRecord, Meter
from .model import AlexNet
from .run_dir import RunDir

log = logging.getLogger("alexnet_cifar")


def select_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; asking for one that is absent is an error."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(d for d, ok in available.items() if ok))
    if not available.get(name, False):
        have = ", ".join(d for d, ok in available.items() if ok)
        raise UsageError(f"device {name!r} is not available on this machine; use --device auto or one of: {have}")
    return torch.device(name)


def build_model(cfg: TrainConfig, device: torch.device) -> nn.Module:
    torch.manual_seed(cfg.seed)  # the same initial weights on every run of a seed
    model = AlexNet().to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD; weight decay applies to weight matrices and kernels only, never to biases."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def train_one_epoch(
    model: nn.Module, loader: DeviceLoader, optimizer: torch.optim.Optimizer, criterion: nn.Module
) -> Meter:
    model.train()
    meter = Meter(loader.device)
    for images, labels in loader:
        logits = model(images)
        loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        meter.update(loss, logits, labels)
    return meter


def make_loaders(cfg: TrainConfig, data: CIFAR10, device: torch.device) -> tuple[DeviceLoader, DeviceLoader]:
    train = DeviceLoader(
        data.train.images,
        data.train.labels,
        cfg.batch_size,
        shuffle=True,
        augment=Augment(cfg.crop_padding, cfg.flip),
        seed=cfg.seed,
        device=device,
        channels_last=cfg.channels_last,
    )
    test = DeviceLoader(
        data.test.images, data.test.labels, cfg.test_batch_size, device=device, channels_last=cfg.channels_last
    )
    return train, test


def fit(cfg: TrainConfig, data: CIFAR10, run: RunDir) -> list[EpochRecord]:
    """Train `cfg` on `data`, logging the lesson's line per epoch; returns every epoch's record."""
    device = select_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run.write_config(cfg.to_dict(), device)
    handler = run.attach_log()
    try:
        return _fit(cfg, data, run, device)
    finally:
        log.removeHandler(handler)
        handler.close()


def _fit(cfg: TrainConfig, data: CIFAR10, run: RunDir, device: torch.device) -> list[EpochRecord]:
    model = build_model(cfg, device)
    optimizer = build_optimizer(cfg, model)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    train_loader, test_loader = make_loaders(cfg, data, device)
    log.info(data.summary())
    log.info(f"training recipe {cfg.recipe!r} on {device} for {cfg.epochs} epochs; run directory {run.path}")
    history = []
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        train_loader.set_epoch(epoch)
        train = train_one_epoch(model, train_loader, optimizer, criterion)
        train_loss, train_acc = train.result(cfg.lesson_metrics)  # the epoch's one host sync
        train_seconds = time.perf_counter() - start
        valid_loss, valid_acc = evaluate(model, test_loader, criterion).result(cfg.lesson_metrics)
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            train_acc=train_acc,
            valid_loss=valid_loss,
            valid_acc=valid_acc,
            lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - start,
            images_per_s=train.samples / train_seconds,
        )
        log.info(record.lesson_line())
        run.append_metrics(record)
        save_checkpoint(
            run.last,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epochs_done": epoch + 1,
                "config": cfg.to_dict(),
            },
        )
        history.append(record)
    save_weights(run.weights, model)
    log.info(f"final weights: {run.weights}")
    return history
