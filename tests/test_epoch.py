"""How an epoch ends: the checks between batches, alone and across ranks, and a partial epoch."""

import torch

from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.training.epoch import STOP_CHECK_EVERY, Outcome, agreed_check, local_check, train_one_epoch
from alexnet_cifar.training.metrics import Meter
from alexnet_cifar.training.trainer import build_trainer, make_loaders

from .conftest import write_fake_cifar


def test_a_stop_never_saves_a_non_finite_meter():
    """A stop comes between the loss checks (every 50 batches): when it does, the loss is checked
    too, since the stop saves the epoch's sums. Under float16 the weights can stay finite after a
    non-finite loss (the scaler skips that step), so the weights alone would not tell."""
    meter = Meter(torch.device("cpu"))
    check = local_check(lambda: True)
    assert check(meter, 3, False) is Outcome.STOPPED
    assert check(meter, 3, True) is None  # the epoch's last batch: it ends, the next epoch stops
    meter.sums[0] = float("nan")
    assert check(meter, 3, False) is Outcome.DIVERGED
    assert local_check(lambda: False)(meter, 3, False) is None  # between checks, with no stop
    assert local_check(lambda: False)(meter, 49, False) is Outcome.DIVERGED


def test_the_ranks_check_every_ten_batches_and_at_the_end_for_both_flags():
    """agreed_check's rules, in one process (its all-reduce is then the identity): it looks only at
    every STOP_CHECK_EVERY-th batch and the last; a non-finite loss wins over a stop; a stop at the
    last batch waits for the next epoch."""
    cpu = torch.device("cpu")
    meter, asked = Meter(cpu), []
    check = agreed_check(lambda: asked.append(1) or True, cpu)
    assert [check(meter, b, False) for b in range(STOP_CHECK_EVERY)] == [None] * 9 + [Outcome.STOPPED]
    assert len(asked) == 1  # the signal flag is read only when the ranks meet
    assert check(meter, 3, True) is None  # the last batch: the epoch ends, the next one stops
    meter.sums[0] = float("inf")
    assert check(meter, 4, False) is None  # between meetings nothing is read
    assert check(meter, 19, False) is Outcome.DIVERGED
    assert agreed_check(lambda: False, cpu)(meter, 7, True) is Outcome.DIVERGED


def test_max_batches_ends_the_epoch_early_and_counts_what_it_trained(tmp_path):
    data = load_cifar10(write_fake_cifar(tmp_path / "data", per_batch=40, n_test=10))  # 13 batches of 16
    cfg = resolve_config("seed", {"batch_size": 16, "lr": 0.02, "device": "cpu", "channels_last": False})
    cpu = torch.device("cpu")
    train, _ = make_loaders(cfg, data, cpu)
    trainer = build_trainer(cfg, cpu, len(train))
    result = train_one_epoch(trainer, train, start=2, max_batches=5)
    assert result.outcome is Outcome.FINISHED and result.meter.batches == 5 and result.meter.samples == 80
    assert trainer.scheduler.last_epoch == 5  # five optimizer steps
    rest = train_one_epoch(trainer, train, start=7)
    assert rest.meter.batches == 6 and rest.meter.samples == 200 - 7 * 16
    assert train_one_epoch(trainer, train).meter.samples == 200  # from the first batch by default


def test_the_forward_runs_under_the_trainers_autocast(tmp_path):
    from alexnet_cifar.device import choose_policy

    data = load_cifar10(write_fake_cifar(tmp_path / "data", per_batch=8, n_test=10))
    cfg = resolve_config("seed", {"batch_size": 16, "device": "cpu", "amp": "bf16"})
    cpu = torch.device("cpu")
    train, _ = make_loaders(cfg, data, cpu)
    trainer = build_trainer(cfg, cpu, len(train), policy=choose_policy(cpu, "bf16", False, False))
    seen = []
    trainer.model.fc3.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    train_one_epoch(trainer, train, max_batches=1)
    assert seen == [torch.bfloat16]


class RecordingBar:
    """A progress bar that keeps what it was told (tqdm draws only on a terminal, which tests lack)."""

    disable = False

    def __init__(self) -> None:
        self.updates: list[int] = []
        self.postfixes: list[tuple[int, dict, bool]] = []

    def update(self, n: int) -> None:
        self.updates.append(n)

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfixes.append((len(self.updates), values, refresh))


def test_the_bar_counts_images_and_shows_the_running_loss_every_20_batches(tmp_path):
    from alexnet_cifar.progress import POSTFIX_EVERY

    data = load_cifar10(write_fake_cifar(tmp_path / "data", per_batch=85, n_test=10))  # 425 = 53 x 8 + 1
    cfg = resolve_config("seed", {"batch_size": 8, "lr": 0.02, "device": "cpu"})
    cpu = torch.device("cpu")
    train, _ = make_loaders(cfg, data, cpu)
    trainer = build_trainer(cfg, cpu, len(train))
    losses = []
    trainer.criterion.register_forward_hook(lambda module, args, out: losses.append(out.item()))
    bar = RecordingBar()
    train_one_epoch(trainer, train, bar=bar)
    assert bar.updates == [8] * 53 + [1]  # images, the short last batch too
    assert POSTFIX_EVERY == 20 and [(n, refresh) for n, _, refresh in bar.postfixes] == [(20, False), (40, False)]
    for n, values, _ in bar.postfixes:  # the mean loss of the images so far (batches of 8), to 3 decimals
        assert values == {"loss": f"{sum(losses[:n]) / n:.3f}"}
    bar.disable = True  # --quiet, or no terminal: nothing is counted (nor read from the device)
    train_one_epoch(trainer, train, bar=bar)
    assert len(bar.updates) == 54 and len(bar.postfixes) == 2
