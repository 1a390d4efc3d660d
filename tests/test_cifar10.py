import hashlib
import inspect
import io
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet_cifar.data.cifar10 import (
    CLASSES,
    file_digest,
    fix_hint,
    load_cifar10,
    missing_files,
    read_batch,
    resolve_data_dir,
)
from alexnet_cifar.errors import DataError

from .conftest import write_fake_cifar


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_loads_fake_copy_with_str_or_bytes_keys(tmp_path, bytes_keys):
    root = write_fake_cifar(tmp_path, per_batch=20, n_test=30, bytes_keys=bytes_keys)
    data = load_cifar10(root)
    assert data.train.images.shape == (100, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (30, 3, 32, 32)
    assert data.train.labels.dtype == torch.int64 and len(data.train.labels) == 100
    assert data.classes == CLASSES
    assert data.official is False


def test_pixel_layout_is_channel_major_row_major(fake_root):
    with open(fake_root / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        raw = pickle.load(f)
    data = load_cifar10(fake_root)
    row = raw["data"][3]  # 4th image of batch 2 = image 20 + 3 of the train split
    image = data.train.images[23]
    assert image[0, 0, 0] == row[0] and image[1, 0, 0] == row[1024] and image[2, 0, 0] == row[2048]
    assert image[0, 1, 2] == row[32 + 2]  # red, y=1, x=2
    assert data.train.labels[23] == raw["labels"][3]


def test_summary_counts_images_and_classes(fake_root):
    line = load_cifar10(fake_root).summary()
    assert "100 train + 30 test images" in line
    assert "per class 10 train / 3 test" in line
    assert "structural check" in line and "\n" not in line


def test_summary_gives_the_range_of_uneven_class_counts(fake_root):
    data = load_cifar10(fake_root)
    data.train.labels[0] = (data.train.labels[0] + 1) % 10  # one class gains an image, another loses one
    assert "per class 9-11 train / 3 test" in data.summary()
    for split in (data.train, data.test):  # the last class missing altogether: it counts 0
        split.labels[split.labels == 9] = 0
    assert "per class 0-20 train / 0-6 test" in data.summary()


def test_data_folder_may_be_the_batch_folder_itself(fake_root):
    assert len(load_cifar10(fake_root / "cifar-10-batches-py").train) == 100


def test_missing_folder_and_missing_file(tmp_path, fake_root):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    folder = fake_root / "cifar-10-batches-py"
    os.remove(folder / "data_batch_3")
    assert missing_files(fake_root) == ["data_batch_3"]
    with pytest.raises(DataError) as info:
        load_cifar10(fake_root)
    assert str(info.value) == f"CIFAR-10 files missing under {folder}: data_batch_3; {fix_hint(fake_root)}"


def test_an_empty_data_folder_is_told_where_the_files_belong(tmp_path):
    with pytest.raises(DataError, match=f"missing under {tmp_path / 'cifar-10-batches-py'}: data_batch_1, "):
        load_cifar10(tmp_path)


def test_the_batch_folder_wins_over_a_stray_test_batch_beside_it(fake_root):
    (fake_root / "test_batch").write_bytes(b"a stray copy, not CIFAR-10")
    assert len(load_cifar10(fake_root).test) == 30


def _corrupt(path: Path, content: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(content)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda raw: raw[: len(raw) // 2], "truncated"),
        (lambda raw: b"\x00garbage" * 100, "corrupt"),
        (lambda raw: b"", "truncated"),
        (lambda raw: pickle.dumps([1, 2, 3]), "holds a list"),
        (
            lambda raw: pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "fine_labels": [0] * 4}),
            r"has keys \['data', 'fine_labels'\], not CIFAR-10's 'data' and 'labels'"
            r" \(it looks like CIFAR-100\); delete",
        ),
        (
            lambda raw: pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "label": [0] * 4}),
            r"has keys \['data', 'label'\], not CIFAR-10's 'data' and 'labels'; delete",
        ),
        (
            lambda raw: pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}),
            r"'data' must be uint8 rows of 3072 values, got \(4, 100\); delete",
        ),
        (lambda raw: pickle.dumps({"data": [[0] * 3072], "labels": [0]}), r"got None; delete"),
        (lambda raw: pickle.dumps({"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}), "uint8"),
        (lambda raw: pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0] * 3}), "3 labels for 4"),
        (lambda raw: pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}), "labels must be 0-9"),
    ],
)
def test_bad_batch_file_is_a_one_line_error_naming_the_file(fake_root, make, message):
    path = fake_root / "cifar-10-batches-py" / "data_batch_1"
    _corrupt(path, make(path.read_bytes()))
    with pytest.raises(DataError, match=message) as info:
        load_cifar10(fake_root)
    assert "data_batch_1" in str(info.value) and "\n" not in str(info.value)


