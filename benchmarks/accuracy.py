"""Accuracy of a recipe over several seeds, on the real CIFAR-10 test set.

    python benchmarks/accuracy.py --recipe fast --seeds 0 1 2 --data-dir DATA
    python benchmarks/accuracy.py --recipe best --seeds 0 1 2 --data-dir DATA --out runs/accuracy

Each seed is a normal run directory (OUT/RECIPE-seedN, resumable with `alexnet-cifar train
--resume`); the script prints a markdown table: last and peak test accuracy, epochs and seconds
to first reach 70%, seconds per epoch, and the mean and standard deviation over the seeds.
"""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.config import RECIPES, resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10, resolve_data_dir
from alexnet_cifar.errors import UserError
from alexnet_cifar.training.loop import fit
from study import SeedResult, summary_table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="fast", choices=sorted(RECIPES), help="recipe to run (default: fast)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--data-dir", type=Path, help="folder holding cifar-10-batches-py/ (default: $CIFAR10_ROOT)")
    p.add_argument(
        "--out", type=Path, default=Path("runs/accuracy"), help="parent of the run dirs (default: %(default)s)"
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        data = load_cifar10(resolve_data_dir(args.data_dir))
        results = []
        for seed in args.seeds:
            cfg = dataclasses.replace(resolve_config(args.recipe), seed=seed)
            run = RunDir.create(args.out / f"{args.recipe}-seed{seed}", overwrite=True)
            results.append(SeedResult.from_history(seed, fit(cfg, data, run, show_progress=False)))
    except UserError as exc:
        print(f"accuracy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary_table(args.recipe, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
