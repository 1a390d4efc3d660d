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
    # hidden folders are not shown: --overwrite keeps the run it replaces as .NAME.replaced-PID for a while
    folders = [p for p in sorted(root.iterdir()) if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()]
    return {p.name: RunDir(p) for p in folders if is_run(p)}


def is_run(path: Path) -> bool:
    try:
        return foreign_reason(path) is None
    except OSError:
        return False


def summarise_run(run_id: str, run: RunDir) -> RunSummary:
    """The run's numbers; damaged files make it a run with nothing to show, not an error."""
    try:
        config = run.read_info().get("config", {})
        history = run.history()
    except (UserError, OSError):
        config, history = {}, []
    epochs = config.get("epochs") if isinstance(config.get("epochs"), int) else 0
    accs = [r.valid_acc for r in history]
    last = accs[-1] if accs else None
    recipe = str(config.get("recipe", "?"))
    return RunSummary(run_id, recipe, status(run, history, epochs), len(history), epochs, last, max(accs, default=None))


def status(run: RunDir, history: list, epochs: int) -> str:
    """finished: every epoch recorded and the final weights written; running: a file of the run
    changed within RUNNING_WITHIN_S or three epochs' time; stopped otherwise."""
    if history and len(history) >= epochs and run.weights.exists():
        return "finished"
    epoch_s = max((r.seconds for r in history), default=0.0)
    try:
        changed = max(p.stat().st_mtime for p in (run.log_file, run.metrics, run.last) if p.exists())
    except (ValueError, OSError):  # no file yet, or one vanished meanwhile
        return "stopped"
    return "running" if time.time() - changed < max(RUNNING_WITHIN_S, 3 * epoch_s) else "stopped"
