"""The run directory: it replaces only runs it can prove it wrote, and only once the new run has
started; metrics.csv survives a cut last row; config.json keeps the first start and lists resumes."""

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from alexnet_cifar.artifacts.run_dir import MARKER, RunDir
from alexnet_cifar.errors import UserError
from alexnet_cifar.training.metrics import EpochRecord

from .conftest import TINY, assert_one_line_error, run_cli, tiny_fit


def record(epoch: int) -> EpochRecord:
    return EpochRecord(epoch, 1.5 - epoch / 10, 0.4, 1.4, 0.45 + epoch / 100, 0.1, 2.0, 1000.0)


def fake_run(path, *extra: str) -> None:
    """A folder that looks like this tool's run, as far as --overwrite can tell."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"config": {"recipe": "seed"}, "environment": {"alexnet_cifar": "1"}}))
    (path / "last.pt").write_bytes(b"old checkpoint")
    for name in extra:
        (path / name).write_text("user's file")


def config_only(path, text: str) -> None:
    path.mkdir(parents=True)
    (path / "config.json").write_text(text)


def contents(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def test_existing_run_dir_is_refused_without_overwrite(tmp_path):
    fake_run(tmp_path / "run")
    before = contents(tmp_path / "run")
    with pytest.raises(UserError, match="already exists.*--overwrite"):
        RunDir.create(tmp_path / "run")
    assert contents(tmp_path / "run") == before


def test_an_empty_folder_made_beforehand_takes_the_run(tmp_path):
    (tmp_path / "run").mkdir()  # say, by a job script
    run = RunDir.create(tmp_path / "run")
    assert run.replaced is None and [p.name for p in run.path.iterdir()] == [MARKER]


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: (p.mkdir(), (p / "model.pt").write_bytes(b"precious")), "not a run directory of alexnet-cifar"),
        (lambda p: fake_run(p, "notes.txt"), "holds 'notes.txt', which alexnet-cifar did not write"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "not a run directory"),
        (lambda p: (fake_run(p), (p / "tensorboard").mkdir(), (p / "tensorboard" / "x.txt").write_text("")), "tensorb"),
        (lambda p: (fake_run(p), (p / "best.pt").mkdir(), (p / "best.pt" / "thesis.txt").write_text("")), "best.pt"),
        (lambda p: (fake_run(p), (p / "tensorboard" / "events.out.tfevents.photos").mkdir(parents=True)), "tensorb"),
        (lambda p: fake_run(p, ".notes.2024.tmp"), ".notes.2024.tmp"),
        (lambda p: fake_run(p, "report.html"), "without the mark of alexnet-cifar report"),
        (lambda p: (fake_run(p), (p / "model.pt").symlink_to(p.parent)), "model.pt"),
        (lambda p: config_only(p, "[1]"), "not a run"),
        (lambda p: config_only(p, '{"config": {}, "environment": {}}'), "not a run"),
        (lambda p: config_only(p, '{"config": 1, "environment": {"alexnet_cifar": "1"}}'), "not a run"),
        (lambda p: (fake_run(p), (p / "photos").mkdir()), "photos"),
    ],
    ids=[
        "no config",
        "foreign file",
        "foreign config",
        "foreign tensorboard file",
        "run name as a folder",
        "event name as a folder",
        "temp-like name",
        "user's report.html",
        "run name as a link",
        "config.json a list",
        "config.json without our mark",
        "config.json without a config",
        "a sub-folder",
    ],
)
def test_overwrite_refuses_folders_it_did_not_write(tmp_path, make, reason):
    path = tmp_path / "run"
    make(path)
    before = contents(path)
    with pytest.raises(UserError, match="--overwrite refused") as info:
        RunDir.create(path, overwrite=True)
    assert reason in str(info.value) and "\n" not in str(info.value)
    assert contents(path) == before


def test_overwrite_refuses_the_current_folder_its_parents_and_the_data(tmp_path, monkeypatch):
    fake_run(tmp_path / "run")
    monkeypatch.chdir(tmp_path / "run")
    for path in (tmp_path / "run", tmp_path):
        refused = f"^--overwrite refused: {re.escape(str(path))} is the current folder or holds it;"
        with pytest.raises(UserError, match=refused):
            RunDir.create(path, overwrite=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="data folder"):
        RunDir.create(tmp_path / "run", overwrite=True, protect=(tmp_path / "run" / "cifar-10-batches-py",))
    assert (tmp_path / "run" / "last.pt").read_bytes() == b"old checkpoint"


def test_overwrite_moves_the_old_run_aside_until_the_new_one_starts(tmp_path):
    path = tmp_path / "run"
    fake_run(path)
    before = contents(path)
    run = RunDir.create(path, overwrite=True)
    assert run.replaced is not None and contents(run.replaced) == before
    assert [p.name for p in path.iterdir()] == [".alexnet-cifar-run"]  # only the new run's marker
    run.abandon()  # the new run failed before its first checkpoint
    assert contents(path) == before and [p.name for p in tmp_path.iterdir()] == ["run"]
    run = RunDir.create(path, overwrite=True)
    run.started()
    assert [p.name for p in path.iterdir()] == [".alexnet-cifar-run"] and [p.name for p in tmp_path.iterdir()] == [
        "run"
    ]


def test_train_overwrite_in_a_folder_of_user_files_deletes_nothing(fake_root, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(home)
    code, _, err = run_cli(capsys, "train", "--data-dir", fake_root, "--run-dir", ".", "--overwrite", *TINY)
    assert_one_line_error(code, err, "--overwrite refused", "current folder")
    assert (home / "thesis.tex").read_text() == "years of work"


def test_train_overwrite_of_the_data_folder_deletes_nothing(fake_root, capsys):
    before = contents(fake_root / "cifar-10-batches-py")
    code, _, err = run_cli(capsys, "train", "--data-dir", fake_root, "--run-dir", fake_root, "--overwrite", *TINY)
    assert_one_line_error(code, err, "--overwrite refused")
    assert contents(fake_root / "cifar-10-batches-py") == before


def test_refused_new_run_leaves_the_old_run_intact(fake_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data-dir", fake_root, "--run-dir", run, *TINY)[0] == 0
    before = contents(run)
    args = ("train", "--data-dir", fake_root, "--run-dir", run, "--overwrite", *TINY)
    code, _, err = run_cli(capsys, *args, "--seed", "99999999999999999999999")
    assert_one_line_error(code, err, "seed = 99999999999999999999999 is not allowed", status=2)
    code, _, err = run_cli(capsys, *args, "--lr", "1e6")  # starts, then diverges before its first checkpoint
    assert_one_line_error(code, err, "NaN or infinite")
    assert contents(run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]
    assert run_cli(capsys, *args, "--seed", "1")[0] == 0  # a good new run replaces it
    assert contents(run)["model.pt"] != before["model.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]


def test_metrics_with_a_cut_last_row_is_repaired_not_appended_onto(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_metrics([record(0), record(1)])
    text = run.metrics.read_text()
    assert run.metrics.read_bytes().count(b"\n") == 3 and b"\r" not in run.metrics.read_bytes()  # on every OS
    run.metrics.write_text(text[:-20])  # a crash in the middle of the last row
    assert run.history() == [record(0)]
    run.append_metrics(record(1))
    assert run.metrics.read_text() == text and run.history() == [record(0), record(1)]


HEADER = "epoch,train_loss,train_acc,valid_loss,valid_acc,lr,seconds,images_per_s"


@pytest.mark.parametrize(
    "text, what",
    [
        ("epoch,loss\n0,1\n", f"line 1 is not the header {HEADER};"),
        (f"{HEADER}\n0,x,1,1,1,1,1,1\n1,1,1,1,1,1,1,1\n", "line 2 is not a row of 8 numbers;"),
        (b"\xff\xfe garbage", "unreadable ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte);"),
    ],
    ids=["header", "garbled row", "not text"],
)
def test_damaged_metrics_is_one_line_error(tmp_path, text, what):
    run = RunDir.create(tmp_path / "run")
    run.metrics.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UserError) as info:
        run.history()
    assert str(info.value).startswith(f"{run.metrics} is damaged: {what}") and "\n" not in str(info.value)


def test_metrics_the_disk_cannot_read_is_one_line_with_the_reason(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path / "run")
    run.write_metrics([record(0)])

    def failing(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "read_text", failing)
    with pytest.raises(UserError, match=r"is damaged: unreadable \(Input/output error\); restore it"):
        run.history()


def test_config_json_keeps_the_first_start_and_records_each_resume(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_config({"recipe": "seed", "epochs": 2}, torch.device("cpu"), {"world_size": 2, "data_folder": "/d"})
    first = json.loads(run.config.read_text())
    run.write_config({"recipe": "seed", "epochs": 3}, torch.device("cpu"), {"world_size": 1, "data_folder": "/d"})
    info = json.loads(run.config.read_text())
    assert info["environment"] == first["environment"] and info["environment"]["world_size"] == 2
    assert info["config"]["epochs"] == 3 and len(info["resumes"]) == 1 and info["resumes"][0]["world_size"] == 1


def test_a_hand_edited_resumes_entry_that_is_no_list_starts_the_list_anew(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_config({"recipe": "seed"}, torch.device("cpu"))
    info = json.loads(run.config.read_text())
    run.config.write_text(json.dumps({**info, "resumes": "edited by hand"}))
    run.write_config({"recipe": "seed"}, torch.device("cpu"), {"world_size": 3})
    (resume,) = json.loads(run.config.read_text())["resumes"]
    assert resume["world_size"] == 3


def test_a_crash_leaves_no_half_written_metrics(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path / "run")
    run.write_metrics([record(0)])
    before = run.metrics.read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(UserError, match=r"cannot write .*metrics.csv: No space left on device \(ENOSPC\)"):
        run.append_metrics(record(1))
    assert run.metrics.read_bytes() == before and sorted(p.name for p in run.path.iterdir()) == [
        ".alexnet-cifar-run",
        "metrics.csv",
    ]


def test_truncate_metrics_drops_epochs_a_resume_trains_again(tmp_path):
    history, run = tiny_fit(tmp_path)
    before = run.metrics.read_text()
    run.truncate_metrics(2)  # nothing to drop
    assert run.metrics.read_text() == before
    run.truncate_metrics(1)
    assert run.history() == history[:1] and run.metrics.read_text() == "".join(before.splitlines(True)[:2])


def test_overwrite_through_a_link_drops_the_link_not_what_it_points_to(tmp_path):
    fake_run(tmp_path / "target")
    before = contents(tmp_path / "target")
    (tmp_path / "run").symlink_to(tmp_path / "target")
    run = RunDir.create(tmp_path / "run", overwrite=True)
    run.started()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "target"]  # no stale .run.replaced-PID link
    assert contents(tmp_path / "target") == before and not (tmp_path / "run").is_symlink()


def test_default_run_dir_is_dated_under_runs(tmp_path, monkeypatch):
    from alexnet_cifar.artifacts.run_dir import default_run_dir

    monkeypatch.chdir(tmp_path)
    assert re.fullmatch(r"runs/20\d{6}-\d{6}-fast", default_run_dir("fast").as_posix())
    monkeypatch.setattr(time, "strftime", lambda fmt: "20261129-120000")  # two runs in one second
    first = default_run_dir("fast")
    assert first == Path("runs/20261129-120000-fast")
    first.mkdir(parents=True)
    assert default_run_dir("fast") == Path("runs/20261129-120000-fast-2")


def test_overwrite_accepts_a_temp_file_a_crash_left_of_a_run_file(tmp_path):
    """`.last.pt.1234.tmp` is atomic_write's own leftover: the run is still provably ours."""
    path = tmp_path / "run"
    fake_run(path)
    (path / ".last.pt.1234.tmp").write_bytes(b"half a checkpoint")
    run = RunDir.create(path, overwrite=True)
    assert run.replaced is not None and ".last.pt.1234.tmp" in os.listdir(run.replaced)
    run.started()


