"""The lesson's own printed run (20 epochs, per-batch averages, one GPU), drawn beside ours in reports.

lesson_run.txt beside this file holds the lesson's printout as it was published, line for line.
"""

from __future__ import annotations

import re
from importlib import resources

_LINE = re.compile(
    r"Epoch (\d+)\. Train Loss: ([\d.]+), Train Acc: ([\d.]+), Valid Loss: ([\d.]+), Valid Acc: ([\d.]+)"
)
_COLUMNS = ("train_loss", "train_acc", "valid_loss", "valid_acc")  # keyed like metrics.csv


def read_lesson_run() -> dict[str, list[float]]:
    """The printout as one list per column, epochs in order."""
    text = resources.files(__package__).joinpath("lesson_run.txt").read_text(encoding="utf-8")
    rows = [_LINE.match(line).groups() for line in text.splitlines() if line.strip()]
    assert [int(r[0]) for r in rows] == list(range(len(rows))), "lesson_run.txt: epochs out of order"
    return {key: [float(r[i + 1]) for r in rows] for i, key in enumerate(_COLUMNS)}


LESSON_HISTORY = read_lesson_run()
