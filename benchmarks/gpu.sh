#!/usr/bin/env bash
# On a CUDA machine, unattended, in under 10 minutes: the throughput benchmark, then the lesson's
# full 20-epoch recipe through `train`, which ends with its seconds per epoch.
#
#   bash benchmarks/gpu.sh [DATA_DIR]
#
# DATA_DIR (or $CIFAR10_ROOT) holds cifar-10-batches-py/. Without one, both steps use synthetic
# images of CIFAR-10's size: the timings hold, the accuracies mean nothing. Needs python3 with torch,
# numpy, pillow and tqdm; runs the package from src/ without installing it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
data=${1:-${CIFAR10_ROOT:-}}
if [ -n "$data" ] && [ -d "$data" ]; then source=(--data-dir "$data"); else source=(--synthetic); fi
out=${RUN_ROOT:-runs/gpu-$(date +%Y%m%d-%H%M%S)}

date -u +"%Y-%m-%dT%H:%M:%SZ"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

echo "== throughput: lesson pipeline vs ours"
"$PY" -m alexnet_cifar bench --device cuda "${source[@]}" --repeats 5 --batches 200

echo "== the lesson's recipe, 20 epochs, default settings"
"$PY" -m alexnet_cifar train --device cuda "${source[@]}" --no-download --run-dir "$out/seed"

echo "== the lesson's recipe, 20 epochs, compiled with bf16 autocast"
"$PY" -m alexnet_cifar train --device cuda "${source[@]}" --no-download --compile --amp --run-dir "$out/seed-fast"

echo "== DistributedDataParallel over every GPU of this machine (nccl), the lesson's recipe, 2 epochs"
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
"$PY" -m torch.distributed.run --standalone --nproc_per_node="${gpus:-1}" -m alexnet_cifar train --device cuda \
  "${source[@]}" --no-download --epochs 2 --quiet --run-dir "$out/ddp"
