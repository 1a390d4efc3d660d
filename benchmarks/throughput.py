"""Throughput benchmark: the lesson's input pipeline and loop against ours, in one process.

    python benchmarks/throughput.py --data-dir DIR          # = alexnet-cifar bench --data-dir DIR

See alexnet_cifar/bench.py for what is timed and how; docs/RESULTS.md for recorded runs.
"""

import sys

from alexnet_cifar.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
