import re

import torch

from alexnet_cifar.training.metrics import EpochRecord, Meter

LESSON_LINE = re.compile(
    r"^Epoch \d+\. Train Loss: \d+\.\d{6}, Train Acc: \d\.\d{6}, "
    r"Valid Loss: \d+\.\d{6}, Valid Acc: \d\.\d{6}, Time \d\d:\d\d:\d\d$"
)


def test_meter_per_sample_and_lesson_averages():
    meter = Meter(torch.device("cpu"))
    batches = [
        (torch.tensor(1.0), torch.eye(10)[:4], torch.tensor([0, 1, 2, 9])),  # 3 of 4 correct
        (torch.tensor(3.0), torch.eye(10)[:1], torch.tensor([5])),
    ]  # 0 of 1 correct
    for loss, logits, labels in batches:
        meter.update(loss, logits, labels)
    loss, acc = meter.result()
    assert abs(loss - (1.0 * 4 + 3.0 * 1) / 5) < 1e-12 and abs(acc - 3 / 5) < 1e-12
    lesson_loss, lesson_acc = meter.result(lesson_metrics=True)
    assert abs(lesson_loss - 2.0) < 1e-12 and abs(lesson_acc - (0.75 + 0.0) / 2) < 1e-12


def test_lesson_line_format():
    record = EpochRecord(
        epoch=0,
        train_loss=1.705926,
        train_acc=0.37452,
        valid_loss=1.53023,
        valid_acc=0.450257,
        lr=0.1,
        seconds=3723.9,
        images_per_s=1000.0,
    )
    line = record.lesson_line()
    assert line == (
        "Epoch 0. Train Loss: 1.705926, Train Acc: 0.374520, Valid Loss: 1.530230, Valid Acc: 0.450257, Time 01:02:03"
    )
    assert LESSON_LINE.match(line)


def test_running_loss_is_the_mean_per_image_so_far():
    meter = Meter(torch.device("cpu"))
    assert meter.running_loss() == 0.0  # before any batch: no division by zero
    meter.update(torch.tensor(3.0), torch.eye(10)[:1], torch.arange(1))
    assert meter.running_loss() == 3.0
    meter.update(torch.tensor(2.0), torch.eye(10)[:4], torch.arange(4))
    assert abs(meter.running_loss() - (3.0 + 2.0 * 4) / 5) < 1e-12


def test_a_partial_epoch_saved_by_two_ranks_continues_on_one_with_true_lesson_averages():
    """Two ranks stopped after 6 batches each: the saved per-batch sums hold 12 means. Resumed in one
    process, they count as 6 batches' worth, so a run whose every batch has loss 2 and accuracy 1
    still averages to exactly that (unscaled, it would be 12 / 10 of it)."""
    cpu = torch.device("cpu")
    saved = {"sums": torch.tensor([2.0 * 384, 384, 2.0 * 12, 12], dtype=torch.float64), "samples": 384}
    meter = Meter.from_state({**saved, "batches": 12, "ranks": 2}, cpu, ranks=1)
    meter.batches = 6  # this process's place in the epoch
    logits = torch.eye(10)[torch.arange(32) % 10] * 5  # all right
    for _ in range(4):
        meter.update(torch.tensor(2.0), logits, torch.arange(32) % 10)
    assert meter.result(lesson_metrics=True) == (2.0, 1.0)
    assert meter.result() == (2.0, 1.0)
    same = Meter.from_state({**saved, "batches": 12, "ranks": 2}, cpu, ranks=2)
    assert torch.equal(same.sums, saved["sums"])  # the same number of ranks: nothing to rescale


def test_saved_sums_take_the_devices_precision(monkeypatch):
    """float64 sums from a CPU checkpoint continue as float32 where the device has no float64 (MPS)."""
    from alexnet_cifar.training import metrics

    saved = {"sums": torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64), "samples": 8, "batches": 2}
    monkeypatch.setattr(metrics, "meter_dtype", lambda device: torch.float32)
    meter = Meter.from_state(saved, torch.device("cpu"), ranks=1)
    assert meter.sums.dtype == torch.float32 and meter.sums.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert (meter.samples, meter.batches) == (8, 2)
    older = Meter.from_state(saved, torch.device("cpu"), ranks=2)  # a checkpoint from before "ranks" was saved
    assert older.sums.tolist() == [1.0, 2.0, 3.0, 4.0]  # taken as this many ranks': nothing rescaled