def test_a_moved_aside_run_that_resists_removal_does_not_stop_the_new_one(tmp_path, monkeypatch, caplog):
    path = tmp_path / "run"
    fake_run(path)
    run = RunDir.create(path, overwrite=True)
    shutil.rmtree(run.replaced)  # someone removed it meanwhile: nothing to say
    caplog.clear()
    run.started()
    assert run.replaced is None and not caplog.records
    fake_run(tmp_path / "other")
    run = RunDir.create(tmp_path / "other", overwrite=True)
    aside = run.replaced
    caplog.clear()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "unlink", refuse)  # a file in it will not go
    run.started()
    assert run.replaced is None and aside.exists()
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == f"the old run moved aside to {aside} is not all removed (Permission denied); delete it"


def test_abandon_twice_or_after_the_old_run_vanished_loses_nothing(tmp_path):
    path = tmp_path / "run"
    fake_run(path)
    before = contents(path)
    run = RunDir.create(path, overwrite=True)
    run.abandon()
    run.abandon()  # a second call (an error while handling an error) must not remove the old run again
    assert contents(path) == before
    run = RunDir.create(path, overwrite=True)
    shutil.rmtree(run.replaced)  # someone removed the moved-aside run meanwhile
    run.abandon()  # nothing to put back: no error either


