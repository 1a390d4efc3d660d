"""A time budget: the step arithmetic, the schedule laid over the steps, and resume without re-measuring."""

import argparse
import csv
import itertools
import json
import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from alexnet_cifar.cli import duration
from alexnet_cifar.config import resolve_config
from alexnet_cifar.errors import UsageError
from alexnet_cifar.training import budget
from alexnet_cifar.training.budget import Speed, steps_within, stretch
from alexnet_cifar.training.resume import resume_config

from .conftest import assert_one_line_error, run_cli, stop_after, tiny_fit, write_fake_cifar


def cost(steps: int, speed: Speed, steps_per_epoch: int) -> float:
    """What `steps` cost, computed directly: every step, one evaluation and its files per epoch begun, the end."""
    return steps * speed.step + math.ceil(steps / steps_per_epoch) * speed.per_epoch + speed.at_end


SPEED = Speed(step=0.1, evaluation=1.0, test=2.0)  # no file costs: the hand-worked cases below


@pytest.mark.parametrize(
    ("seconds", "steps"),
    [
        (3.0, 0),  # the test pass and one evaluation take it all
        (5.0, 10),  # one full epoch of 10; an eleventh step would cost another evaluation
        (10.0, 40),  # 4 s of steps + 4 evaluations + the test
        (10.5, 40),  # 41 steps would need a fifth evaluation: 4.1 + 5 + 2 = 11.1 s
        (11.5, 45),  # half of a fifth epoch: 4.5 + 5 + 2
    ],
)
def test_steps_within_hand_worked_budgets(seconds, steps):
    assert steps_within(seconds, SPEED, steps_per_epoch=10) == steps


@given(
    seconds=st.floats(0.0, 500.0),
    step=st.floats(0.001, 2.0),
    evaluation=st.floats(0.0, 20.0),
    test=st.floats(0.0, 20.0),
    checkpoint=st.floats(0.0, 1.0),
    steps_per_epoch=st.integers(1, 60),
)
def test_steps_within_is_the_most_that_fits(seconds, step, evaluation, test, checkpoint, steps_per_epoch):
    speed = Speed(step, evaluation, test, checkpoint)
    n = steps_within(seconds, speed, steps_per_epoch)
    assert n >= 0
    if n:
        assert cost(n, speed, steps_per_epoch) <= seconds + 1e-9
    assert cost(n + 1, speed, steps_per_epoch) > seconds - 1e-9


def test_steps_within_steps_that_fill_the_budget_exactly():
    assert steps_within(10.0, Speed(step=0.5, evaluation=0.0, test=0.0), steps_per_epoch=10) == 20


def test_steps_within_a_month_of_millisecond_steps_is_computed_not_counted():
    """2.6 billion steps: found by bisection (counting up to them would take minutes)."""
    speed = Speed(step=0.001, evaluation=1.0, test=10.0)
    month = 30 * 86_400.0
    epochs = (month - 10.0) // (100 * 0.001 + 1.0)  # whole epochs of 100 steps and an evaluation each
    left = month - 10.0 - epochs * 1.1
    expected = int(epochs) * 100 + (max(0, math.floor((left - 1.0) / 0.001 + 1e-6)) if left > 1.0 else 0)
    assert steps_within(month, speed, steps_per_epoch=100) == expected
    assert cost(expected, speed, 100) <= month < cost(expected + 1, speed, 100)


def test_stretch_keeps_the_schedule_shape():
    cfg = resolve_config("best", {"whiten": True, "whiten_freeze_epochs": 6.0})  # 60 epochs, 1 of warm-up
    long = stretch(cfg, steps=4500, steps_per_epoch=1000)
    assert (long.steps, long.epochs) == (4500, 5)  # the fifth epoch is half trained
    assert long.warmup_epochs == pytest.approx(4.5 / 60) and long.whiten_freeze_epochs == pytest.approx(0.45)
    whole = stretch(resolve_config("fast", {"epochs": 7, "whiten_freeze_epochs": 7.0}), 29 * 782, 782)
    assert whole.whiten_freeze_epochs == whole.epochs == 29  # 7 x 29/7 is 29.000000000000004 in floats


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("45", 45), (" 2.5 ", 2.5)]
)
def test_durations(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "0", "0s", "-5m", "31d", "1000h", "1h30", "5m 2"])
def test_bad_durations_say_what_is_allowed(text):
    with pytest.raises(argparse.ArgumentTypeError, match="duration|allowed"):
        duration(text)


