"""Validation accuracy of finished runs with no TTA, the mirror, and the mirror plus shifted views.

    python benchmarks/tta_views.py runs/frontier/fast-epochs-s0 runs/frontier/best-300s-s0 --data-dir DATA

Reads each run's model.pt and evaluates it on the 5,000-image validation split the frontier runs
held out (never the test set), in batches of 256 under bf16 autocast, timing each pass.
"""

import argparse
import time
from pathlib import Path

import torch

from alexnet_cifar.artifacts.model_file import load_inference_model
from alexnet_cifar.data.cifar10 import hold_out, load_cifar10, resolve_data_dir
from alexnet_cifar.data.loader import DeviceLoader
from alexnet_cifar.inference.evaluate import evaluate

VIEWS = {"none": (False, 0), "mirror": (True, 0), "shift 1": (True, 1), "shift 2": (True, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories holding model.pt")
    p.add_argument("--data-dir", type=Path, help="folder holding cifar-10-batches-py/ (default: $CIFAR10_ROOT)")
    p.add_argument("--valid-split", type=int, default=5000, help="the runs' split (default: %(default)s)")
    args = p.parse_args()
    split = hold_out(load_cifar10(resolve_data_dir(args.data_dir)), args.valid_split).test
    loader = DeviceLoader(split.images, split.labels, 256, channels_last=True)
    for run in args.runs:
        model, _ = load_inference_model(run / "model.pt", "cpu")
        cells = []
        for name, (tta, shift) in VIEWS.items():
            start = time.perf_counter()
            meter = evaluate(
                model, loader, torch.nn.CrossEntropyLoss(), autocast=torch.bfloat16, tta=tta, tta_shift=shift
            )
            cells.append(f"{name} {100 * meter.result()[1]:.2f} ({time.perf_counter() - start:.1f} s)")
        print(f"{run.name}: " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
