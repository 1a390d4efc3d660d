"""Which data a command uses: a folder (downloaded only when allowed), or synthetic images."""

import pytest

from alexnet_cifar.data.source import find_test_data, open_data
from alexnet_cifar.errors import UsageError, UserError


def test_open_data_reads_the_folder_given_else_the_environment(fake_root, tmp_path, monkeypatch):
    assert open_data(fake_root).folder == fake_root / "cifar-10-batches-py"
    monkeypatch.setenv("CIFAR10_ROOT", str(fake_root))
    assert open_data(None).folder == fake_root / "cifar-10-batches-py"


def test_missing_data_is_fetched_only_when_allowed(tmp_path, monkeypatch):
    from alexnet_cifar.data import source

    fetched = []
    monkeypatch.setattr(source, "download_cifar10", lambda root, log: fetched.append(root))
    with pytest.raises(UserError, match="CIFAR-10 is not in .*; run `alexnet-cifar download --data-dir"):
        open_data(tmp_path / "none")
    assert fetched == []
    with pytest.raises(UserError):  # the fake download puts nothing there: the read then fails
        open_data(tmp_path / "none", allow_download=True)
    assert fetched == [tmp_path / "none"]


def test_synthetic_takes_no_folder(fake_root):
    data = open_data(None, synthetic=True)
    assert data.folder is None and len(data.train) == 50_000
    with pytest.raises(UsageError, match="drop --data-dir or --synthetic"):
        open_data(fake_root, synthetic=True)


def test_report_data_comes_from_the_flag_then_the_run_then_nowhere(fake_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", str(tmp_path / "none"))
    assert find_test_data(fake_root, None).folder.parent == fake_root
    assert find_test_data(None, str(fake_root)).folder.parent == fake_root
    assert find_test_data(None, None) is None
