"""Results tables made from recorded runs, so that the numbers in the docs cannot drift.

    python benchmarks/tables.py record runs/RUN [runs/RUN...]   # docs/runs/RUN.json from finished runs
    python benchmarks/tables.py write                           # regenerate the marked tables in the docs
    python benchmarks/tables.py check                           # exit 1 if a marked table is out of date

A table lives in README.md or docs/RESULTS.md between `<!-- table:KIND -->` and `<!-- end table -->`;
`write` replaces what is between the markers with the table made from docs/runs/*.json (small
summaries of runs, kept in the repo instead of the runs). tests/test_tables.py runs `check`.
Kinds: `groups` (each variant and budget over its seeds: test accuracy with its 95% interval),
`headline` (the same for the recipes as they are, at their own epochs), `ladder` (benchmarks/ablation.py's rungs,
each one's gain over the rung above paired by seed) and `runs` (every recorded run, with the
commit that made it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from pathlib import Path

from alexnet_cifar.report.statistics import paired_difference, spread

ROOT = Path(__file__).resolve().parent.parent
SUMMARIES = ROOT / "docs" / "runs"
DOCS = (ROOT / "README.md", ROOT / "docs" / "RESULTS.md")
BLOCK = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(<!-- end table -->)", re.S)


def read_summaries(folder: Path = SUMMARIES) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def group_key(s: dict) -> tuple[str, float]:
    return s["variant"], s["time_budget"]


def headline_table(summaries: list[dict]) -> str:
    """groups_table of the recipes as they are (a variant named as its recipe), each trained for its
    own epochs (no time budget)."""
    return groups_table([s for s in summaries if not s["time_budget"] and s["variant"] == s.get("recipe")])


def groups_table(summaries: list[dict]) -> str:
    """One row per variant and budget: its seeds' test accuracy (mean, 95% CI, range) and wall time."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for s in summaries:
        if "ladder" in s:  # the ladder's own table shows its rungs
            continue
        groups.setdefault(group_key(s), []).append(s)
    lines = [
        "| variant | budget | seeds | test accuracy (95% CI) | min - max | epochs | wall time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (variant, budget), runs in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1])):
        acc = spread([r["test_acc"] for r in runs])
        ci = f" ± {100 * (acc.high - acc.mean):.2f}" if acc.n > 1 else " (one seed)"
        epochs = sorted({r["epochs"] for r in runs})
        wall = statistics.mean(r["wall_s"] for r in runs)
        lines.append(
            f"| {variant} | {f'{budget:g} s' if budget else 'epochs'} | {acc.n} | {100 * acc.mean:.2f}%{ci} "
            f"| {100 * acc.min:.2f} - {100 * acc.max:.2f} | {'/'.join(map(str, epochs))} | {wall:.1f} s |"
        )
    return "\n".join(lines)


GAIN_TARGET = 0.005  # the ladder asks how many seeds resolve half a point


def ladder_table(summaries: list[dict]) -> str:
    """One row per rung: test accuracy over its seeds, and its gain over the rung above, paired by seed."""
    rungs: dict[int, dict[int, dict]] = {}
    for s in summaries:
        if "ladder" in s:
            rungs.setdefault(s["ladder"]["rung"], {})[s["seed"]] = s
    lines = [
        "| rung | seeds | test accuracy (95% CI) | gain on the rung above (95% CI) | p | seeds for ± 0.5 | wall time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rung, runs in sorted(rungs.items()):
        acc = spread([r["test_acc"] for r in runs.values()])
        ci = f" ± {100 * (acc.high - acc.mean):.2f}" if acc.n > 1 else ""
        gain = p = need = ""
        above = rungs.get(rung - 1, {})
        seeds = sorted(set(runs) & set(above))
        if seeds:
            mine, theirs = [runs[k]["test_acc"] for k in seeds], [above[k]["test_acc"] for k in seeds]
            d = paired_difference(mine, theirs, GAIN_TARGET)
            gain = f"{100 * d.difference.mean:+.2f}"
            if d.difference.n > 1:
                gain += f" [{100 * d.difference.low:+.2f}, {100 * d.difference.high:+.2f}]"
                p = "n/a" if math.isnan(d.p_value) else f"{d.p_value:.2g}"  # no spread: no t-test
                need = str(d.seeds_needed)
        label = next(iter(runs.values()))["ladder"]["label"]
        wall = statistics.mean(r["wall_s"] for r in runs.values())
        lines.append(
            f"| {rung}. {label} | {acc.n} | {100 * acc.mean:.2f}%{ci} | {gain} | {p} | {need} | {wall:.0f} s |"
        )
    return "\n".join(lines)


def runs_table(summaries: list[dict]) -> str:
    lines = [
        "| run | seed | test acc | last valid acc | wall s | of budget | epochs | steps | date | commit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for s in sorted(summaries, key=lambda s: (s["variant"], s["time_budget"], s["seed"])):
        if s.get("same_as"):  # another name for a run listed under its own
            continue
        used = f"{100 * s['wall_s'] / s['time_budget']:.0f}%" if s["time_budget"] else ""
        lines.append(
            f"| {s['name']} | {s['seed']} | {s['test_acc']:.4f} | {s['valid_acc']:.4f} | {s['wall_s']:.1f} | {used} "
            f"| {s['epochs']} | {s['steps'] or ''} | {s['date']} | {s['commit']} |"
        )
    return "\n".join(lines)


KINDS = {"headline": headline_table, "groups": groups_table, "ladder": ladder_table, "runs": runs_table}


def render(text: str, summaries: list[dict]) -> str:
    """`text` with every marked table replaced by the one the summaries make."""

    def table(match: re.Match) -> str:
        kind = match.group(2)
        if kind not in KINDS:
            raise ValueError(f"unknown table kind {kind!r}; known: {', '.join(KINDS)}")
        return f"{match.group(1)}{KINDS[kind](summaries)}\n{match.group(4)}"

    return BLOCK.sub(table, text)


def stale(docs: tuple[Path, ...] = DOCS, folder: Path = SUMMARIES) -> list[str]:
    """The docs whose marked tables differ from what the summaries make."""
    summaries = read_summaries(folder)
    return [p.name for p in docs if render(p.read_text(), summaries) != p.read_text()]


def summary_of(run: Path, variant: str, command: str) -> dict:
    """A summary like frontier.py's, from a finished run directory (made by `alexnet-cifar train`)."""
    info = json.loads((run / "config.json").read_text())
    cfg, env = info["config"], info.get("environment", {})
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    test_file = run / "test.json"
    test = json.loads(test_file.read_text())["test_acc"] if test_file.exists() else float(rows[-1]["valid_acc"])
    return {
        "name": run.name,
        "variant": variant,
        "recipe": cfg["recipe"],
        "seed": cfg["seed"],
        "time_budget": cfg.get("time_budget", 0),
        "wall_s": round(sum(float(r["seconds"]) for r in rows), 2),
        "epochs": cfg["epochs"],
        "steps": cfg.get("steps", 0),
        "valid_acc": float(rows[-1]["valid_acc"]),
        "test_acc": test,
        "config": cfg,
        "command": command or " ".join(env.get("command", [])),
        "commit": env.get("git_commit", "unknown")[:7],
        "date": env.get("started", "")[:10],
        "machine": f"{env.get('threads', '?')} threads ({env.get('processor', '?')}), torch {env.get('torch', '?')}",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    rec = sub.add_parser("record", help="summaries of finished run directories into docs/runs/")
    rec.add_argument("runs", nargs="+", type=Path)
    rec.add_argument("--variant", help="the group name in the tables (default: the run's recipe)")
    rec.add_argument("--command", default="", help="the command that made the runs (default: config.json's)")
    sub.add_parser("write", help="regenerate the marked tables")
    sub.add_parser("check", help="exit 1 if a marked table is out of date")
    args = p.parse_args()
    if args.action == "record":
        for run in args.runs:
            cfg = json.loads((run / "config.json").read_text())["config"]
            summary = summary_of(run, args.variant or cfg["recipe"], args.command)
            (SUMMARIES / f"{run.name}.json").write_text(json.dumps(summary, indent=1) + "\n")
        return 0
    if args.action == "write":
        summaries = read_summaries()
        for doc in DOCS:
            doc.write_text(render(doc.read_text(), summaries))
        return 0
    out = stale()
    for doc in out:
        print(f"{doc}: a generated table is out of date; run `python benchmarks/tables.py write`", file=sys.stderr)
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
