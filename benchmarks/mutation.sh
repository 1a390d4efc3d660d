#!/usr/bin/env bash
# Mutation testing of the core with mutmut: how many deliberate small bugs the fast tests catch.
# Slow (hours on 2 CPU cores for every mutant), so not part of CI; results are cached in mutants/,
# and a second run only retests what changed.
#
#   bash benchmarks/mutation.sh                                  # every mutant ([tool.mutmut] in pyproject.toml)
#   bash benchmarks/mutation.sh 'alexnet_cifar.training.loop.*'  # only these
#   .venv/bin/mutmut show NAME                                   # what one mutant changed
#
# The oracle is the in-process tests (-m "not slow and not process"); the summary table is printed
# by benchmarks/mutation_summary.py and goes into docs/TESTING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/python" -m pip install -q -e ".[dev,onnx,mutation]"
"$VENV/bin/mutmut" run --max-children "$(nproc)" "$@"
"$VENV/bin/python" benchmarks/mutation_summary.py --survivors
