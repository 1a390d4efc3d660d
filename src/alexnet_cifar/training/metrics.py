"""Loss and accuracy accumulated on the device, read back once per epoch (no per-batch host sync)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..device import meter_dtype


class Meter:
    """Sums per-sample loss and correct counts, plus per-batch means for the lesson's averaging."""

    def __init__(self, device: torch.device) -> None:
        # [sum of per-sample loss, correct predictions, sum of batch-mean losses, sum of batch accuracies]
        self.sums = torch.zeros(4, dtype=meter_dtype(device), device=device)
        self.samples = 0
        self.batches = 0

    @torch.no_grad()
    def update(self, mean_loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(labels)
        correct = (logits.argmax(1) == labels).sum().to(self.sums.dtype)
        loss = mean_loss.detach().to(self.sums.dtype)
        self.sums += torch.stack([loss * n, correct, loss, correct / n])
        self.samples += n
        self.batches += 1

    def all_reduce(self) -> Meter:
        """Sum over all processes of a distributed run (no-op in a single process); returns self."""
        from .distributed import all_reduce

        counts = torch.tensor([self.samples, self.batches], dtype=torch.int64, device=self.sums.device)
        all_reduce(self.sums)
        all_reduce(counts)
        self.samples, self.batches = (int(c) for c in counts.tolist())
        return self

    def running_loss(self) -> float:
        """Mean loss so far (one read from the device)."""
        return self.sums[0].item() / max(1, self.samples)

    def finite(self) -> bool:
        """False once any loss was NaN or infinite (reads one value back from the device)."""
        return bool(self.finite_flag())

    def finite_flag(self) -> torch.Tensor:
        """`finite()` left on the device, for an all-reduce that carries it to every rank."""
        return torch.isfinite(self.sums[0])

    def state_dict(self) -> dict[str, object]:
        return {"sums": self.sums.cpu(), "samples": self.samples, "batches": self.batches}

    @classmethod
    def from_state(cls, state: dict[str, object] | None, device: torch.device, ranks: int) -> Meter:
        """A fresh meter, or one continuing a checkpoint's partial epoch on `ranks` processes. The
        per-batch sums hold one mean per rank and batch: saved by another number of ranks, they are
        rescaled to this many, so the lesson's averages stay averages."""
        meter = cls(device)
        if state is not None:
            meter.sums = state["sums"].to(device=device, dtype=meter.sums.dtype)
            meter.samples, meter.batches = state["samples"], state["batches"]
            meter.sums[2:] *= ranks / state.get("ranks", ranks)
        return meter

    def result(self, lesson_metrics: bool = False) -> tuple[float, float]:
        """(loss, accuracy) over all samples, or the lesson's mean of per-batch values."""
        loss_sum, correct, batch_loss, batch_acc = self.sums.tolist()
        if lesson_metrics:
            return batch_loss / self.batches, batch_acc / self.batches
        return loss_sum / self.samples, correct / self.samples


@dataclass(frozen=True)
class EpochRecord:
    """One row of metrics.csv, and the lesson's per-epoch line."""

    epoch: int  # counted from 0, as the lesson does
    train_loss: float
    train_acc: float
    valid_loss: float
    valid_acc: float
    lr: float
    seconds: float  # wall time of the epoch: training plus evaluation
    images_per_s: float  # training images per second

    def lesson_line(self) -> str:
        minutes, secs = divmod(int(self.seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return (
            f"Epoch {self.epoch}. Train Loss: {self.train_loss:f}, Train Acc: {self.train_acc:f}, "
            f"Valid Loss: {self.valid_loss:f}, Valid Acc: {self.valid_acc:f}, "
            f"Time {hours:02d}:{minutes:02d}:{secs:02d}"
        )

    def to_row(self) -> dict[str, float | int]:
        return asdict(self)
