"""A validation split: epochs and best.pt chosen without the test set, which is read once, at the end."""

import json

import pytest
import torch

from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import hold_out, load_cifar10
from alexnet_cifar.errors import UsageError

from .conftest import tiny_fit, write_fake_cifar


@pytest.fixture
def data(tmp_path):
    return load_cifar10(write_fake_cifar(tmp_path / "data", per_batch=40, n_test=40))  # 200 train, 20 per class


def test_the_split_is_stratified_fixed_and_disjoint(data):
    split = hold_out(data, 50)
    assert torch.bincount(split.test.labels, minlength=10).tolist() == [5] * 10
    assert len(split.train) == 150 and torch.equal(split.train.labels.bincount(), torch.full((10,), 15))
    again = hold_out(data, 50)
    assert torch.equal(split.test.images, again.test.images)  # the same split on every run
    rows = {tuple(x.flatten()[:64].tolist()) for x in data.train.images}
    held = {tuple(x.flatten()[:64].tolist()) for x in split.test.images}
    kept = {tuple(x.flatten()[:64].tolist()) for x in split.train.images}
    assert held | kept == rows and not held & kept
    with pytest.raises(UsageError, match="use a smaller --valid-split"):
        hold_out(data, 200)


def test_valid_split_values(data):
    assert resolve_config("seed", {"valid_split": 5000}).valid_split == 5000
    for bad in (-10, 55, 30_000):
        with pytest.raises(UsageError, match=f"valid_split = {bad} is not allowed; use a multiple of 10"):
            resolve_config("seed", {"valid_split": bad})


