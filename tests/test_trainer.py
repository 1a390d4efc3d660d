"""The trainer: what one optimizer step touches, built from a config."""

import pytest
import torch

from alexnet_cifar.config import resolve_config
from alexnet_cifar.errors import UsageError
from alexnet_cifar.model import AlexNet
from alexnet_cifar.training.trainer import build_optimizer, build_trainer, peak_lr


def test_nesterov_and_lr_scaling():
    cfg = resolve_config("seed", {"momentum": 0.9, "nesterov": True, "batch_size": 256, "lr": 0.01, "scale_lr": True})
    trainer = build_trainer(cfg, torch.device("cpu"), 10)
    group = trainer.optimizer.param_groups[0]
    assert group["nesterov"] and group["momentum"] == 0.9 and peak_lr(cfg) == pytest.approx(0.04)
    with pytest.raises(UsageError, match="nesterov"):
        resolve_config("seed", {"nesterov": True})
    with pytest.raises(UsageError, match="schedule"):
        resolve_config("seed", {"schedule": "exponential"})
    with pytest.raises(UsageError, match="warmup_epochs"):
        resolve_config("seed", {"warmup_epochs": 30})


def test_weight_decay_skips_biases():
    cfg = resolve_config("seed", {"weight_decay": 5e-4, "momentum": 0.9})
    groups = build_optimizer(cfg, AlexNet()).param_groups
    assert groups[0]["weight_decay"] == 5e-4 and all(p.dim() > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.dim() == 1 for p in groups[1]["params"])
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == 10