def test_pickle_that_would_run_code_is_refused(fake_root, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = fake_root / "cifar-10-batches-py" / "test_batch"
    _corrupt(path, pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(DataError, match=r"test_batch is corrupt \(UnpicklingError: unexpected object \w+\.system\)"):
        read_batch(path)
    assert not marker.exists()


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's str (BINSTRING), and numpy under its old module name, as the
    official CIFAR-10 files (pickled by Python 2) hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_str2(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str2


def _python2_pickle(obj: object) -> bytes:
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(obj)
    return out.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def test_a_python2_pickle_like_the_official_files_loads_quietly(fake_root):
    """Python 2's str holds the keys and the raw pixels: they read as latin-1 (every byte value),
    and numpy's old module name is allowed without its deprecation warning."""
    path = fake_root / "cifar-10-batches-py" / "data_batch_1"
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)  # bytes 0..255
    _corrupt(path, _python2_pickle({b"batch_label": b"training batch 1 of 5", b"labels": [3, 9], b"data": data}))
    assert (
        b"numpy.core.multiarray" in path.read_bytes()
        and pickle.BINSTRING + struct.pack("<i", 4) + b"data" in path.read_bytes()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows, labels = read_batch(path)
    assert np.array_equal(rows, data) and labels.tolist() == [3, 9]


def test_a_class_list_of_nine_names_is_refused(fake_root):
    meta = fake_root / "cifar-10-batches-py" / "batches.meta"
    _corrupt(meta, pickle.dumps({"label_names": list(CLASSES[:9]), "num_vis": 3072}))
    with pytest.raises(DataError, match="'label_names' must list 10 class names, got \\['airplane'"):
        load_cifar10(fake_root)


def test_file_digest_is_md5_unless_asked_and_reads_in_chunks(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 1000)
    assert file_digest(path) == hashlib.md5(path.read_bytes()).hexdigest()
    assert file_digest(path, "sha256", chunk=1000) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR10_ROOT", str(tmp_path))
    assert resolve_data_dir("given") == Path("given")
    assert resolve_data_dir(None) == tmp_path
    monkeypatch.delenv("CIFAR10_ROOT")
    assert resolve_data_dir(None) == Path("data")


@pytest.mark.slow
def test_real_cifar10(real_root):
    data = load_cifar10(real_root)
    assert (len(data.train), len(data.test)) == (50_000, 10_000)
    assert torch.bincount(data.train.labels).tolist() == [5000] * 10
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    mean = data.train.images.sum(dim=(0, 2, 3), dtype=torch.int64).double() / (50_000 * 32 * 32 * 255)
    torch.testing.assert_close(mean, torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.float64), atol=1e-3, rtol=0)
    # known values of the official files: first train image is a frog with pixel (0,0) = (59, 62, 63)
    assert data.train.labels[0] == 6 and data.train.images[0, :, 0, 0].tolist() == [59, 62, 63]
    assert data.test.labels[0] == 3 and data.test.images[0, :, 0, 0].tolist() == [158, 112, 49]
    assert data.classes == CLASSES


def test_class_name_that_is_not_utf8_is_a_one_line_error(tmp_path):
    root = write_fake_cifar(tmp_path, bytes_keys=True)
    meta = root / "cifar-10-batches-py" / "batches.meta"
    names = [c.encode() for c in CLASSES[:9]] + [b"\xff\xfetruck"]
    meta.write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}))
    with pytest.raises(DataError, match=r"batches.meta: class name b'\\xff\\xfetruck' is not UTF-8 text") as info:
        load_cifar10(root)
    assert "alexnet-cifar download" in str(info.value) and "\n" not in str(info.value)


def test_written_batches_keep_the_canonical_layout(tmp_path):
    """What the npm route writes reads like the official files, for other readers too."""
    from alexnet_cifar.data.cifar10 import write_batch, write_meta

    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    write_batch(tmp_path / "data_batch_1", data, [3, 7], "training batch 1 of 5")
    write_meta(tmp_path / "batches.meta")
    with open(tmp_path / "data_batch_1", "rb") as f:
        entry = pickle.load(f)
    assert entry["batch_label"] == "training batch 1 of 5" and entry["labels"] == [3, 7]
    assert np.array_equal(entry["data"], data) and len(entry["filenames"]) == 2
    assert all(isinstance(n, str) and n.endswith(".png") for n in entry["filenames"])
    with open(tmp_path / "batches.meta", "rb") as f:
        meta = pickle.load(f)
    assert meta == {"num_cases_per_batch": 10000, "label_names": list(CLASSES), "num_vis": 3072}
    # pickle protocol 4, which every Python 3 since 3.4 reads (5 would need 3.8; the official files are 2)
    for name in ("data_batch_1", "batches.meta"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x80\x04", name


@pytest.mark.parametrize("where", ["root", "batch folder", "batch file"])
def test_repair_hint_names_the_batch_folder_and_the_data_folder(tmp_path, where):
    from alexnet_cifar.data.cifar10 import fix_hint

    path = {
        "root": tmp_path,
        "batch folder": tmp_path / "cifar-10-batches-py",
        "batch file": tmp_path / "cifar-10-batches-py" / "data_batch_3",
    }[where]
    hint = fix_hint(path)
    assert f"delete {tmp_path / 'cifar-10-batches-py'} and run" in hint
    assert f"alexnet-cifar download --data-dir {tmp_path}`" in hint


def test_synthetic_data_has_cifar10s_shape_and_repeats_by_seed():
    from alexnet_cifar.data.cifar10 import synthetic_cifar10

    data = synthetic_cifar10(n_train=20, n_test=10)
    assert data.train.images.shape == (20, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.labels.tolist() == list(range(10)) and data.folder is None and data.official is False
    assert data.classes == CLASSES and data.train.images.min() == 0 and data.train.images.max() == 255
    assert len(synthetic_cifar10(n_train=10).test) == 10_000  # CIFAR-10's test size by default
    assert data.summary() == (
        "SYNTHETIC random images (20 train + 10 test) for timing only: accuracy on them means nothing"
    )
    assert torch.equal(synthetic_cifar10(n_train=20, n_test=10).train.images, data.train.images)
    assert not torch.equal(synthetic_cifar10(n_train=20, n_test=10, seed=1).train.images, data.train.images)
    defaults = {k: v.default for k, v in inspect.signature(synthetic_cifar10).parameters.items()}
    assert defaults == {"n_train": 50_000, "n_test": 10_000, "seed": 0}  # CIFAR-10's sizes, for timing
