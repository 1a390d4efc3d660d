#!/bin/bash
# Every technique of the config on CUDA, random images: each run must finish and write its files.
#   bash benchmarks/gpu_techniques/run.sh      # from the repository root, on a CUDA machine; about 2.5 minutes
# a.toml: whitening (conv1 frozen for an epoch), Dirac conv2, alternating flips, multi-view TTA (tta_shift = 1), EMA; b.toml: lookahead.
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
T=benchmarks/gpu_techniques
fail=0
go() { name=$1; shift; echo "== $name: $*"; if python3 -m alexnet_cifar train --synthetic --device cuda --quiet --run-dir /tmp/gc/$name "$@"; then ls /tmp/gc/$name | tr '\n' ' '; echo; else echo "FAILED $name rc=$?"; fail=1; fi; }
go whiten-dirac-altflip-tta-ema --recipe best --epochs 2 --valid-split 5000 --config $T/a.toml
go lookahead-budget --recipe fast --time-budget 20s --valid-split 5000 --config $T/b.toml
go fp16-scaler --recipe fast --epochs 1 --amp fp16
go compiled-best --recipe best --epochs 1 --compile --config $T/a.toml
go deterministic-seed --recipe seed --epochs 1 --deterministic
python3 -m alexnet_cifar train --synthetic --device cuda --quiet --resume /tmp/gc/fp16-scaler --epochs 2 && echo "resume ok" || { echo "FAILED resume"; fail=1; }
python3 -m alexnet_cifar predict --help > /dev/null && echo "predict help ok"
exit $fail
