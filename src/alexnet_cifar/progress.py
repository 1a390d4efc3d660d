"""Progress bars (tqdm on stderr): off with --quiet and whenever stderr is not a terminal, so logs
and pipes stay clean. The lesson's per-epoch line is printed either way."""

from __future__ import annotations

from tqdm import tqdm

POSTFIX_EVERY = 20  # batches between running-loss updates (each is one read from the device)


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "img") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False,
                disable=None if enabled else True)  # fmt: skip
