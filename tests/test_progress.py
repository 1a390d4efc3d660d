"""Progress bars: drawn on a terminal only, never into logs or pipes; --quiet turns them off."""

import functools
import json
import os
import sys

import pytest

from .conftest import run_cli


def train_command(fake_root, run_dir, *extra: str) -> list[str]:
    """`alexnet-cifar train` for one epoch on the fake data, as a subprocess's argv."""
    args = ["train", "--epochs", "1", "--batch-size", "16", "--data-dir", str(fake_root), "--run-dir", str(run_dir)]
    return [sys.executable, "-m", "alexnet_cifar", *args, *extra]


@pytest.mark.beyond_core
def test_train_with_report_and_no_progress_bars_off_a_terminal(tmp_path, fake_root, capsys):
    args = ["train", "--epochs", "1", "--batch-size", "16", "--data-dir", fake_root, "--run-dir", tmp_path / "run"]
    code, _, err = run_cli(capsys, *args, "--report")  # captured stderr is no terminal
    assert code == 0, err
    assert (tmp_path / "run" / "report.html").exists()
    assert "img/s" not in err and "%|" not in err  # no progress bar
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["epochs"] == 1


@pytest.mark.process
def test_progress_bar_shows_on_a_terminal(tmp_path, fake_root):
    """The command under a pseudo-terminal draws a bar with images/s."""
    import pty

    chunks = []

    def read(fd):
        data = os.read(fd, 4096)
        chunks.append(data)
        return data

    # a fresh pty has a 0x0 window, where tqdm draws nothing: give it a terminal's size
    cmd = train_command(fake_root, tmp_path / "run")
    status = pty.spawn(["sh", "-c", 'stty rows 30 cols 120 && exec "$@"', "sh", *cmd], read)
    assert os.waitstatus_to_exitcode(status) == 0
    output = b"".join(chunks).decode(errors="replace")
    assert "img/s" in output and "epoch 0" in output


def test_quiet_removes_the_bar_from_a_terminal(tmp_path, fake_root, capsys, monkeypatch):
    """In this process, with stderr claiming to be a terminal: a bar without --quiet, none with it."""
    args = ["train", "--epochs", "1", "--batch-size", "16", "--data-dir", fake_root]
    errs = []
    from alexnet_cifar.progress import progress_bar
    from alexnet_cifar.training import loop

    drawn = functools.partial(progress_bar, mininterval=0, miniters=1)  # every update, the last (100%) too
    monkeypatch.setattr(loop, "progress_bar", drawn)
    for name, extra in (("bar", []), ("quiet", ["--quiet"])):
        capsys.readouterr()
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        code, out, err = run_cli(capsys, *args, "--run-dir", tmp_path / name, *extra)
        assert code == 0, err
        errs.append(err)
    assert "img/s" in errs[0] and "img/s" not in errs[1] and "Epoch 0." in out
    assert "epoch 0: 100%" in errs[0] and "| 100/100 [" in errs[0]  # the fake set's 100 images, counted


def test_a_library_caller_gets_a_bar_unless_it_asks_for_none(tmp_path, fake_root, monkeypatch):
    """fit's default is the command's: progress shown (on a terminal, where tqdm draws)."""
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.config import resolve_config
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.progress import progress_bar
    from alexnet_cifar.training import loop

    asked = []

    def recording(total, desc, enabled, **kwargs):
        asked.append(enabled)
        return progress_bar(total, desc, False, **kwargs)

    monkeypatch.setattr(loop, "progress_bar", recording)
    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 16, "device": "cpu"})
    loop.fit(cfg, load_cifar10(fake_root), RunDir.create(tmp_path / "shown"))
    loop.fit(cfg, load_cifar10(fake_root), RunDir.create(tmp_path / "none"), show_progress=False)
    assert asked == [True, False]
