"""The results tables in the docs are made from recorded run summaries, and cannot drift from them."""

import json

import pytest

import tables


def summary(variant: str, seed: int, acc: float, budget: float = 0, wall: float = 60.0) -> dict:
    return {
        "name": f"{variant}-s{seed}",
        "variant": variant,
        "seed": seed,
        "time_budget": budget,
        "wall_s": wall,
        "epochs": 2,
        "steps": 0,
        "valid_acc": acc - 0.01,
        "test_acc": acc,
        "date": "2026-11-29",
        "commit": "abc1234",
    }


def test_groups_table_gives_each_group_its_mean_and_95_percent_interval():
    runs = [summary("fast", s, a) for s, a in enumerate([0.70, 0.72, 0.74])] + [summary("best", 0, 0.87)]
    table = tables.groups_table(runs).splitlines()
    # mean 0.72, sd 0.02, t(0.975, 2) = 4.3027: half-width 4.3027 * 0.02 / sqrt(3) = 0.0497
    assert table[3] == "| fast | epochs | 3 | 72.00% ± 4.97 | 70.00 - 74.00 | 2 | 60.0 s |"
    assert table[2] == "| best | epochs | 1 | 87.00% (one seed) | 87.00 - 87.00 | 2 | 60.0 s |"


def test_render_replaces_only_the_marked_tables(tmp_path):
    runs = [summary("fast", 0, 0.71, budget=25)]
    text = "intro\n<!-- table:groups -->\nold numbers\n<!-- end table -->\nafter | 1 |\n"
    out = tables.render(text, runs)
    assert out.startswith("intro\n<!-- table:groups -->\n| variant |") and out.endswith(
        "<!-- end table -->\nafter | 1 |\n"
    )
    assert "| fast | 25 s | 1 | 71.00% (one seed) |" in out and "old numbers" not in out
    assert tables.render(out, runs) == out
    with pytest.raises(ValueError, match="unknown table kind 'nope'"):
        tables.render("<!-- table:nope -->\n<!-- end table -->", runs)


def test_the_docs_tables_match_the_recorded_runs():
    assert tables.stale() == [], "run `python benchmarks/tables.py write` after recording runs"


def test_a_number_edited_by_hand_is_caught(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "fast-s0.json").write_text(json.dumps(summary("fast", 0, 0.71)))
    doc = tmp_path / "RESULTS.md"
    doc.write_text(tables.render("<!-- table:runs -->\n<!-- end table -->\n", tables.read_summaries(folder)))
    assert tables.stale((doc,), folder) == []
    doc.write_text(doc.read_text().replace("0.7100", "0.7200"))
    assert tables.stale((doc,), folder) == ["RESULTS.md"]


def rung(number: int, seed: int, acc: float, wall: float = 100.0) -> dict:
    return {**summary(f"rung{number}", seed, acc, wall=wall), "ladder": {"rung": number, "label": f"+ trick {number}"}}


def test_ladder_table_pairs_each_rung_with_the_one_above_by_seed():
    runs = [rung(0, s, a) for s, a in enumerate([0.70, 0.72, 0.71])]
    runs += [rung(1, s, a, wall=200.0) for s, a in enumerate([0.72, 0.75, 0.73])]  # gains 2, 3, 2 points
    runs += [rung(2, 0, 0.80)]  # one seed: a gain, no interval
    table = tables.ladder_table(runs).splitlines()
    assert table[2] == "| 0. + trick 0 | 3 | 71.00% ± 2.48 |  |  |  | 100 s |"
    # differences 0.02, 0.03, 0.02: mean 0.023333, sd 0.0057735; half-width 4.3027 * 0.0057735 / sqrt(3) = 0.014342;
    # t = 0.023333 / (0.0057735 / sqrt(3)) = 7.0, p = 0.0198 (scipy.stats.ttest_rel)
    assert table[3].startswith("| 1. + trick 1 | 3 | 73.33% ± ") and "| +2.33 [+0.90, +3.77] | 0.02 |" in table[3]
    assert table[4] == "| 2. + trick 2 | 1 | 80.00% | +8.00 |  |  | 100 s |"
    # ladder runs are the ladder table's alone
    assert "rung" not in tables.groups_table(runs) and "rung" not in tables.headline_table(runs)
    assert "rung1-s0" in tables.runs_table(runs)


def test_a_run_recorded_under_a_second_name_is_listed_once():
    runs = [summary("best", 0, 0.87), {**summary("best", 0, 0.87), "name": "ladder-rung8-s0", "same_as": "best-s0"}]
    assert tables.runs_table(runs).count("0.8700") == 1


def test_the_headline_shows_the_recipes_as_they_are_at_their_own_epochs():
    runs = [{**summary("fast", 0, 0.74), "recipe": "fast"}, {**summary("fast-plain", 0, 0.71), "recipe": "fast"}]
    runs += [{**summary("best", 0, 0.82, budget=300), "recipe": "best"}]
    table = tables.headline_table(runs)
    assert "| fast | epochs | 1 | 74.00%" in table and "fast-plain" not in table and "best" not in table
