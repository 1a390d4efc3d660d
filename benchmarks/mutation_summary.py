"""Summarise a mutmut run: per module, mutants killed, survived and judged equivalent, and the score.

    python benchmarks/mutation_summary.py            # after benchmarks/mutation.sh; reads mutants/
                                                     # (or, without it, the saved benchmarks/mutation-results/)
    python benchmarks/mutation_summary.py --survivors   # also list every surviving mutant

benchmarks/mutation_equivalent.txt judges the survivors, one line each: `NAME equivalent REASON`
(no test can tell it from the original: left out of the score), `NAME process TEST` (only a test
that starts the tool in another interpreter reaches it; killed there when applied by hand) or
`NAME device REASON` (it changes only what another machine would see: a GPU, a second torchrun
rank, a non-UTF-8 locale; the CPU tests in one process cannot: counted as not caught):
score = (killed + timeout + process) / (mutants - equivalent - not checked).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = Path(__file__).with_name("mutation_equivalent.txt")
COLUMNS = ("mutants", "killed", "timeout", "process", "device", "survived", "no tests", "other", "equivalent")
KINDS = ("equivalent", "process", "device")  # the judgements mutation_equivalent.txt may give
KNOWN = set(COLUMNS) | {"not checked"}


def read_judged(path: Path = EQUIVALENT) -> dict[str, str]:
    """mutant name -> one of KINDS (lines `NAME KIND REASON`; # starts a comment)."""
    judged = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#"):
            name, kind, *_ = line.split()
            if kind not in KINDS:
                raise SystemExit(f"{path}: {name}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
            judged[name] = kind
    return judged


def in_scope(pyproject: Path = ROOT / "pyproject.toml") -> set[str]:
    """The modules `[tool.mutmut] only_mutate` names, as paths under src/."""
    paths = tomllib.loads(pyproject.read_text())["tool"]["mutmut"]["only_mutate"]
    return {p.removeprefix("src/") for p in paths}


def read_results(mutants: Path, scope: set[str] | None = None) -> dict[str, dict[str, str]]:
    """module file -> {mutant name: status} from mutmut's .meta files, for the modules in scope
    (results of a module that left the scope, or the code, are not counted)."""
    from mutmut.stats import status_by_exit_code  # here: the rest of this file runs without mutmut

    scope = in_scope() if scope is None else scope
    results = {}
    for meta in sorted(mutants.glob("src/**/*.py.meta")):
        module = str(meta.relative_to(mutants / "src")).removesuffix(".meta")
        if module in scope:
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            results[module] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return results


def table(results: dict[str, dict[str, str]], judged: dict[str, str]) -> tuple[str, list[str]]:
    rows = [f"| module | {' | '.join(COLUMNS)} | score |", "|---" * (len(COLUMNS) + 2) + "|"]
    total: Counter = Counter()
    survivors = []
    for module, statuses in results.items():
        alive = {n for n, s in statuses.items() if s in ("survived", "no tests")}
        count = Counter(judged[n] if n in alive and n in judged else s for n, s in statuses.items())
        count["other"] = sum(v for k, v in count.items() if k not in KNOWN)  # segfault, suspicious, ...
        count["mutants"] = len(statuses)
        total.update(count)
        survivors += sorted(n for n in alive if n not in judged)
        rows.append(row(module, count))
    rows.append(row("**all**", total))
    return "\n".join(rows), survivors


def stale(results: dict[str, dict[str, str]], judged: dict[str, str]) -> list[str]:
    """Judgements that no longer apply: their mutant is caught now, or gone (mutmut numbers a
    function's mutants anew when the function changes, so an old name may mean another change)."""
    statuses = {n: s for module in results.values() for n, s in module.items()}
    return sorted(n for n in judged if statuses.get(n, "gone") not in ("survived", "no tests", "not checked"))


def row(name: str, c: Counter) -> str:
    detected = c["killed"] + c["timeout"] + c["process"]
    judged = c["mutants"] - c["equivalent"] - c["not checked"]
    score = f"{100 * detected / judged:.1f}%" if judged else "-"
    cells = [c[k] for k in COLUMNS]
    return f"| {name} | " + " | ".join(map(str, cells)) + f" | {score} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    saved = ROOT / "benchmarks" / "mutation-results"
    folder = ROOT / "mutants" if (ROOT / "mutants" / "src").is_dir() else saved
    parser.add_argument("--mutants", type=Path, default=folder, help="the .meta files' folder (default: %(default)s)")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants too")
    args = parser.parse_args()
    results, judged = read_results(args.mutants), read_judged()
    text, survivors = table(results, judged)
    print(text)
    if args.survivors:
        print("\nsurvivors (`mutmut show NAME` prints the change):")
        print("\n".join(f"  {n}" for n in survivors))
        old = stale(results, judged)
        if old:
            print(f"\njudged in {EQUIVALENT.name} but caught or gone now (check, then remove the line):")
            print("\n".join(f"  {n}" for n in old))


if __name__ == "__main__":
    main()
