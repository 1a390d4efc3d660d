"""Atomic writes: a failure mid-write leaves the previous file, and no temp file."""

import pytest

from alexnet_cifar.artifacts.atomic import atomic_write
from alexnet_cifar.artifacts.checkpoint import load_checkpoint, save_checkpoint
from alexnet_cifar.model import AlexNet


def test_interrupted_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": AlexNet().state_dict(), "epochs_done": 1})
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half a checkpoint")
        raise RuntimeError("disk full")
    assert load_checkpoint(path)["epochs_done"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_a_write_makes_its_rename_durable_by_syncing_the_folder(tmp_path, monkeypatch):
    """fsync of the file keeps its bytes; only an fsync of the folder keeps the rename across a power
    cut. Both happen, the folder's after the file's."""
    import os
    import stat

    synced = []
    fsync = os.fsync

    def record(fd):
        info = os.fstat(fd)
        synced.append("folder" if stat.S_ISDIR(info.st_mode) and info.st_ino == tmp_path.stat().st_ino else "file")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    save_checkpoint(tmp_path / "last.pt", {"model": AlexNet().state_dict()})
    assert synced == ["file", "folder"]


def test_a_folder_that_cannot_be_synced_still_gets_the_file(tmp_path, monkeypatch):
    """Some file systems refuse to open or fsync a folder: the rename stands, no error."""
    import os

    def refuse(path, flags, *args):
        if path == tmp_path:
            raise PermissionError(13, "Permission denied")
        return opened(path, flags, *args)

    opened = os.open
    monkeypatch.setattr(os, "open", refuse)
    save_checkpoint(tmp_path / "last.pt", {"model": AlexNet().state_dict(), "epochs_done": 2})
    assert load_checkpoint(tmp_path / "last.pt")["epochs_done"] == 2


def test_bytes_and_buffers_are_written_whole(tmp_path):
    import io

    from alexnet_cifar.artifacts.atomic import write_bytes_atomic

    write_bytes_atomic(tmp_path / "a", b"plain bytes")
    write_bytes_atomic(tmp_path / "b", io.BytesIO(b"a buffer"))
    assert (tmp_path / "a").read_bytes() == b"plain bytes" and (tmp_path / "b").read_bytes() == b"a buffer"