@pytest.fixture
def slow_steps(monkeypatch):
    """A measured speed of 1 s per step and nothing else: the plan no longer depends on this machine."""
    monkeypatch.setattr(budget, "measure", lambda *a, **k: Speed(step=1.0, evaluation=0.0, test=0.0))


def rows(run) -> list[dict[str, str]]:
    with open(run.path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_budget_fixes_the_steps_and_lays_the_schedule_over_them(tmp_path, slow_steps, caplog):
    fast = {"schedule": "linear", "warmup_epochs": 1.0, "epochs": 4, "threads": 1}
    with caplog.at_level("INFO", logger="alexnet_cifar"):
        history, run = tiny_fit(tmp_path, time_budget=25.0, **fast)  # 200 images in batches of 16: 13 steps an epoch
    cfg = json.loads((run.path / "config.json").read_text())["config"]
    steps = cfg["steps"]
    assert 15 <= steps <= 24  # about 0.97 x (25 s - start-up) / 1 s: more than one epoch, less than two
    assert cfg["epochs"] == len(history) == 2 and cfg["time_budget"] == 25.0
    assert cfg["warmup_epochs"] == pytest.approx(steps / 13 / 4)  # 1 of the recipe's 4 epochs, stretched
    progress = torch.load(run.last, weights_only=False)["progress"]
    assert progress["step"] == steps  # the last epoch stopped short, on the planned step
    assert float(rows(run)[-1]["lr"]) == 0.0  # the linear decay reached zero exactly there
    assert f"time budget 25 s: {steps:,} steps (2 epochs" in caplog.text
    (used,) = [m for m in caplog.messages if m.startswith("time budget 25 s: used ")]
    seconds, share = re.fullmatch(r"time budget 25 s: used ([\d.]+) s \((\d+)%\)", used).groups()
    # both are rounded (0.05 s of 5 s is 1%: "0.54 s" of 5 s prints as "0.5 s (11%)")
    assert 0 < float(seconds) < 60 and abs(int(share) - float(seconds) / 25 * 100) <= 0.7

    # the same config with the steps written out trains the same batches to the same weights
    explicit = {k: cfg[k] for k in ("steps", "epochs", "warmup_epochs")}
    _, again = tiny_fit(tmp_path, "again", **{**fast, **explicit})
    plain = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows(run)]
    assert plain == [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows(again)]
    assert all(torch.equal(a, b) for a, b in zip(run_weights(run), run_weights(again), strict=True))


def test_the_plan_leaves_time_for_the_final_test_pass_only_with_a_split(tmp_path, monkeypatch):
    """Without a split the test set is the per-epoch validation (priced already); with one it is
    evaluated once more at the end, and the plan must leave time for its 40 images."""
    priced = []

    def measure(cfg, train, valid, test_images, *where):
        priced.append(test_images)
        return Speed(step=0.2, evaluation=0.0, test=0.0)

    monkeypatch.setattr(budget, "measure", measure)
    tiny_fit(tmp_path, "plain", time_budget=5.0, threads=1)
    tiny_fit(tmp_path, "split", time_budget=5.0, threads=1, valid_split=50)
    assert priced == [0, 40]


def run_weights(run) -> list[torch.Tensor]:
    return list(torch.load(run.weights, weights_only=True).values())


