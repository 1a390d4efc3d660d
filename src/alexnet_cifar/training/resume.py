"""Resuming a run: its own checkpoint and config, with only the changes a resume allows.

    alexnet-cifar train --resume runs/RUN              # continue where it stopped
    alexnet-cifar train --resume runs/RUN --epochs 30  # extend a finished run

Everything is checked before anything is written: the checkpoint entry by entry (checkpoint.py),
the config changes here, and the data's fingerprint in `train.fit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts.checkpoint import load_checkpoint
from ..artifacts.run_dir import RunDir
from ..config import TrainConfig, resolve_config
from ..errors import UsageError, UserError

# More epochs extend a run; the rest choose the machine it runs on, not the algorithm.
RESUME_MAY_CHANGE = ("epochs", "device", "threads", "amp", "compile", "channels_last", "deterministic")


@dataclass(frozen=True)
class Resume:
    run: RunDir
    state: dict[str, Any]  # the checked checkpoint
    config: TrainConfig  # the run's config with the allowed changes

    @property
    def finished(self) -> bool:
        return self.state["progress"]["epoch"] >= self.config.epochs

    @property
    def data_folder(self) -> Path | None:
        """Where the run's data was (None: synthetic data)."""
        folder = self.state.get("data_folder")
        return Path(folder) if folder is not None else None


def open_resume(run_path: Path, asked: dict[str, Any]) -> Resume:
    """The run in `run_path` ready to continue; `asked` holds the config fields the user gave."""
    run = RunDir.open_existing(run_path)
    state = load_checkpoint(run.last, training=True)
    if "progress" not in state:
        raise UserError(f"{run.last} holds weights only, not a training checkpoint; pass a run directory to --resume")
    return Resume(run, state, resume_config(state["config"], asked))


def resume_config(saved: dict[str, Any], asked: dict[str, Any]) -> TrainConfig:
    """The run's own config, with only the changes a resume allows."""
    cfg = resolve_config(saved["recipe"], saved)
    resolve_config(cfg.recipe, saved, asked)  # unknown keys, bad values (a changed recipe is refused below)
    changed = {k: v for k, v in asked.items() if getattr(cfg, k, None) != v}
    refused = sorted(set(changed) - set(RESUME_MAY_CHANGE))
    if refused:
        key = refused[0]
        raise UsageError(
            f"resuming with {key} = {changed[key]!r}, but the run used {key} = {getattr(cfg, key, None)!r}; "
            f"only {', '.join(RESUME_MAY_CHANGE)} may change on resume: start a new run for other changes"
        )
    if cfg.steps and "epochs" in changed:
        raise UsageError(
            f"this run's length is fixed at {cfg.steps} steps ({cfg.epochs} epochs; a time budget or the steps "
            "field set it), so --epochs cannot extend it: start a new run"
        )
    return resolve_config(cfg.recipe, saved, changed)
