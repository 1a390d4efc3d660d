"""The ablation ladder: from the lesson's `seed` recipe to `best`, one technique per rung, over seeds.

    python benchmarks/ablation.py --data-dir DATA --seeds 0 1 2          # every rung, three seeds
    python benchmarks/ablation.py --data-dir DATA --rungs 0 1 --seeds 0   # some rungs only

Like benchmarks/frontier.py, every run holds out the same 5,000 training images for its Valid
columns and best.pt, reads the test set once at its end, and leaves a JSON summary in docs/runs/
(ladder-rungN-sS.json); `python benchmarks/tables.py write` makes the ladder's table from them, each
rung's gain over the rung above as a difference paired by seed, with its 95% interval and p-value.
A rung and seed already recorded is not trained again (so an interrupted ladder goes on where it
stopped), and neither is one whose exact config another recorded run already trained (the last
rung is `best` itself: frontier.py's `best` runs are its runs). The rungs: `study.LADDER`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from alexnet_cifar.config import TrainConfig
from alexnet_cifar.data.cifar10 import load_cifar10, resolve_data_dir
from alexnet_cifar.errors import UserError
from frontier import SPLIT, SUMMARIES, read_summaries, run_config
from study import LADDER, ladder_configs


def command(rung: int, seed: int) -> str:
    return f"python benchmarks/ablation.py --data-dir DATA --rungs {rung} --seeds {seed}"


def recorded(cfg_dict: dict, summaries: list[dict]) -> dict | None:
    """A recorded run of exactly this config (same seed, same split), if there is one. The recipe's
    name is only where the fields started (the last rung starts from `seed` and equals `best`), and a
    field newer than a run had its default's behaviour there."""
    fields = {**cfg_dict, "recipe": None}
    defaults = TrainConfig().to_dict()
    same = (s for s in summaries if not s.get("same_as") and {**defaults, **s["config"], "recipe": None} == fields)
    return next(same, None)


def run_rung(data, rung: int, seed: int, out: Path) -> dict:
    """Rung `rung` with `seed`: its summary, trained now or found among the recorded runs."""
    label, cfg = ladder_configs(seed, valid_split=SPLIT)[rung]
    name = f"ladder-rung{rung}-s{seed}"
    mine = SUMMARIES / f"{name}.json"
    if mine.exists():
        kept = json.loads(mine.read_text())
        if recorded(cfg.to_dict(), [{**kept, "same_as": None}]):
            return kept
        print(f"{mine.name} holds another config (study.LADDER changed?): this rung is run again", flush=True)
    same = recorded(cfg.to_dict(), read_summaries())
    if same is not None:  # e.g. the last rung is a `best` run: the same run, not a new one
        summary = {**same, "name": name, "variant": f"rung{rung}", "same_as": same["name"]}
    else:
        summary = run_config(cfg, data, out / name, f"rung{rung}", command(rung, seed))
    summary["ladder"] = {"rung": rung, "label": label}
    mine.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="folder holding cifar-10-batches-py/ (default: $CIFAR10_ROOT)")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"), help="run dirs (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: 0 1 2)")
    last = len(LADDER) - 1
    p.add_argument(
        "--rungs", type=int, nargs="+", choices=range(last + 1), metavar="N", help=f"0..{last} (default: all)"
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        data = load_cifar10(resolve_data_dir(args.data_dir))
        for seed in args.seeds:  # a whole ladder per seed: each finished seed is a complete comparison
            for rung in args.rungs or range(len(LADDER)):
                s = run_rung(data, rung, seed, args.out)
                print(f"{s['name']}: test {s['test_acc']:.4f} in {s['wall_s']:.1f} s", flush=True)
    except UserError as exc:
        print(f"ablation: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