def test_overwrite_refuses_the_home_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    fake_run(home)
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(UserError, match=f"^--overwrite refused: {re.escape(str(home))} is the home folder;"):
        RunDir.create(home, overwrite=True)


def test_an_unreadable_report_is_not_taken_for_ours(tmp_path, monkeypatch):
    path = tmp_path / "run"
    fake_run(path, "report.html")
    real = Path.read_bytes

    def unreadable(self):
        if self.name == "report.html":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(UserError, match="report.html"):
        RunDir.create(path, overwrite=True)


def test_config_json_records_where_and_how_the_run_was_made(tmp_path, monkeypatch):
    """What a user checks to repeat a run: versions, machine, device, threads, command, commit, time."""
    import platform
    import subprocess

    from alexnet_cifar import __version__

    monkeypatch.setattr("sys.argv", ["alexnet-cifar", "train", "--epochs", "2"])
    monkeypatch.chdir(tmp_path)  # the commit is the package's, wherever the command runs
    run = RunDir.create(tmp_path / "run")
    before = time.time()
    run.write_config({"recipe": "seed"}, torch.device("cpu"))
    env = json.loads(run.config.read_text())["environment"]
    started = time.mktime(time.strptime(env.pop("started"), "%Y-%m-%dT%H:%M:%S%z"))
    assert before - 1 <= started <= time.time() + 1
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    assert env == {
        "alexnet_cifar": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": models[0] if models else platform.processor() or platform.machine(),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "command": ["alexnet-cifar", "train", "--epochs", "2"],
        "git_commit": git.stdout.strip() or None,
        "world_size": 1,  # unless the run says otherwise
        "data_folder": None,
    }


