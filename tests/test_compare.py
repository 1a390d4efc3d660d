"""compare and its statistics: checked against numbers computed by hand."""

import math

import pytest

from alexnet_cifar.cli import main
from alexnet_cifar.report.statistics import paired_difference, seeds_for, spread

from .conftest import assert_one_line_error


def test_a_groups_interval_by_hand():
    """Values 0.70, 0.72, 0.74: mean 0.72, sd 0.02, t(0.975, 2) = 4.302653, half-width
    4.302653 * 0.02 / sqrt(3) = 0.049683."""
    s = spread([0.70, 0.72, 0.74])
    assert (s.n, s.min, s.max) == (3, 0.70, 0.74)
    assert s.mean == pytest.approx(0.72) and s.sd == pytest.approx(0.02)
    assert s.high - s.mean == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert s.mean - s.low == pytest.approx(s.high - s.mean)
    one = spread([0.5])
    assert (one.sd, one.low, one.high) == (0.0, 0.5, 0.5)


def test_a_paired_difference_by_hand():
    """Differences 0.01, 0.02, 0.03, 0.02: mean 0.02, sd 0.008165, t = 0.02 / (0.008165 / 2) = 4.898979
    on 3 degrees of freedom, two-sided p = 0.016275; t(0.975, 3) = 3.182446."""
    a, b = [0.81, 0.82, 0.83, 0.82], [0.80, 0.80, 0.80, 0.80]
    result = paired_difference(a, b, target=0.005)
    d = result.difference
    assert d.mean == pytest.approx(0.02) and d.sd == pytest.approx(0.0081650, rel=1e-4)
    assert d.high - d.mean == pytest.approx(3.182446 * 0.0081650 / 2, rel=1e-4)
    assert result.p_value == pytest.approx(0.016275, rel=1e-3)
    # a 95% CI of +-0.005 at sd 0.008165: n = 13 (t(0.975,12) = 2.178813: 2.1788 * 0.008165 / sqrt(13) = 0.00493)
    assert result.seeds_needed == 13 == seeds_for(0.0081650, 0.005)
    assert seeds_for(0.0081650, 0.00493) == 14  # just under 13 seeds' 0.004934


def test_no_spread_no_p_value():
    result = paired_difference([0.8, 0.8], [0.7, 0.7], target=0.005)
    assert math.isnan(result.p_value) and result.difference.mean == pytest.approx(0.1)
    assert paired_difference([0.8], [0.7], 0.005).seeds_needed is None


def fake_run(folder, recipe: str, seed: int, accs: list[float], epochs: int | None = None, test_acc=None):
    """A finished run directory as train writes it: config.json, metrics.csv, model.pt (and with
    `test_acc`, a validation split's test.json), without training."""
    import torch

    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.training.metrics import EpochRecord

    run = RunDir.create(folder)
    config = {"recipe": recipe, "seed": seed, "epochs": epochs or len(accs), "valid_split": 5000 if test_acc else 0}
    run.write_config(config, torch.device("cpu"))
    run.write_metrics([EpochRecord(i, 1.0, a, 1.0, a, 0.1, 1.0, 1.0) for i, a in enumerate(accs)])
    run.weights.write_bytes(b"")
    if test_acc is not None:
        run.write_test_result({"test_loss": 1.0, "test_acc": test_acc, "images": 10000, "epochs": len(accs)})
    return str(folder)


def test_compare_pairs_runs_by_seed_and_uses_the_last_epoch(tmp_path, capsys):
    a = [fake_run(tmp_path / f"a{s}", "best", s, [0.95, acc]) for s, acc in ((2, 0.83), (0, 0.81), (1, 0.82))]
    b = [fake_run(tmp_path / f"b{s}", "fast", s, [0.80]) for s in (0, 1, 2)]
    assert main(["compare", *a, "--against", *b]) == 0
    out = capsys.readouterr().out
    assert "A - B = +2.00 points, 95% CI [-0.48, +4.48] over 3 paired seeds" in out  # peaks (0.95) unused
    assert "paired t-test p = 0.0742" in out and "A (best): 82.00%" in out and "B (fast): 80.00%" in out
    lines = [line.split() for line in out.splitlines()[1:4]]
    assert [(line[0], line[3]) for line in lines] == [("0", "+0.0100"), ("1", "+0.0200"), ("2", "+0.0300")]


