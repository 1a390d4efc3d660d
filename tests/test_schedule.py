"""Mechanics of the accuracy techniques: lr schedules, the weight average, flip TTA, Nesterov."""

import itertools
import math

import pytest
import torch

from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.data.loader import DeviceLoader, Sampling
from alexnet_cifar.training.epoch import train_one_epoch
from alexnet_cifar.training.schedule import lr_factor
from alexnet_cifar.training.trainer import build_trainer


def test_linear_schedule_with_warmup_is_a_one_cycle():
    factors = [lr_factor(s, total_steps=100, warmup_steps=10, kind="linear", final=0.0) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # warm-up reaches the peak
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.5)
    assert factors[99] == pytest.approx(1 / 90)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_cosine_and_constant_and_final_fraction():
    assert lr_factor(0, 100, 0, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(50, 100, 0, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 0, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(75, 100, 0, "cosine", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_factor(100, 100, 0, "linear", 0.2) == pytest.approx(0.2)
    assert [lr_factor(s, 100, 0, "constant", 0.0) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert lr_factor(4, 100, 10, "constant", 0.0) == pytest.approx(0.5)


def test_scheduler_steps_once_per_batch(fake_root):
    data = load_cifar10(fake_root)  # 100 train images
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 10, "lr": 0.1, "schedule": "linear", "device": "cpu"})
    loader = DeviceLoader(data.train.images, data.train.labels, cfg.batch_size, sampling=Sampling(shuffle=True))
    trainer = build_trainer(cfg, torch.device("cpu"), len(loader))
    seen = []
    for _ in range(10):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        train_one_epoch(trainer, loader, max_batches=1)
    assert seen == pytest.approx([0.1 * (1 - s / 20) for s in range(10)])


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_decay_to_a_final_fraction_starts_at_the_peak_and_passes_the_midpoint(kind):
    """With final_lr = 0.2: the peak right after warm-up, (1 + 0.2) / 2 half-way, 0.2 at the end."""
    assert lr_factor(10, 110, 10, kind, 0.2) == pytest.approx(1.0)
    assert lr_factor(60, 110, 10, kind, 0.2) == pytest.approx(0.6)
    assert lr_factor(110, 110, 10, kind, 0.2) == pytest.approx(0.2)


def test_warm_up_lasts_warmup_epochs_of_steps():
    cfg = resolve_config("seed", {"epochs": 4, "lr": 0.1, "schedule": "linear", "warmup_epochs": 1.5})
    trainer = build_trainer(cfg, torch.device("cpu"), 10)  # 10 steps per epoch: 15 steps of warm-up
    lrs = []
    for _ in range(40):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()  # no gradients: nothing moves, but the order is the real one
        trainer.scheduler.step()
    assert lrs[0] == pytest.approx(0.1 / 15) and lrs[14] == pytest.approx(0.1)  # the peak at step 14
    assert lrs[15] == pytest.approx(0.1) and lrs[39] == pytest.approx(0.1 / 25)


def test_a_frozen_conv1_gets_lr_0_for_its_epochs_then_the_others_lr_from_the_first_step_after():
    cfg = resolve_config("seed", {"whiten_freeze_epochs": 1.0})  # constant lr 0.1, no warm-up
    trainer = build_trainer(cfg, torch.device("cpu"), steps_per_epoch=10)
    lrs = []
    for _ in range(12):
        lrs.append([g["lr"] for g in trainer.optimizer.param_groups])  # the lr of the step about to be taken
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert all(step[2] == 0.0 for step in lrs[:10])  # conv1's group, held for its one epoch of 10 steps
    assert lrs[10] == lrs[11] == [cfg.lr] * 3  # then at the others' lr from step 10 on