def test_each_resume_records_its_own_start(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path / "run")
    monkeypatch.setattr("sys.argv", ["alexnet-cifar", "train"])
    run.write_config({"recipe": "seed"}, torch.device("cpu"), {"world_size": 2, "data_folder": "/a"})
    monkeypatch.setattr("sys.argv", ["alexnet-cifar", "train", "--resume", "run"])
    facts = {"world_size": 1, "data_folder": "/b", "autocast": "bf16", "device_policy": "amp: bf16", "other": 1}
    run.write_config({"recipe": "seed"}, torch.device("cpu"), facts)
    run.write_config({"recipe": "seed"}, torch.device("cpu"), facts)
    info = json.loads(run.config.read_text())
    assert info["environment"]["data_folder"] == "/a" and info["environment"]["command"] == ["alexnet-cifar", "train"]
    first, second = info["resumes"]
    assert first == {  # this start's facts, each named: nothing more, nothing less
        "started": first["started"],
        "command": ["alexnet-cifar", "train", "--resume", "run"],
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "world_size": 1,
        "git_commit": info["environment"]["git_commit"],
        "data_folder": "/b",
        "autocast": "bf16",
        "device_policy": "amp: bf16",
    }
    assert second == {**first, "started": second["started"]}


def test_a_machine_without_git_or_proc_still_gets_a_config(tmp_path, monkeypatch):
    import platform
    import subprocess

    from alexnet_cifar.artifacts import run_dir

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert run_dir.git_commit() is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 128, "", "not a repository"))
    assert run_dir.git_commit() is None
    real_read = Path.read_text

    def no_proc(self, *args, **kwargs):
        if str(self) == "/proc/cpuinfo":
            raise PermissionError(13, "Permission denied")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_proc)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert run_dir.cpu_name() == platform.machine()
    monkeypatch.setattr(platform, "processor", lambda: "x86_64 Family 25")
    assert run_dir.cpu_name() == "x86_64 Family 25"
    cpuinfo = "processor\t: 0\nmodel name\t: Vendor CPU @ 2.0GHz: rev 2\nflags\t: fpu\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: cpuinfo if str(self) == "/proc/cpuinfo" else "")
    assert run_dir.cpu_name() == "Vendor CPU @ 2.0GHz: rev 2"  # a colon in the name stays


def test_a_resume_names_what_the_folder_lacks(tmp_path):
    for name, what in (("none", "does not exist"), ("empty", "holds no last.pt checkpoint")):
        if name == "empty":
            (tmp_path / name).mkdir()
        refused = f"^cannot resume {re.escape(str(tmp_path / name))}: it {what}; pass a run directory"
        with pytest.raises(UserError, match=refused):
            RunDir.open_existing(tmp_path / name)
    fake_run(tmp_path / "run")  # its last.pt is checked when loaded, not here
    assert RunDir.open_existing(tmp_path / "run").path == tmp_path / "run"


