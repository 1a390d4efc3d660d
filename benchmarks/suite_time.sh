#!/usr/bin/env bash
# The test suite's wall time against an older commit's, side by side on this machine, one after the
# other (never at once: they share the cores). Each runs its own README test command in a clean
# clone, with the real data when CIFAR10_ROOT is set, in this checkout's .venv.
#
#   CIFAR10_ROOT=/path/to/data bash benchmarks/suite_time.sh 3d40e9d    # the suite when issue 11 was filed
set -euo pipefail
base=${1:?usage: suite_time.sh COMMIT}
here=$(cd "$(dirname "$0")/.." && pwd)
py=$here/.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

clone() { # clone COMMIT FOLDER
  git clone -q "$here" "$2" && git -C "$2" checkout -q "$1"
}

timed() { # timed NAME FOLDER PYTEST-ARGS...: the suite's wall time in seconds, and its summary line
  local name=$1 dir=$2
  shift 2
  local start end
  start=$(date +%s.%N)
  (cd "$dir" && PYTHONPATH="$dir/src" "$py" -m pytest -q -p no:cacheprovider "$@" >"$work/$name.log" 2>&1) || true
  end=$(date +%s.%N)
  echo "$name: $("$py" -c "print(f'{$end - $start:.1f}')") s, $(tail -1 "$work/$name.log")"
}

make_args() { # the pytest options of a clone's `make test` (between "pytest -q" and "$(ARGS)")
  sed -n 's/^\t.*-m pytest -q \(.*\)\$(ARGS)$/\1/p' "$1/Makefile"
}

clone "$base" "$work/base"
clone HEAD "$work/head"
# each commit's own test command: the old one ran pytest in one process, today's one worker per core
# shellcheck disable=SC2046  # the options split into words, as make splits them
timed "$base" "$work/base" $(make_args "$work/base")
# shellcheck disable=SC2046
timed "$(git -C "$here" rev-parse --short HEAD)" "$work/head" $(make_args "$work/head")