def test_the_test_set_is_read_once_after_the_last_epoch(tmp_path, monkeypatch, caplog):
    from alexnet_cifar.training import loop

    evaluated, real = [], loop.evaluate

    def counting(model, loader, *args, **kwargs):
        evaluated.append(len(loader.labels))
        return real(model, loader, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", counting)
    write_fake_cifar(tmp_path / "data", per_batch=40, n_test=30)  # 30 test images, 50 held out
    with caplog.at_level("INFO", logger="alexnet_cifar"):
        history, run = tiny_fit(tmp_path, epochs=3, valid_split=50)
    assert evaluated == [50, 50, 50, 30]  # the validation split each epoch, the test set once at the end
    assert history[0].images_per_s > 0 and len(history) == 3
    result = json.loads(run.test_result.read_text())
    assert result["images"] == 30 and result["epochs"] == 3 and 0 <= result["test_acc"] <= 1
    assert f"Test Acc: {result['test_acc']:f} (the test set, once" in caplog.text
    assert (
        "validation split: 50 training images held out (the same for every run); the Valid columns are them, "
        "best.pt is chosen on them, and the test set is evaluated once, at the end"
    ) in caplog.messages
    best = torch.load(run.best, weights_only=True)["progress"]["best_acc"]
    assert best == max(r.valid_acc for r in history)  # best.pt chosen on the validation split
    assert json.loads(run.config.read_text())["config"]["valid_split"] == 50


def test_without_a_split_every_epoch_says_the_test_set_is_what_it_shows(tmp_path, caplog):
    with caplog.at_level("INFO", logger="alexnet_cifar"):
        _, run = tiny_fit(tmp_path, epochs=1)
    said = "no validation split: the Valid columns are the test set, as in the lesson, and best.pt is chosen on it"
    assert f"{said} (--valid-split N holds out N training images instead)" in caplog.messages
    assert not run.test_result.exists()


def test_the_report_says_which_set_each_number_is_on(tmp_path):
    from alexnet_cifar.report.run_report import write_report

    _, run = tiny_fit(tmp_path, epochs=1, valid_split=50)
    page = write_report(run.path, None, torch.device("cpu")).read_text()
    assert "peak validation (50 held-out training images) accuracy" in page
    assert "best.pt chosen on</th><td>the validation split" in page
    assert "test accuracy, measured once at the end" in page


@pytest.mark.parametrize(
    "settings",
    [{"tta": True}, {"amp": "bf16", "lesson_metrics": True}],
    ids=["tta", "bf16-lesson-metrics"],
)
def test_the_test_number_is_the_final_weights_on_the_test_set(tmp_path, settings):
    """Checked against evaluate() on model.pt, computed apart from the run: with the run's TTA,
    autocast, metrics and batch size, over every test image (30: the last batch of 7 is short, so
    the lesson's mean of batch means differs from the mean over images)."""
    from alexnet_cifar.artifacts.checkpoint import load_model
    from alexnet_cifar.data.loader import DeviceLoader
    from alexnet_cifar.inference.evaluate import evaluate

    write_fake_cifar(tmp_path / "data", per_batch=40, n_test=30)
    _, run = tiny_fit(tmp_path, epochs=2, valid_split=50, test_batch_size=7, **settings)
    result = json.loads(run.test_result.read_text())
    model, _ = load_model(run.weights, torch.device("cpu"))
    test = load_cifar10(tmp_path / "data").test
    loader = DeviceLoader(test.images, test.labels, 7, channels_last=True)
    autocast = torch.bfloat16 if settings.get("amp") == "bf16" else None
    meter = evaluate(model, loader, torch.nn.CrossEntropyLoss(), autocast=autocast, tta=settings.get("tta", False))
    loss, acc = meter.result(settings.get("lesson_metrics", False))
    assert result["test_acc"] == acc and result["test_loss"] == pytest.approx(loss, rel=1e-6)
    # each setting shows in the number: the other way of averaging, or float32, gives another one
    other_mean = meter.result(not settings.get("lesson_metrics", False))[0]
    assert result["test_loss"] != pytest.approx(other_mean, rel=1e-6)
    if autocast is not None:
        plain = evaluate(model, loader, torch.nn.CrossEntropyLoss(), autocast=None).result(True)[0]
        assert result["test_loss"] != pytest.approx(plain, rel=1e-6)


def test_damaged_run_files_of_our_own_are_read_as_absent_or_refused(tmp_path):
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.errors import UserError

    run = RunDir.create(tmp_path / "run")
    for text in ("not json", "[1, 2]", '{"test_acc": "high"}'):
        run.test_result.write_text(text)
        assert run.read_test_result() is None
    run.test_result.write_text('{"test_acc": 0.5}')
    assert run.read_test_result() == {"test_acc": 0.5}
    (tmp_path / "elsewhere.json").write_text('{"test_acc": 0.9}')
    run.test_result.unlink()
    run.test_result.symlink_to(tmp_path / "elsewhere.json")  # not a file this tool wrote
    assert run.read_test_result() is None
    for bad in ({"0": torch.zeros(64, 3, 5, 5)}, {0: torch.zeros(64, 3, 5, 4)}, [torch.zeros(64, 3, 5, 5)]):
        torch.save(bad, run.kernels)
        with pytest.raises(UserError, match="kernels.pt is damaged; delete it"):
            run.kernel_history()
    torch.save({3: torch.ones(64, 3, 5, 5), -1: torch.zeros(64, 3, 5, 5)}, run.kernels)
    assert list(run.kernel_history()) == [-1, 3]  # in epoch order


def test_a_run_with_a_split_resumes_and_whitens_on_the_kept_images_only(tmp_path, monkeypatch):
    """The whitening statistics come from the 150 training images the run keeps, never the 50
    held out; a stopped run resumes (its checkpoint's fingerprint is of the split it trains on)."""
    from alexnet_cifar.artifacts.checkpoint import load_checkpoint
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.errors import Interrupted
    from alexnet_cifar.training import loop

    from .conftest import stop_after

    seen = []
    real = loop.conv1_whitening
    monkeypatch.setattr(loop, "conv1_whitening", lambda images, eps: seen.append(len(images)) or real(images, eps))
    write_fake_cifar(tmp_path / "data", per_batch=40, n_test=30)
    data = load_cifar10(tmp_path / "data")
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.02, "valid_split": 50, "whiten": True})
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(Interrupted):
        loop.fit(cfg, data, run, show_progress=False, stop=stop_after(12))  # 10 batches an epoch: epoch 1
    history = loop.fit(cfg, data, run, resume=load_checkpoint(run.last, training=True), show_progress=False)
    assert [r.epoch for r in history] == [1] and seen == [150, 150]
