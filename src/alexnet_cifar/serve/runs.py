"""The runs a server shows: the run directories directly under RUNS_DIR, found by listing it, so a
request names a run only by an id from that listing, never by a path."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..artifacts.run_dir import RunDir, foreign_reason
from ..errors import UserError

RUNNING_WITHIN_S = 120  # a run whose train.log changed this recently and is not finished is running


@dataclass(frozen=True)
class RunSummary:
    id: str  # the folder's name under RUNS_DIR
    recipe: str
    status: str  # running, finished or stopped
    epochs_done: int
    epochs: int
    last_acc: float | None
    best_acc: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def list_runs(root: Path) -> dict[str, RunDir]:
    """id -> run, for every folder directly under `root` that is a run directory of this tool."""
    if not root.is_dir():
        return {}
    return {p.name: RunDir(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.is_symlink() and is_run(p)}


def is_run(path: Path) -> bool:
    try:
        return foreign_reason(path) is None
    except OSError:
        return False


def summarise_run(run_id: str, run: RunDir) -> RunSummary:
    try:
        config = run.read_info().get("config", {})
        history = run.history()
    except UserError:
        config, history = {}, []
    epochs = int(config.get("epochs") or 0)
    accs = [r.valid_acc for r in history]
    if history and len(history) >= epochs:
        status = "finished"
    else:
        recent = run.log_file.exists() and time.time() - run.log_file.stat().st_mtime < RUNNING_WITHIN_S
        status = "running" if recent else "stopped"
    last = accs[-1] if accs else None
    return RunSummary(
        run_id, str(config.get("recipe", "?")), status, len(history), epochs, last, max(accs, default=None)
    )