def test_a_report_file_is_ours_only_if_it_is_a_readable_regular_file_with_the_mark(tmp_path, monkeypatch):
    from alexnet_cifar.artifacts import run_dir
    from alexnet_cifar.artifacts.run_dir import REPORT_MARK, has_report_mark

    ours, theirs = tmp_path / "report.html", tmp_path / "notes.html"
    ours.write_text(f"<html><!-- {REPORT_MARK} -->" + "x" * 20_000)
    theirs.write_text("<html>" + "x" * 20_000)
    (tmp_path / "link.html").symlink_to(ours)
    (tmp_path / "folder.html").mkdir()
    assert has_report_mark(ours) and not has_report_mark(theirs)
    assert not has_report_mark(tmp_path / "link.html") and not has_report_mark(tmp_path / "folder.html")

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(run_dir, "open", unreadable, raising=False)  # as for a file of another user
    assert not has_report_mark(ours)


def test_the_data_folder_is_read_back_only_as_a_path_string(tmp_path):
    run = RunDir.create(tmp_path / "run")
    for recorded, read in (("/d", "/d"), ("/d\0/etc", None), (5, None), (None, None)):
        run.write_config({"recipe": "seed"}, torch.device("cpu"), {"world_size": 1, "data_folder": recorded})
        assert RunDir(run.path).data_folder() == read, recorded
        run.config.unlink()  # each time a first start


@pytest.mark.parametrize("level", [logging.NOTSET, logging.WARNING])
def test_train_log_gets_the_info_lines_of_a_library_caller_without_overriding_a_chosen_level(tmp_path, level):
    logger = logging.getLogger("alexnet_cifar")
    before = logger.level
    logger.setLevel(level)
    run = RunDir.create(tmp_path / "run")
    handler = run.attach_log()
    try:
        logger.info("an info line")
        logger.warning("a warning")
    finally:
        logger.removeHandler(handler)
        handler.close()
        after = logger.level
        logger.setLevel(before)
    if level == logging.NOTSET:  # nobody chose: train.log gets everything from INFO up
        assert after == logging.INFO and run.log_file.read_text() == "an info line\na warning\n"
    else:  # the caller's choice stands
        assert after == logging.WARNING and run.log_file.read_text() == "a warning\n"


def test_closing_tensorboard_twice_or_after_a_failure_is_quiet_and_a_later_epoch_reopens_it(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Broken:
        def close(self):
            raise OSError(28, "No space left on device")

    run = RunDir.create(tmp_path / "run")
    run._writer = Broken()
    run.close()  # a writer that fails to close is no error at the end of a run
    run.close()
    run.append_metrics(record(0))
    run.close()
    run.append_metrics(record(1))  # the same RunDir goes on (a resume in this process): a new writer
    run.close()
    steps = set()
    for events_file in sorted(run.tensorboard_dir.iterdir()):
        events = EventAccumulator(str(events_file))
        events.Reload()
        steps |= {e.step for e in events.Scalars("valid_acc")}
    assert steps == {0, 1}


def test_without_tensorboard_the_run_asks_once_and_says_nothing(tmp_path, monkeypatch, caplog):
    """The [tensorboard] extra missing: metrics.csv is the record, with no message and no second try."""
    import sys

    run = RunDir.create(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import raises ImportError
    with caplog.at_level("INFO", logger="alexnet_cifar"):
        run.append_metrics(record(0))
        monkeypatch.delitem(sys.modules, "torch.utils.tensorboard")  # importable again mid-run
        run.append_metrics(record(1))
    run.close()
    assert caplog.messages == [] and not run.tensorboard_dir.exists()
    assert [r.epoch for r in run.history()] == [0, 1]


class RunsCode:
    """Unpickled by a full unpickler, it creates `marker`: what a crafted file could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("torch_default", ["safe", "unsafe"])
def test_a_kernels_file_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch, torch_default):
    if torch_default == "unsafe":  # torch < 2.6's default, which pyproject.toml allows
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    run = RunDir.create(tmp_path / "run")
    torch.save({-1: RunsCode(tmp_path / "ran")}, run.kernels)
    with pytest.raises(UserError, match="kernels.pt is damaged"):
        run.kernel_history()
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"environment": {}}',  # no config
        '{"config": 5, "environment": {}}',
        '{"config": {"recipe": "seed"}, "environment": 5}',
    ],
)
def test_a_damaged_config_json_is_one_line(tmp_path, text):
    run = RunDir.create(tmp_path / "run")
    run.config.write_text(text)
    with pytest.raises(UserError, match=r"config\.json is damaged \(not this tool's JSON\); restore it or start a new"):
        run.read_info()
    assert run.info_or_empty() == {}  # a report goes on without it
