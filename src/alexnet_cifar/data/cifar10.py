"""CIFAR-10 on disk -> uint8 tensors: find, verify, read and write the canonical python layout,
ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, each a pickled dict."""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..artifacts.atomic import atomic_write
from ..errors import DataError, UsageError

BATCH_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ROW_SIZE = 3 * 32 * 32  # 1024 red, then 1024 green, then 1024 blue values, each row-major
# md5 of the files in the official cifar-10-python.tar.gz (the sums torchvision checks).
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
DATA_ENV = "CIFAR10_ROOT"


def fix_hint(path: Path) -> str:
    """How to repair the copy that `path` (a batch file, batch folder or data folder) belongs to."""
    root = path.parent if path.name in (*TRAIN_FILES, TEST_FILE, META_FILE) else path
    if root.name == BATCH_DIR:
        root = root.parent
    return f"delete {root / BATCH_DIR} and run `alexnet-cifar download --data-dir {root}`, or copy the files again"


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 3, 32, 32) uint8
    labels: torch.Tensor  # (N,) int64, 0..9

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class CIFAR10:
    train: Split
    test: Split
    classes: tuple[str, ...]
    folder: Path | None  # None for synthetic data
    official: bool  # every file matches the official md5 sum

    def summary(self) -> str:
        """One line: where, how many images, per-class counts and how the files were verified."""
        if self.folder is None:
            return (
                f"SYNTHETIC random images ({len(self.train):,} train + {len(self.test):,} test) for timing only: "
                "accuracy on them means nothing"
            )
        train_counts = torch.bincount(self.train.labels, minlength=10).tolist()
        test_counts = torch.bincount(self.test.labels, minlength=10).tolist()
        check = "official md5 sums" if self.official else "structural check (not the official md5 sums)"
        return (
            f"CIFAR-10 at {self.folder}: {len(self.train):,} train + {len(self.test):,} test images, "
            f"per class {_span(train_counts)} train / {_span(test_counts)} test; verified by {check}"
        )


def _span(counts: Sequence[int]) -> str:
    lo, hi = min(counts), max(counts)
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data-dir if given, else $CIFAR10_ROOT, else ./data."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(DATA_ENV) or "data")


def batches_dir(root: Path) -> Path:
    """The folder holding the batch files: ROOT/cifar-10-batches-py, or ROOT itself if it has them."""
    if not (root / BATCH_DIR).is_dir() and (root / TEST_FILE).is_file():
        return root
    return root / BATCH_DIR


def missing_files(root: Path) -> list[str]:
    """Names of the CIFAR-10 files absent under `root`, in the canonical order."""
    folder = batches_dir(root)
    return [name for name in (*TRAIN_FILES, TEST_FILE, META_FILE) if not (folder / name).is_file()]


def has_cifar10(root: Path) -> bool:
    """Whether `root` holds every CIFAR-10 file (present, not yet checked: load_cifar10 checks)."""
    return root.is_dir() and not missing_files(root)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a CIFAR batch needs nothing else, and a
    foreign pickle must not be able to run code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)  # numpy 2 keeps these old names quiet, for old pickles


