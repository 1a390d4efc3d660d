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
