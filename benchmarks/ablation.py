"""The ablation ladder: from the lesson's `seed` recipe to `best`, one technique per rung.

    python benchmarks/ablation.py --data-dir DATA --out runs/ablation
    python benchmarks/ablation.py --data-dir DATA --rungs 0 1 2   # some rungs only

Each rung is a normal run directory (OUT/rungN); a rung whose metrics.csv already holds all its
epochs is read back instead of trained again, so an interrupted ladder picks up where it stopped.
The rungs are listed in `study.LADDER` (benchmarks/study.py); the script prints a markdown table with each
rung's last and peak test accuracy, its gain over the rung above, seconds to 70% and per epoch.
"""

import argparse
import logging
import sys
from pathlib import Path

from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.data.cifar10 import load_cifar10, resolve_data_dir
from alexnet_cifar.errors import UserError
from alexnet_cifar.training.loop import fit
from study import LADDER, SeedResult, ladder_configs, ladder_table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="folder holding cifar-10-batches-py/ (default: $CIFAR10_ROOT)")
    p.add_argument(
        "--out", type=Path, default=Path("runs/ablation"), help="parent of the run dirs (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every rung (default: %(default)s)")
    p.add_argument("--rungs", type=int, nargs="+", help=f"rungs to run, 0..{len(LADDER) - 1} (default: all)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    rungs = list(enumerate(ladder_configs(args.seed)))
    if args.rungs:
        rungs = [rungs[i] for i in args.rungs]
    try:
        data = load_cifar10(resolve_data_dir(args.data_dir))
        rows = []
        for i, (label, cfg) in rungs:
            path = args.out / f"rung{i}"
            history = RunDir(path).history()
            if len(history) != cfg.epochs:  # not run yet, or stopped part way: train it afresh
                history = fit(cfg, data, RunDir.create(path, overwrite=True), show_progress=False)
            rows.append((f"{i}. {label}", SeedResult.from_history(args.seed, history)))
            print(ladder_table(rows), flush=True)
    except UserError as exc:
        print(f"ablation: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