def test_compare_refuses_what_cannot_be_paired(tmp_path, capsys):
    a = [fake_run(tmp_path / f"a{s}", "best", s, [0.8]) for s in (0, 1)]
    b = [fake_run(tmp_path / f"b{s}", "fast", s, [0.7]) for s in (0, 2)]
    code = main(["compare", *a, "--against", *b])
    assert_one_line_error(code, capsys.readouterr().err, "seed 1 is in one group only")
    code = main(["compare", a[0], a[0], "--against", b[0], b[1]])
    assert_one_line_error(code, capsys.readouterr().err, "group A has two runs of seed 0")
    (tmp_path / "empty").mkdir()
    code = main(["compare", str(tmp_path / "empty"), "--against", b[0]])
    assert_one_line_error(code, capsys.readouterr().err, "is not a run directory of alexnet-cifar")
    stopped = fake_run(tmp_path / "stopped", "best", 0, [0.5, 0.6], epochs=60)
    code = main(["compare", stopped, "--against", b[0]])
    assert_one_line_error(code, capsys.readouterr().err, "is not finished (2 of 60 epochs)")


def test_with_a_validation_split_compare_takes_the_test_number(tmp_path, capsys):
    """The last epoch's Valid number of a split run is a validation number: test.json holds the test's."""
    a = fake_run(tmp_path / "a", "best", 0, [0.99], test_acc=0.81)
    b = fake_run(tmp_path / "b", "fast", 0, [0.70])
    assert main(["compare", a, "--against", b]) == 0
    out = capsys.readouterr().out
    assert "+0.1100" in out and "A (best): 81.00% (one seed: no CI)" in out
    assert "(each run's test accuracy: test, last epoch, test, once)" in out


def test_the_seeds_search_is_bounded(monkeypatch):
    from alexnet_cifar.report import statistics

    calls, ppf = [], statistics.stats.t.ppf
    monkeypatch.setattr(statistics.stats.t, "ppf", lambda *a: calls.append(1) or ppf(*a))
    assert seeds_for(0.01, 1e-6) > 10**8
    assert len(calls) < 10  # found from the normal bound, not counted up from 2
    with pytest.raises(ValueError):
        seeds_for(0.01, 0)


def test_several_runs_on_one_page_grouped_by_recipe(tmp_path, capsys):
    import io

    from PIL import Image

    best = [fake_run(tmp_path / f"best{s}", "best", s, [0.5, 0.6, acc]) for s, acc in ((0, 0.70), (1, 0.72), (2, 0.74))]
    fast = [fake_run(tmp_path / f"fast{s}", "fast", s, [0.6, 0.65]) for s in (0, 1)]
    out = tmp_path / "together"
    assert main(["report", *best, *fast, "--out", str(out)]) == 0
    page = (out / "runs.html").read_text()
    # best: 0.72 +- 4.302653 * 0.02 / sqrt(3) = 4.97 points (the values of test_a_groups_interval_by_hand)
    assert "<td>best</td><td>0, 1, 2</td><td>72.00% ± 4.97 (95% CI, n=3), sd 2.00, min 70.00, max 74.00" in page
    assert "<td>fast</td><td>0, 1</td><td>65.00% ± 0.00 (95% CI, n=2)" in page
    assert "the Valid column is the test set (5 of 5 runs)" in page
    for name in ("runs_curves.png", "runs_by_recipe.png"):
        Image.open(io.BytesIO((out / name).read_bytes())).verify()
    code = main(["report", *best])
    assert_one_line_error(code, capsys.readouterr().err, "pass --out FOLDER", status=2)
    (out / "runs_curves.png").write_bytes(b"the user's")
    code = main(["report", *best, "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, "runs_curves.png was not written by alexnet-cifar")
