"""Progress bars (tqdm on stderr), made in one place so --quiet and non-terminal output behave alike
everywhere. The lesson's per-epoch line is printed either way."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

POSTFIX_EVERY = 20  # batches between running-loss updates (each is one read from the device)


def progress_bar(total: int | None, desc: str, enabled: bool = True, unit: str = "img", **options: Any) -> tqdm:
    """A tqdm bar; `options` go to tqdm as they are (e.g. `iterable`, `leave`, `unit_scale`).

    `enabled=False` (--quiet) turns it off; otherwise disable=None lets tqdm turn it off when stderr
    is not a terminal, so logs and pipes stay clean.
    """
    options = {"unit_scale": True, "leave": False, **options}
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, **options)