def test_a_resumed_budget_run_keeps_its_steps_and_does_not_measure_again(tmp_path, monkeypatch):
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.errors import Interrupted
    from alexnet_cifar.training.loop import fit
    from alexnet_cifar.training.resume import open_resume

    def plan(cfg, data, test_images, runtime, deadline):  # the same plan for both runs: 20 steps
        return stretch(cfg, 20, 13), Speed(step=0.2, evaluation=0.0, test=0.0)

    monkeypatch.setattr(budget, "plan", plan)
    _, whole = tiny_fit(tmp_path, "whole", time_budget=5.0, threads=1)
    data = load_cifar10(tmp_path / "data")
    run = RunDir.create(tmp_path / "cut")
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.02, "device": "cpu", "time_budget": 5.0})
    with pytest.raises(Interrupted):
        fit(cfg, data, run, show_progress=False, stop=stop_after(16))  # epoch 1, batch 3 of its 7
    monkeypatch.setattr(budget, "plan", lambda *a, **k: pytest.fail("a resume planned again"))
    resume = open_resume(run.path, {})
    assert (resume.config.steps, resume.config.time_budget) == (20, 5.0)
    fit(resume.config, data, resume.run, resume=resume.state, show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(run_weights(whole), run_weights(run), strict=True))


def test_a_new_run_may_not_fix_both_its_steps_and_a_budget(tmp_path):
    with pytest.raises(UsageError, match="time_budget = 5 and steps = 20 both fix the run's length"):
        tiny_fit(tmp_path, time_budget=5.0, steps=20)


def test_a_budget_run_cannot_be_extended_by_epochs():
    saved = resolve_config("seed", {"steps": 20, "epochs": 2, "time_budget": 5.0}).to_dict()
    with pytest.raises(UsageError, match="length is fixed at 20 steps"):
        resume_config(saved, {"epochs": 5})


def test_steps_outside_the_last_epoch_are_refused(tmp_path):
    with pytest.raises(UsageError, match=r"steps = 40 does not end in epoch 2 \(13 steps per epoch\); set epochs = 4"):
        tiny_fit(tmp_path, steps=40, epochs=2)


def test_a_budget_too_short_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "measure", lambda *a, **k: Speed(step=1.0, evaluation=5.0, test=0.0))
    data = write_fake_cifar(tmp_path / "data")
    code, _, err = run_cli(
        capsys, "train", "--data-dir", data, "--run-dir", tmp_path / "run", "--time-budget", "4s", "--quiet"
    )
    assert_one_line_error(code, err, "time budget 4 s is too short", "give at least")


def test_time_budget_values():
    assert resolve_config("fast", {"time_budget": 300}).time_budget == 300.0
    for bad in (-1, float("nan"), 1e9):
        with pytest.raises(UsageError, match="time_budget"):
            resolve_config("seed", {"time_budget": bad})


@pytest.mark.parametrize(
    ("batch", "tick", "steps_run", "busy"),
    [
        (4, 2.0, 55, 30),  # 15 untimed, then 40 timed in 4 blocks; the busy step in the second
        (4, 0.5, 55, 10),  # half a second a step; the busy step before the timing starts
        (64, 2.0, 10, 9),  # an epoch of 10 batches: 9 untimed (the busy one among them), 1 timed
    ],
)
def test_measure_divides_the_timed_time_by_the_timed_steps(tmp_path, monkeypatch, batch, tick, steps_run, busy):
    """A clock that moves `tick` seconds per optimizer step and stands still otherwise: `tick`
    seconds a step, even when one step meets a busy machine (a minute, at step `busy`), which the
    median of 10-step blocks ignores, or which comes before the timing starts. The steps go on
    through the epoch, as the run's will: each block starts where the one before ended."""
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.device import choose_policy
    from alexnet_cifar.training.ranks import DistInfo
    from alexnet_cifar.training.trainer import Trainer, make_loaders

    now, calls, spans = [1000.0], [0], []
    real_step, real_epoch = Trainer.step, budget.train_one_epoch

    def step(self, loss):
        calls[0] += 1
        now[0] += 60.0 if calls[0] == busy else tick
        real_step(self, loss)

    def epoch(trainer, train, **kwargs):
        spans.append((kwargs.get("start", 0), kwargs["max_batches"]))
        return real_epoch(trainer, train, **kwargs)

    monkeypatch.setattr(budget, "clock", lambda: now[0])
    monkeypatch.setattr(Trainer, "step", step)
    monkeypatch.setattr(budget, "train_one_epoch", epoch)
    data = load_cifar10(write_fake_cifar(tmp_path / "data", per_batch=128, n_test=20))
    overrides = {"batch_size": batch, "device": "cpu", "time_budget": 600.0, "whiten": True}  # measured unwhitened
    cfg = resolve_config("seed", overrides)
    cpu = torch.device("cpu")
    train, valid = make_loaders(cfg, data, cpu)
    speed = budget.measure(cfg, train, valid, 0, cpu, DistInfo(), choose_policy(cpu, "off", False, False))
    assert speed.step == tick and speed.evaluation == 0.0 and speed.test == 0.0
    assert calls[0] == steps_run  # the untimed steps ran too
    assert [first for first, _ in spans] == [0, *itertools.accumulate(n for _, n in spans[:-1])]


