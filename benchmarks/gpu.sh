#!/usr/bin/env bash
# The GPU benchmark on a fresh CUDA machine, unattended (about 10 minutes on one GPU):
#
#   bash benchmarks/gpu.sh [DATA_DIR]
#
# Makes a venv (.venv-gpu) with a CUDA build of torch and this package, then runs benchmarks/gpu.py,
# which writes result.json and result.md into OUT. DATA_DIR (or $CIFAR10_ROOT) holds
# cifar-10-batches-py/; without one the images are random (timings hold, accuracies do not).
#
# Environment:
#   PYTHON       an interpreter whose torch already has CUDA: used as it is, nothing is installed
#   VENV         the venv to make or reuse (default .venv-gpu)
#   TORCH_SPEC   the torch to install (default "torch==2.13.*", the version family the project tests)
#   TORCH_INDEX  a pip index for CUDA wheels, e.g. https://download.pytorch.org/whl/cu128
#                (default: PyPI, whose Linux wheels are CUDA builds)
#   OUT          where the result goes (default runs/gpu-DATE-TIME)
#
# A CPU machine gets a one-line error; `python benchmarks/gpu.py --dry-run --out DIR` runs the same
# steps there in seconds (the test suite does).
set -euo pipefail
say() { echo "gpu.sh: $*" >&2; }
trap 'say "failed at line $LINENO (exit $?): see the output above"' ERR

data=${1:-${CIFAR10_ROOT:-}}
if [ -n "$data" ]; then  # before the cd below, so that a relative path means what the user meant
  [ -d "$data" ] || { say "data folder $data does not exist; pass the folder holding cifar-10-batches-py/"; exit 1; }
  data=$(cd "$data" && pwd)
fi
out=${OUT:-runs/gpu-$(date +%Y%m%d-%H%M%S)}
case $out in /*) ;; *) out=$PWD/$out ;; esac
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # the package, also for an interpreter given as PYTHON
has_cuda_torch() { "$1" -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; }

if [ -n "${PYTHON:-}" ]; then
  py=$PYTHON
  has_cuda_torch "$py" || { say "$py has no CUDA build of torch; unset PYTHON to let this script make a venv"; exit 1; }
else
  venv=${VENV:-.venv-gpu}
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  py=$venv/bin/python
  "$py" -m pip --version >/dev/null 2>&1 || {
    say "$venv is not a working venv (is python3-venv installed?); remove it and run again"
    exit 1
  }
  if ! has_cuda_torch "$py"; then
    say "installing ${TORCH_SPEC:-torch==2.13.*} (a CUDA build) into $venv"
    "$py" -m pip install -q --upgrade pip
    # --force-reinstall: a CPU build of the same version would otherwise count as installed
    "$py" -m pip install -q --force-reinstall ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "${TORCH_SPEC:-torch==2.13.*}"
    has_cuda_torch "$py" || { say "the torch installed has no CUDA; set TORCH_INDEX to a CUDA wheel index"; exit 1; }
  fi
  "$py" -m pip install -q -e .  # torch is already there: pip keeps the CUDA build
fi

if ! "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "torch $("$py" -c 'import torch; print(torch.__version__)') sees no CUDA GPU (driver, or CUDA_VISIBLE_DEVICES?);" \
    "on a CPU machine run: python benchmarks/gpu.py --dry-run --out DIR"
  exit 1
fi
args=(--out "$out")
[ -n "$data" ] && args+=(--data-dir "$data")
PYTHONUNBUFFERED=1 "$py" benchmarks/gpu.py "${args[@]}"
say "done: $out/result.md"
