"""`alexnet-cifar train` under torchrun with a NaN loss on rank 1 alone (for test_distributed.py).

    torchrun --nproc_per_node=2 tests/nan_on_one_rank.py BATCH train ARGS...

Rank 1's training loss at batch BATCH (counted from 0) is NaN; every other loss is untouched.
"""

import os
import sys

import torch

from alexnet_cifar.cli import main

if __name__ == "__main__":
    poison_at = int(sys.argv.pop(1))
    if os.environ.get("RANK") == "1":
        forward, calls = torch.nn.CrossEntropyLoss.forward, [0]

        def poisoned(self, logits, labels):
            loss = forward(self, logits, labels)
            calls[0] += 1
            return loss * float("nan") if calls[0] == poison_at + 1 else loss

        torch.nn.CrossEntropyLoss.forward = poisoned
    sys.exit(main(sys.argv[1:]))
