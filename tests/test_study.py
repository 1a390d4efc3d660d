import dataclasses
import itertools

import pytest

from alexnet_cifar.config import RECIPES
from alexnet_cifar.training.metrics import EpochRecord
from study import LADDER, SeedResult, ladder_configs, ladder_table, summary_table


def history(accs, seconds=10.0):
    return [EpochRecord(i, 1.0, 0.5, 1.0, a, 0.1, seconds, 1000.0) for i, a in enumerate(accs)]


def test_seed_result_times_the_first_epoch_at_70_percent():
    r = SeedResult.from_history(3, history([0.5, 0.69, 0.71, 0.65, 0.72], seconds=10.0))
    assert (r.seed, r.last, r.peak, r.peak_epoch) == (3, 0.72, 0.72, 4)
    assert r.epochs_to_target == 3 and r.seconds_to_target == pytest.approx(30.0)
    assert SeedResult.from_history(0, history([0.5, 0.6])).seconds_to_target is None


def test_summary_table_mean_and_spread():
    results = [
        SeedResult.from_history(s, history(accs)) for s, accs in enumerate([[0.6, 0.8], [0.7, 0.82], [0.5, 0.84]])
    ]
    table = summary_table("best", results)
    assert "| mean | 0.8200 ± 0.0200 (sd) |" in table
    assert "20.0 (slowest seed)" in table and table.count("\n") == 7
    # t(0.975, 2) = 4.302653: 0.82 -+ 4.302653 * 0.02 / sqrt(3) = 0.7703, 0.8697
    assert "95% CI of the mean (Student t) [0.7703, 0.8697], min 0.8000, max 0.8400." in table


LADDER_FIELDS = {"amp", "schedule", "warmup_epochs", "momentum", "nesterov", "lr", "weight_decay"}
LADDER_FIELDS |= {"label_smoothing", "crop_padding", "flip", "tta", "test_batch_size", "epochs"}


def test_ladder_climbs_from_seed_to_best_one_change_per_rung():
    rungs = [cfg for _, cfg in ladder_configs(seed=0)]
    assert rungs[0] == RECIPES["seed"]
    assert dataclasses.replace(rungs[-1], recipe="best") == RECIPES["best"]
    for below, above in itertools.pairwise(rungs):
        changed = {k for k, v in above.to_dict().items() if v != below.to_dict()[k]}
        assert changed and changed <= LADDER_FIELDS
    assert len(rungs) == len(LADDER)
    assert all(cfg.seed == 4 for _, cfg in ladder_configs(seed=4))


def test_ladder_table_shows_each_rungs_gain():
    rows = [
        ("0. seed", SeedResult.from_history(0, history([0.6, 0.7]))),
        ("1. + more", SeedResult.from_history(0, history([0.7, 0.75, 0.7525]))),
    ]
    table = ladder_table(rows)
    lines = table.splitlines()
    assert lines[2].startswith("| 0. seed | 2 | 0.7000 |  | 0.7000 (1) | 20 | 10.0 | 20 |")
    assert lines[3].startswith("| 1. + more | 3 | 0.7525 | +5.25 | 0.7525 (2) | 10 | 10.0 | 30 |")