@pytest.mark.parametrize("tta", [False, True])
def test_measure_prices_evaluations_and_checkpoints_on_the_same_clock(tmp_path, monkeypatch, tta):
    """A millisecond per evaluated image and view and half a second per checkpoint written: the
    evaluation of 3 timed batches of 8 (with the run's test-time views) is scaled to the 40-image
    split and to the 100-image test set; one untimed batch comes first; the checkpoint written is
    the trainer's whole state."""
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.device import choose_policy
    from alexnet_cifar.training.ranks import DistInfo
    from alexnet_cifar.training.trainer import make_loaders

    now, evaluated, saved = [0.0], [], []
    real_evaluate = budget.evaluate

    def evaluate(*args, **kwargs):
        meter = real_evaluate(*args, **kwargs)
        evaluated.append(meter.samples)
        now[0] += 0.001 * meter.samples * (2 if kwargs["tta"] else 1)
        return meter

    def save(path, state):
        saved.append((path.name, sorted(state)))
        now[0] += 0.5

    monkeypatch.setattr(budget, "clock", lambda: now[0])
    monkeypatch.setattr(budget, "evaluate", evaluate)
    monkeypatch.setattr(budget, "save_checkpoint", save)
    data = load_cifar10(write_fake_cifar(tmp_path / "data", n_test=40))
    cfg = resolve_config("seed", {"batch_size": 16, "test_batch_size": 8, "device": "cpu", "tta": tta})
    cpu = torch.device("cpu")
    train, valid = make_loaders(cfg, data, cpu)
    speed = budget.measure(cfg, train, valid, 100, cpu, DistInfo(), choose_policy(cpu, "off", False, False))
    assert evaluated == [8, 24]
    views = 2 if tta else 1
    assert speed.evaluation == pytest.approx(0.040 * views) and speed.test == pytest.approx(0.100 * views)
    assert speed.checkpoint == 0.5 and saved == [
        ("probe.pt", ["ema", "lookahead", "model", "optimizer", "scaler", "scheduler"])
    ]


def test_plan_measures_the_runs_own_loaders_and_fits_the_steps_before_the_deadline(tmp_path, monkeypatch):
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.device import choose_policy
    from alexnet_cifar.errors import UserError
    from alexnet_cifar.training.ranks import DistInfo

    asked = []

    def measure(cfg, train, valid, test_images, device, info, policy):
        asked.append((cfg, len(train), train.batch_size, len(valid.labels), test_images, device, info, policy))
        return Speed(step=0.5, evaluation=1.0, test=2.0)

    monkeypatch.setattr(budget, "measure", measure)
    monkeypatch.setattr(budget, "clock", lambda: 100.0)
    data = load_cifar10(write_fake_cifar(tmp_path / "data", per_batch=40, n_test=30))  # 13 batches of 16
    cfg = resolve_config("best", {"batch_size": 16, "device": "cpu", "time_budget": 20.0})
    cpu, info = torch.device("cpu"), DistInfo()
    policy = choose_policy(cpu, "off", False, False)
    planned, speed = budget.plan(cfg, data, 50, (cpu, info, policy), deadline=120.0)
    assert asked == [(cfg, 13, 16, 30, 50, cpu, info, policy)] and speed.step == 0.5
    # 20 s left, 19.4 planned: the test's 2 s, then 13 steps (6.5 s) and an evaluation (1 s) an epoch:
    # 2 epochs take 15 s, and the 2.4 s left buy a third epoch's evaluation and 2 steps
    assert (planned.steps, planned.epochs) == (28, 3)
    with pytest.raises(UserError) as caught:
        budget.plan(cfg, data, 50, (cpu, info, policy), deadline=102.0)
    assert str(caught.value) == (
        "time budget 20 s is too short: 18.0 s went to start-up and one step and one evaluation take about "
        "3.5 s more here; give at least 26s"
    )