def read_pickle(path: Path) -> dict[str, object]:
    """A CIFAR pickle as a dict with str keys (py2 files give str under latin1, py3 ones bytes)."""
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}; {fix_hint(path)}") from None
    except Exception as exc:  # pickle raises many types on garbage: all mean the same to a user
        truncated = isinstance(exc, EOFError) or "truncated" in str(exc)
        reason = "truncated" if truncated else f"corrupt ({type(exc).__name__}: {exc})"
        raise DataError(f"{path} is {reason}, not a CIFAR-10 batch; {fix_hint(path)}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR-10 dict; {fix_hint(path)}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (N, 3072) uint8 rows and (N,) int64 labels, structurally checked."""
    entry = read_pickle(path)
    if "labels" not in entry or "data" not in entry:
        hint = " (it looks like CIFAR-100)" if "fine_labels" in entry else ""
        raise DataError(f"{path} has keys {sorted(entry)}, not CIFAR-10's 'data' and 'labels'{hint}; {fix_hint(path)}")
    data, labels = entry["data"], np.asarray(entry["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_SIZE:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' must be uint8 rows of {ROW_SIZE} values, got {shape}; {fix_hint(path)}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: {labels.size} labels for {len(data)} images; {fix_hint(path)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must be 0-9, found {labels.min()}..{labels.max()}; {fix_hint(path)}")
    return data, labels.astype(np.int64)


def read_classes(path: Path) -> tuple[str, ...]:
    names = read_pickle(path).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{path}: 'label_names' must list 10 class names, got {names!r}; {fix_hint(path)}")
    classes = []
    for name in names:
        try:
            classes.append(name.decode() if isinstance(name, bytes) else str(name))
        except UnicodeDecodeError:  # the official names are ASCII: other bytes mean a damaged or foreign file
            raise DataError(f"{path}: class name {name!r} is not UTF-8 text; {fix_hint(path)}") from None
    return tuple(classes)


def read_split(paths: Sequence[Path]) -> Split:
    parts = [read_batch(p) for p in paths]
    data = np.concatenate([d for d, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    if len(labels) == 0:  # a split with no images cannot be trained or tested on
        raise DataError(f"{', '.join(p.name for p in paths)} in {paths[0].parent} hold no images; {fix_hint(paths[0])}")
    images = torch.from_numpy(data).view(-1, 3, 32, 32)
    return Split(images=images, labels=torch.from_numpy(labels))


def file_digest(path: Path, algorithm: str = "md5", chunk: int = 1 << 22) -> str:
    """Hex digest of a file by any hashlib algorithm, read in chunks so a large archive never sits in memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_official(folder: Path) -> bool:
    return all(file_digest(folder / name, "md5") == md5 for name, md5 in OFFICIAL_MD5.items())


def load_cifar10(root: str | os.PathLike) -> CIFAR10:
    """Read and check all of CIFAR-10 under `root`; raises DataError with the fix on any problem.

    Files matching the official md5 sums are trusted; any other copy (a re-encoded mirror, the tiny
    fakes the tests write) is accepted after the structural checks, and `summary()` says which.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; {fix_hint(root)}, or pass --data-dir")
    missing = missing_files(root)
    if missing:
        raise DataError(f"CIFAR-10 files missing under {batches_dir(root)}: {', '.join(missing)}; {fix_hint(root)}")
    folder = batches_dir(root)
    return CIFAR10(
        train=read_split([folder / name for name in TRAIN_FILES]),
        test=read_split([folder / TEST_FILE]),
        classes=read_classes(folder / META_FILE),
        folder=folder,
        official=is_official(folder),
    )


def synthetic_cifar10(n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> CIFAR10:
    """Random images of CIFAR-10's shape and size, for timing where the real files cannot go."""
    gen = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        return Split(images=images, labels=torch.arange(n) % 10)

    return CIFAR10(train=split(n_train), test=split(n_test), classes=CLASSES, folder=None, official=False)


def write_batch(path: Path, data: np.ndarray, labels: Sequence[int], batch_label: str) -> None:
    """Write one batch file in the canonical layout (str keys), atomically."""
    names = [f"{path.name}_{i:05d}.png" for i in range(len(labels))]
    entry = {"batch_label": batch_label, "labels": [int(x) for x in labels], "data": data, "filenames": names}
    with atomic_write(path) as f:
        pickle.dump(entry, f, protocol=4)


def write_meta(path: Path, classes: Sequence[str] = CLASSES) -> None:
    with atomic_write(path) as f:
        pickle.dump({"num_cases_per_batch": 10000, "label_names": list(classes), "num_vis": ROW_SIZE}, f, protocol=4)


FINGERPRINT_STRIDE = 997  # every 997th image of each split (about 60 of 60,000) joins the labels in the hash


VALID_SEED = 0  # one validation split for every run and device: runs that use one stay comparable


def hold_out(data: CIFAR10, n: int) -> CIFAR10:
    """`data` with `n` training images (n / 10 of each class, drawn with VALID_SEED) moved out of
    training into the evaluation split, in place of the test set: epochs and settings are then
    chosen without looking at the test set."""
    per_class = n // len(data.classes)
    gen = torch.Generator().manual_seed(VALID_SEED)
    labels = data.train.labels
    held = []
    for c in range(len(data.classes)):
        members = (labels == c).nonzero().flatten()
        if len(members) <= per_class:
            raise UsageError(
                f"valid_split = {n} holds out {per_class} images of class {data.classes[c]!r}, which has "
                f"{len(members)} training images; use a smaller --valid-split"
            )
        held.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    chosen = torch.cat(held).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[chosen] = False
    images = data.train.images
    return replace(data, train=Split(images[keep], labels[keep]), test=Split(images[chosen], labels[chosen]))


def data_fingerprint(data: CIFAR10) -> str:
    """A short hash of what a run trains and tests on: the split sizes, every label and a sample of
    images. A resume compares it, so a run never continues on other data than it started on."""
    digest = hashlib.sha256()
    for split in (data.train, data.test):
        digest.update(f"{tuple(split.images.shape)};".encode())
        digest.update(split.labels.to(torch.int64).numpy().tobytes())
        digest.update(split.images[::FINGERPRINT_STRIDE].contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
