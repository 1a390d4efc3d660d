#!/usr/bin/env bash
# Mutation testing of the core with mutmut: how many deliberate small bugs the fast tests catch.
# Slow (hours on 2 CPU cores for every mutant), so not part of CI. mutmut keeps each mutant's result
# in mutants/**/*.py.meta and retests only the functions that changed since; this script keeps a copy
# of those files in benchmarks/mutation-results/ (commit it), so a fresh clone goes on where the
# last run stopped instead of starting again. An interrupted run saves what it checked (Ctrl-C or
# SIGTERM; not SIGKILL).
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
RESULTS=benchmarks/mutation-results
KILLERS=mutation-killers.tsv # which test caught each mutant (tests/conftest.py writes it; it orders the tests)
save() { # every .meta mutmut wrote, and the killers, into the repository's copy
  [ -d mutants/src ] && (cd mutants && find src -name '*.py.meta' -exec install -D -m 644 {} "../$RESULTS/{}" \;)
  [ -f "mutants/$KILLERS" ] && sort -u "mutants/$KILLERS" > "$RESULTS/$KILLERS"
  return 0
}
if [ -d "$RESULTS/src" ]; then # the saved results, where this checkout has none of its own
  (cd "$RESULTS" && find src -name '*.py.meta' | while read -r meta; do
    [ -e "../../mutants/$meta" ] || install -D -m 644 "$meta" "../../mutants/$meta"
  done)
fi
[ -f "$RESULTS/$KILLERS" ] && [ ! -f "mutants/$KILLERS" ] && install -D -m 644 "$RESULTS/$KILLERS" "mutants/$KILLERS"
trap save EXIT
"$VENV/bin/mutmut" run --max-children "$(nproc)" "$@"
"$VENV/bin/python" benchmarks/mutation_summary.py --survivors