def test_the_plan_says_what_was_measured_in_its_units():
    from alexnet_cifar.training.loop import budget_plan

    cfg = resolve_config("fast", {"time_budget": 90, "steps": 1234, "epochs": 3, "warmup_epochs": 0.25})
    speed = Speed(step=0.1, evaluation=1.5, test=2.0, checkpoint=0.125)
    assert budget_plan(cfg, speed, "measured at start-up") == (
        f"time budget 90 s: 1,234 steps (3 epochs, the last one maybe partial) at 100.0 ms per step (measured at "
        f"start-up) and {1.5 + budget.FILES_PER_EPOCH * 0.125:.2f} s per evaluation and its files; warm-up 0.25 epochs"
    )


@pytest.mark.parametrize(
    ("steps", "steps_per_epoch", "at"),
    [
        (17_042, 704, 703),  # best in 5 minutes: its first epoch but the short last batch
        (1_700, 560, 340),  # fast in 25 s: a fifth of the run (inside its warm-up) comes first
        (275, 1_000, 55),  # a fifth of 275 leaves the least that is timed: 40 after 15 untimed
        (270, 1_000, 0),  # a fifth of 270 (54) would time 39: the first plan stays
        (1_000, 56, 55),  # an epoch of 56: all but its last batch
        (1_000, 55, 0),  # an epoch of 55 is too short to time 40 after 15 and leave its last batch out
    ],
)
def test_the_run_plans_again_after_a_fifth_of_its_steps_or_its_first_epoch(steps, steps_per_epoch, at):
    assert budget.replan_step(steps, steps_per_epoch) == at


def test_replan_fits_the_rest_before_the_deadline_paying_for_the_steps_done(monkeypatch):
    """100 s left at 0.5 s a step, 20 steps of a 40-step epoch done before its evaluation: 97 s
    planned buy the test pass (2 s) and 5 evaluations (5 s) and 180 steps more: 200 in all."""
    asked = resolve_config("best", {"time_budget": 300.0})  # 60 epochs, 1 of warm-up
    plan = budget.Plan(asked, Speed(step=1.0, evaluation=1.0, test=2.0), deadline=200.0)
    cpu = torch.device("cpu")
    monkeypatch.setattr(budget, "clock", lambda: 100.0)
    cfg, speed = budget.replan(plan, 0.5, 20, 40, cpu)
    assert (cfg.steps, cfg.epochs, speed) == (200, 5, Speed(step=0.5, evaluation=1.0, test=2.0))
    assert cfg.warmup_epochs == pytest.approx(5 / 60) and cfg.time_budget == 300.0
    left = 100.0 * budget.PLANNED_SHARE
    assert cost(200, speed, 40) - 20 * 0.5 <= left < cost(201, speed, 40) - 20 * 0.5
    monkeypatch.setattr(budget, "clock", lambda: 250.0)  # past the deadline: the steps done are the run
    assert budget.replan(plan, 0.5, 20, 40, cpu)[0].steps == 20


