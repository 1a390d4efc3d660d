"""benchmarks/ablation.py: every rung over seeds on the validation split, recorded once and never retrained."""

import json

import pytest

import ablation
import frontier
from study import LADDER, ladder_configs


@pytest.fixture
def summaries(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    folder.mkdir()
    monkeypatch.setattr(ablation, "SUMMARIES", folder)
    monkeypatch.setattr(ablation, "read_summaries", lambda: frontier.read_summaries(folder))
    return folder


def trained(calls: list):
    def run_config(cfg, data, path, variant, how):
        calls.append((path.name, variant, how))
        config = cfg.to_dict()
        return {
            "name": path.name,
            "variant": variant,
            "seed": cfg.seed,
            "test_acc": 0.8,
            "wall_s": 1.0,
            "config": config,
        }

    return run_config


def test_the_rungs_hold_out_the_split_and_the_last_is_best():
    for _, cfg in ladder_configs(seed=4, valid_split=5000):
        assert (cfg.valid_split, cfg.seed) == (5000, 4)


def test_a_rung_is_trained_once_then_read_back(summaries, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(ablation, "run_config", trained(calls))
    first = ablation.run_rung(None, 2, 1, tmp_path / "out")
    again = ablation.run_rung(None, 2, 1, tmp_path / "out")
    assert calls == [("ladder-rung2-s1", "rung2", ablation.command(2, 1))]
    assert first == again and again["ladder"] == {"rung": 2, "label": LADDER[2][0]}
    assert json.loads((summaries / "ladder-rung2-s1.json").read_text()) == first
    # the ladder changed under a recorded rung: that rung is trained again, not read back
    monkeypatch.setattr(ablation, "ladder_configs", lambda seed, valid_split: ladder_configs(seed + 1, valid_split))
    ablation.run_rung(None, 2, 1, tmp_path / "out")
    assert len(calls) == 2


def test_a_config_already_recorded_under_another_name_is_not_trained_again(summaries, tmp_path, monkeypatch):
    """The last rung is `best` with the split: frontier.py's best run of that seed is that very run."""
    calls: list = []
    monkeypatch.setattr(ablation, "run_config", trained(calls))
    last = len(LADDER) - 1
    best = frontier.resolve_config("best", {"seed": 0, "valid_split": frontier.SPLIT}).to_dict()
    del best["lookahead_every"]  # recorded before the field existed: it ran with the default, off
    (summaries / "best-epochs-s0.json").write_text(json.dumps({"name": "best-epochs-s0", "config": best, "seed": 0}))
    found = ablation.run_rung(None, last, 0, tmp_path / "out")
    assert calls == [] and found["same_as"] == "best-epochs-s0" and found["name"] == f"ladder-rung{last}-s0"
    other_seed = ablation.run_rung(None, last, 1, tmp_path / "out")  # no best run of seed 1: trained
    assert calls == [(f"ladder-rung{last}-s1", f"rung{last}", ablation.command(last, 1))]
    assert "same_as" not in other_seed
