"""benchmarks/frontier.py: the plot's points are the means of each variant's seeds at each budget."""

import pytest

from alexnet_cifar.config import resolve_config
from frontier import VARIANTS, command, points, run_config


def run(variant: str, budget: float, seed: int, acc: float, wall: float) -> dict:
    return {"variant": variant, "time_budget": budget, "seed": seed, "test_acc": acc, "wall_s": wall}


def test_points_average_the_seeds_of_each_budget_in_time_order():
    summaries = [
        run("best", 120, 0, 0.78, 119.0),
        run("best", 60, 0, 0.70, 60.0),
        run("best", 60, 1, 0.74, 62.0),
        run("fast", 0, 0, 0.74, 41.0),
    ]
    curves = points(summaries)
    assert curves["fast"] == [(41.0, 0.74, 0.0, 1)]
    (wall, acc, sd, n), later = curves["best"]
    assert (wall, n, later[0]) == (61.0, 2, 119.0)
    assert acc == pytest.approx(0.72) and sd == pytest.approx(0.028284, abs=1e-6)


def test_every_variant_is_a_valid_config_and_its_command_names_it():
    for name, (recipe, overrides) in VARIANTS.items():
        resolve_config(recipe, {**overrides, "valid_split": 5000, "time_budget": 60})
        assert f"--variant {name} --seeds 3 --budget 60" in command(name, 3, 60)


def test_a_run_is_summarised_with_the_config_it_trained(tmp_path):
    """run_config trains, reads the test result once, and keeps the resolved config: the very dict a
    second run of the same config would have, which the ladder uses to find runs it need not repeat."""
    from alexnet_cifar.data.cifar10 import load_cifar10

    from .conftest import write_fake_cifar

    data = load_cifar10(write_fake_cifar(tmp_path / "data"))
    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 16, "valid_split": 20, "seed": 3, "device": "cpu"})
    summary = run_config(cfg, data, tmp_path / "runs" / "one", "seed", "the command")
    assert [summary[k] for k in ("name", "variant", "seed", "command")] == ["one", "seed", 3, "the command"]
    assert summary["config"] == cfg.to_dict() and summary["epochs"] == 1 and summary["time_budget"] == 0
    assert 0 <= summary["test_acc"] <= 1 and summary["wall_s"] > 0


def test_a_point_measured_on_another_day_is_dated():
    """Wall time depends on the day's machine: the plot marks the points of a day other than most points'."""
    from frontier import other_days

    same_day = [{**run("fast", 0, s, 0.74, 40.0), "date": "2026-11-29"} for s in range(3)]
    later = [
        {**run("best", 0, s, acc, wall), "date": "2026-12-03"} for s, acc, wall in [(0, 0.86, 600), (1, 0.88, 700)]
    ]
    ((wall, acc), day), *rest = other_days(same_day + later).items()
    assert (wall, acc, day, rest) == (650.0, pytest.approx(0.87), "2026-12-03", [])
    assert other_days(same_day) == {}