def test_reschedule_lays_the_new_schedule_from_the_step_reached():
    from alexnet_cifar.training.schedule import lr_factor
    from alexnet_cifar.training.trainer import build_trainer

    first = stretch(resolve_config("best", {"lookahead_every": 5}), 300, 100)  # 60 epochs, 1 of warm-up
    trainer = build_trainer(first, torch.device("cpu"), 100)
    for _ in range(7):
        trainer.optimizer.step()
        trainer.scheduler.step()
    final = stretch(resolve_config("best", {"lookahead_every": 5}), 900, 100)
    trainer.reschedule(final, 100)
    warmup = round(final.warmup_epochs * 100)  # 1 of 60 epochs, stretched over 9: 15 steps
    assert trainer.scheduler.last_epoch == 7 and trainer.lookahead.total == 900
    for step in (7, 8):
        want = final.lr * lr_factor(step, 900, warmup, "linear", 0.0)
        assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([want, want])
        assert want != pytest.approx(first.lr * lr_factor(step, 300, round(first.warmup_epochs * 100), "linear", 0.0))
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert trainer.scheduler.state_dict()["base_lrs"] == [final.lr, final.lr]  # the peak, not the lr reached


@pytest.fixture
def half_second_steps(monkeypatch):
    """A clock that moves half a second per optimizer step (or what a test sets in [1]) and stands
    still otherwise, and a start-up measurement of 1 s a step: the run's own steps show the first
    plan to be twice too slow."""
    from alexnet_cifar.training.trainer import Trainer

    now, real_step = [0.0, 0.5], Trainer.step

    def step(self, loss):
        now[0] += now[1]
        real_step(self, loss)

    monkeypatch.setattr(budget, "clock", lambda: now[0])
    monkeypatch.setattr(Trainer, "step", step)
    monkeypatch.setattr(budget, "measure", lambda *a, **k: Speed(step=1.0, evaluation=0.0, test=0.0))
    return now


BUDGET_RUN = {"batch_size": 2, "time_budget": 400.0, "threads": 1, "schedule": "linear", "warmup_epochs": 1.0}


def test_a_budget_run_plans_again_from_its_own_steps_and_ends_on_time(tmp_path, half_second_steps, caplog):
    """200 images in batches of 2: 100 steps an epoch. The first plan: 0.97 x 400 s at 1 s a step =
    388 steps; after 78 (a fifth), the run has timed 63 at 0.5 s: the 361 s left (x 0.97) buy 700
    more, 778 in all, laid over 8 epochs, and the run uses 97% of its budget, not 49%."""
    from alexnet_cifar.training.schedule import lr_factor

    with caplog.at_level("INFO", logger="alexnet_cifar"):
        history, run = tiny_fit(tmp_path, **BUDGET_RUN)
    cfg = json.loads((run.path / "config.json").read_text())["config"]
    assert (cfg["steps"], cfg["epochs"], len(history)) == (778, 8, 8)
    assert cfg["warmup_epochs"] == pytest.approx(7.78 / 2)  # 1 of the recipe's 2 epochs, stretched
    assert torch.load(run.last, weights_only=False)["progress"]["step"] == 778
    assert "time budget 400 s: 388 steps (4 epochs" in caplog.text
    assert (
        "time budget 400 s: 778 steps (8 epochs, the last one maybe partial) at 500.0 ms per step (timed on "
        "this run's steps 16-78: the plan is fixed)" in caplog.text
    )
    assert "time budget 400 s: used 389.0 s (97%)" in caplog.messages
    warmup = round(cfg["warmup_epochs"] * 100)
    for row in rows(run):  # each epoch's last lr, from the final schedule (the first epoch's too)
        step = min(778, (int(row["epoch"]) + 1) * 100)
        assert float(row["lr"]) == pytest.approx(0.02 * lr_factor(step, 778, warmup, "linear", 0.0), abs=1e-12)


def test_a_budget_run_stopped_after_its_new_plan_resumes_to_the_unbroken_runs_weights(
    tmp_path, half_second_steps, monkeypatch
):
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.errors import Interrupted
    from alexnet_cifar.training.loop import fit
    from alexnet_cifar.training.resume import open_resume

    _, whole = tiny_fit(tmp_path, "whole", **BUDGET_RUN)
    half_second_steps[0] = 0.0
    data = load_cifar10(tmp_path / "data")
    run = RunDir.create(tmp_path / "cut")
    cfg = resolve_config("seed", {"epochs": 2, "lr": 0.02, "device": "cpu", **BUDGET_RUN})
    with pytest.raises(Interrupted):
        fit(cfg, data, run, show_progress=False, stop=stop_after(250))  # epoch 2, after the new plan
    monkeypatch.setattr(budget, "plan", lambda *a, **k: pytest.fail("a resume planned again"))
    monkeypatch.setattr(budget, "replan", lambda *a, **k: pytest.fail("a resume planned again"))
    resume = open_resume(run.path, {})
    assert resume.config.steps == 778 and resume.state["progress"]["step"] > 78  # stopped after the new plan
    fit(resume.config, data, resume.run, resume=resume.state, show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(run_weights(whole), run_weights(run), strict=True))


def test_a_budget_run_stopped_before_its_new_plan_keeps_the_first(tmp_path, half_second_steps, monkeypatch):
    """A stop among the timed steps: nothing is planned again, and the checkpoint, config.json and
    the resume all hold the first plan's 388 steps."""
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.errors import Interrupted
    from alexnet_cifar.training.loop import fit
    from alexnet_cifar.training.resume import open_resume

    data_root = write_fake_cifar(tmp_path / "data", per_batch=40, n_test=40)
    run = RunDir.create(tmp_path / "cut")
    cfg = resolve_config("seed", {"epochs": 2, "lr": 0.02, "device": "cpu", **BUDGET_RUN})
    # questions: 1 at start-up, 14 in the untimed span (after each batch but its last), 35 timed
    with pytest.raises(Interrupted, match="at epoch 0, batch 50;"):
        fit(cfg, load_cifar10(data_root), run, show_progress=False, stop=stop_after(50))
    assert json.loads((run.path / "config.json").read_text())["config"]["steps"] == 388
    assert torch.load(run.last, weights_only=False)["config"]["steps"] == 388
    monkeypatch.setattr(budget, "replan", lambda *a, **k: pytest.fail("a resume planned again"))
    resume = open_resume(run.path, {})
    history = fit(resume.config, load_cifar10(data_root), resume.run, resume=resume.state, show_progress=False)
    assert resume.config.steps == 388 and len(history) == 4


def test_the_first_epoch_is_trained_once_in_three_spans_around_the_timing(tmp_path, half_second_steps, monkeypatch):
    """15 untimed steps, the 63 timed, then the rest of the epoch: every batch once, in order."""
    from alexnet_cifar.training import loop

    spans, real_epoch = [], loop.train_one_epoch

    def epoch(trainer, loader, **kwargs):
        spans.append((kwargs["start"], kwargs["max_batches"]))
        return real_epoch(trainer, loader, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", epoch)
    tiny_fit(tmp_path, **BUDGET_RUN)
    assert spans == [(0, 15), (15, 63), (78, 22), *[(0, 100)] * 6, (0, 78)]


def test_each_epochs_bar_counts_its_images_under_the_new_plan(tmp_path, half_second_steps, monkeypatch):
    """The bars of the re-planned run's 8 epochs: 200 images each, 156 in the last (78 steps of 2)."""
    import io

    from tqdm import tqdm

    from alexnet_cifar.training import loop

    bars = []

    def progress_bar(total, desc, enabled=True, **options):  # shown whatever the run asks, into a buffer
        bars.append(tqdm(total=total, desc=desc, file=io.StringIO(), disable=False))
        return bars[-1]

    monkeypatch.setattr(loop, "progress_bar", progress_bar)
    tiny_fit(tmp_path, **BUDGET_RUN)
    assert [(bar.total, bar.n) for bar in bars] == [(200, 200)] * 7 + [(156, 156)]


def test_a_run_whose_own_steps_spent_its_budget_ends_where_it_planned_again(tmp_path, half_second_steps):
    """6 s a step against the 1 s measured: after the 78 steps timed the clock reads 468 s of 400,
    so the run ends there, inside its first epoch of 100."""
    half_second_steps[1] = 6.0
    history, run = tiny_fit(tmp_path, **BUDGET_RUN)
    cfg = json.loads((run.path / "config.json").read_text())["config"]
    assert (cfg["steps"], cfg["epochs"], len(history)) == (78, 1, 1)
    assert torch.load(run.last, weights_only=False)["progress"]["step"] == 78
