"""Looking inside: saliency that points at the evidence, neighbours and features that match the
model, kernel snapshots that match the checkpoints, and the inspect and predict --explain commands."""

import base64
import io
import re

import pytest
import torch
from PIL import Image

from alexnet_cifar.cli import main
from alexnet_cifar.data.loader import normalize
from alexnet_cifar.inspection.features import fc2_features, nearest
from alexnet_cifar.inspection.saliency import grad_cam, smoothgrad
from alexnet_cifar.model import AlexNet

from .conftest import assert_one_line_error, tiny_fit, write_fake_cifar


def quadrant_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random noise everywhere; the class is only the colour of a block in the top-left quadrant."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    colours = torch.randint(0, 256, (10, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    images[:, :, 2:14, 2:14] = colours[labels][:, :, None, None]
    return images, labels


@pytest.fixture(scope="module")
def quadrant_model():
    """AlexNet trained a little on quadrant images (70% right on new ones or more; chance is 10%).
    lr 0.02: at 0.05 one seed in eight diverged, depending on the number of threads (1 under xdist)."""
    images, labels = quadrant_images(640, seed=0)
    x = normalize(images)
    torch.manual_seed(0)
    model = AlexNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    order = torch.Generator().manual_seed(0)
    for _ in range(8):
        for batch in torch.randperm(640, generator=order).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def top_left_share(maps: torch.Tensor) -> float:
    """The mean share of each map's mass that lies in the top-left quadrant (a uniform map: 0.25)."""
    return (maps[:, :16, :16].sum((1, 2)) / maps.sum((1, 2)).clamp(min=1e-12)).mean().item()


@pytest.mark.beyond_core
@pytest.mark.parametrize("method", [grad_cam, smoothgrad], ids=["grad_cam", "smoothgrad"])
def test_saliency_points_at_the_evidence_and_depends_on_the_weights(quadrant_model, method):
    images, labels = quadrant_images(32, seed=1)
    x = normalize(images)
    trained = method(quadrant_model, x, labels)
    torch.manual_seed(5)
    random = method(AlexNet().eval(), x, labels)  # the sanity check of Adebayo et al. (2018)
    assert trained.shape == (32, 32, 32) and trained.min() >= 0 and trained.max() <= 1
    assert top_left_share(trained) > 0.5
    assert top_left_share(trained) > top_left_share(random) + 0.2
    assert not torch.allclose(trained, random, atol=0.1)


def test_fc2_features_are_the_forward_pass_and_an_image_is_its_own_nearest(quadrant_model):
    from alexnet_cifar.data.loader import DeviceLoader

    images, labels = quadrant_images(100, seed=2)
    features = fc2_features(quadrant_model, DeviceLoader(images, labels, 32))
    m = quadrant_model
    with torch.no_grad():  # the layers by hand, as the lesson's forward runs them
        x = m.max_pool2(m.conv2(m.max_pool1(m.conv1(normalize(images)))))
        expected = m.fc2(m.fc1(torch.flatten(x, 1)))
    torch.testing.assert_close(features, expected)
    distances, found = nearest(features, features[[3, 40, 99]], k=5)
    assert found[:, 0].tolist() == [3, 40, 99] and distances[:, 0].tolist() == [0.0, 0.0, 0.0]
    assert (distances[:, 1:] >= distances[:, :-1]).all()  # nearest first
    brute = torch.cdist(features[[40]].double(), features.double())[0].argsort()[:5]
    assert found[1].tolist() == brute.tolist()


def test_kernel_snapshots_are_the_checkpoints_conv1(tmp_path):
    """kernels.pt holds conv1 before training and after each epoch: the evaluated weights (the
    moving average here) of each epoch's checkpoint, and a resume replaces what it trains again."""
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.config import resolve_config
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.training.loop import fit
    from alexnet_cifar.training.trainer import build_model

    _, run = tiny_fit(tmp_path, epochs=1, ema=0.9)
    kernels = run.kernel_history()
    first = torch.load(run.last, weights_only=True)
    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 16, "lr": 0.02, "device": "cpu"})
    assert list(kernels) == [-1, 0]
    assert torch.equal(kernels[-1], build_model(cfg, torch.device("cpu")).conv1[0].weight.detach())
    assert torch.equal(kernels[0], first["ema"]["model"]["conv1.0.weight"])
    assert not torch.equal(kernels[0], first["model"]["conv1.0.weight"])  # the average, not the raw weights
    resumed = resolve_config("seed", {**cfg.to_dict(), "ema": 0.9, "epochs": 2})
    fit(resumed, load_cifar10(tmp_path / "data"), RunDir(run.path), resume=torch.load(run.last), show_progress=False)
    after = run.kernel_history()
    assert list(after) == [-1, 0, 1] and torch.equal(after[0], kernels[0]) and torch.equal(after[-1], kernels[-1])
    assert torch.equal(after[1], torch.load(run.last, weights_only=True)["ema"]["model"]["conv1.0.weight"])


@pytest.fixture(scope="module")
def inspected(tmp_path_factory):
    """A 2-epoch run on fake data, inspected through the CLI: (run folder, data folder, exit code)."""
    root = tmp_path_factory.mktemp("inspect")
    data = write_fake_cifar(root / "data", per_batch=40, n_test=40)
    train = ["train", "--data-dir", str(data), "--run-dir", str(root / "run"), "--epochs", "2", "--batch-size", "16"]
    assert main([*train, "--lr", "0.02", "--device", "cpu", "--quiet"]) == 0
    code = main(["inspect", str(root / "run"), "--map-points", "40", "--device", "cpu"])
    return root / "run", data, code


@pytest.mark.beyond_core
def test_inspect_writes_every_section_as_png_and_one_self_contained_page(inspected):
    from alexnet_cifar.artifacts.run_dir import INSPECT_FILES, foreign_reason

    run, _, code = inspected
    assert code == 0
    page = (run / "inspect.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(INSPECT_FILES) - 1 and "http" not in page.replace("http-equiv", "")
    for png in embedded:
        Image.open(io.BytesIO(base64.b64decode(png))).verify()
    for name in INSPECT_FILES[1:]:
        assert Image.open(run / name).size[0] > 100, name
    assert foreign_reason(run) is None  # still a run folder that --overwrite may replace


@pytest.mark.beyond_core
def test_inspect_twice_replaces_its_own_files_but_never_a_stranger(inspected, capsys):
    run, _, _ = inspected
    assert main(["inspect", str(run), "--map-points", "40", "--device", "cpu"]) == 0
    (run / "kernels.png").write_bytes(b"a picture of the user's")
    code = main(["inspect", str(run), "--device", "cpu"])
    assert_one_line_error(code, capsys.readouterr().err, "kernels.png' without the mark of alexnet-cifar")
    assert (run / "kernels.png").read_bytes() == b"a picture of the user's"
    (run / "kernels.png").unlink()


def test_inspect_a_weights_file_with_the_users_images(inspected, tmp_path, capsys):
    run, data, _ = inspected
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "red.png")
    out = tmp_path / "look"
    args = [str(run / "model.pt"), str(tmp_path / "red.png"), "--data-dir", str(data), "--out", str(out)]
    code = main(["inspect", *args, "--map-points", "40", "--device", "cpu"])
    assert code == 0 and (out / "inspect.html").exists() and (out / "where_it_looks.png").exists()
    capsys.readouterr()
    code = main(["inspect", str(run / "model.pt"), "--device", "cpu", "--data-dir", str(data)])
    assert_one_line_error(code, capsys.readouterr().err, "is a weights file: pass --out FOLDER", status=2)


def test_onnx_has_no_gradients_to_inspect_or_explain(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"")
    code = main(["inspect", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "o")])
    assert_one_line_error(code, capsys.readouterr().err, "ONNX model, which has no gradients", status=2)
    code = main(["predict", str(tmp_path / "m.onnx"), str(tmp_path), "--explain", str(tmp_path / "o")])
    assert_one_line_error(code, capsys.readouterr().err, "--explain needs gradients", status=2)


def test_predict_explain_writes_one_overlay_per_image(inspected, tmp_path, capsys):
    run, _, _ = inspected
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (32, 32), (30, 200, 30)).save(tmp_path / folder / "leaf.png")
    out = tmp_path / "why"
    code = main(["predict", str(run / "model.pt"), str(tmp_path / "a"), str(tmp_path / "b"), "--explain", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["leaf-2.explain.png", "leaf.explain.png"]
    assert Image.open(out / "leaf.explain.png").size[0] > 300


@pytest.mark.process
def test_the_page_draws_every_image_in_headless_chromium(inspected, tmp_path):
    """The page is one file that opens offline: Chromium loads it, and its own script records how many
    of its images the browser could draw (skipped where Chromium is absent)."""
    import shutil
    import subprocess

    from alexnet_cifar.artifacts.run_dir import INSPECT_FILES

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    run, _, _ = inspected
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom"]
    page = f"file://{(run / 'inspect.html').resolve()}"
    cmd = [browser, *flags, f"--user-data-dir={tmp_path / 'profile'}", page]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded is not None, dom[-2000:]
    assert loaded[1] == loaded[2] == str(len(INSPECT_FILES) - 1)


def test_grad_cam_cells_land_on_the_pixels_they_are_centred_on():
    """conv2's cell k is centred on pixel 2k + 7 (valid 5x5 conv, 3/2 pool, valid 5x5 conv): a map
    hot in one cell peaks there, not where stretching 9 cells over 32 pixels would put it (cell 1 at
    pixel 4 instead of 9). Inner cells: the edge cells extend to the border, which they also see."""
    from alexnet_cifar.inspection.saliency import cam_to_image

    for k in (1, 4, 7):
        cam = torch.zeros(1, 1, 9, 9)
        cam[0, 0, k, 8 - k] = 1.0
        image = cam_to_image(cam)[0, 0]
        assert image.shape == (32, 32)
        row, col = divmod(int(image.argmax()), 32)
        assert abs(row - (2 * k + 7)) <= 1 and abs(col - (2 * (8 - k) + 7)) <= 1


def test_the_most_confused_pairs_count_both_directions():
    from alexnet_cifar.inspection.page import confused_pairs

    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
    predicted = torch.tensor([1, 1, 0, 0, 1, 3, 3, 3, 2])  # 0<->1: 3 mistakes, 2<->3: 4 mistakes
    assert confused_pairs(labels, predicted, 4, 5) == [(2, 3), (0, 1)]
    assert confused_pairs(labels, labels, 4, 5) == []


def test_the_kernel_history_shows_a_few_epochs_from_first_to_last():
    from alexnet_cifar.inspection.kernels import epochs_to_show, kernel_grid

    assert epochs_to_show([-1, 0, 1]) == [-1, 0, 1]
    assert epochs_to_show(list(range(-1, 60))) == [-1, 14, 29, 44, 59]
    grid = kernel_grid(torch.randn(64, 3, 5, 5))
    assert grid.shape == (8 * 32 + 2, 8 * 32 + 2, 3) and grid.dtype.name == "uint8"


def test_a_damaged_kernels_file_is_written_anew_and_the_run_goes_on(tmp_path):
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.config import resolve_config
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.training.loop import fit

    _, run = tiny_fit(tmp_path, epochs=1)
    run.kernels.write_bytes(b"not a tensor file")
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.02, "device": "cpu"})
    fit(cfg, load_cifar10(tmp_path / "data"), RunDir(run.path), resume=torch.load(run.last), show_progress=False)
    assert list(run.kernel_history()) == [1]  # the earlier epochs are gone with the damage; nothing else is


def test_predict_json_stays_json_with_explain(inspected, tmp_path, capsys):
    import json

    run, _, _ = inspected
    Image.new("RGB", (32, 32), (30, 30, 200)).save(tmp_path / "sea.png")
    code = main(["predict", str(run / "model.pt"), str(tmp_path / "sea.png"), "--json", "--explain", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)[0]["path"] == str(tmp_path / "sea.png")
    assert (tmp_path / "sea.explain.png").exists()


def test_inspect_goes_on_past_an_unreadable_image_and_never_takes_a_name_for_a_label(inspected, tmp_path, capsys):
    from alexnet_cifar.cli import user_images

    run, data, _ = inspected
    Image.new("RGB", (32, 32), (200, 200, 30)).save(tmp_path / "cat.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    images = user_images([tmp_path])
    assert [(name, label) for name, _, label in images] == [("cat", None)]  # "cat" is a file name only
    assert "broken.png: error: not an image Pillow can read" in capsys.readouterr().err
    args = [str(run / "model.pt"), str(tmp_path), "--data-dir", str(data), "--out", str(tmp_path / "o")]
    assert main(["inspect", *args, "--map-points", "1", "--device", "cpu"]) == 0  # too few for t-SNE: PCA only
    assert (tmp_path / "o" / "feature_map_2d.png").exists()


def test_inspect_writes_only_into_a_run_directory_or_a_folder_named_for_it(inspected, tmp_path, capsys):
    import shutil

    run, data, _ = inspected
    (tmp_path / "mine").mkdir()
    shutil.copy(run / "model.pt", tmp_path / "mine" / "model.pt")
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    code = main(["inspect", str(tmp_path / "mine"), "--data-dir", str(data)])
    assert_one_line_error(code, capsys.readouterr().err, "is not a run directory of alexnet-cifar")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["model.pt", "notes.txt"]
    (tmp_path / "file").write_text("")
    code = main(["inspect", str(run / "model.pt"), "--out", str(tmp_path / "file")])
    assert_one_line_error(code, capsys.readouterr().err, "is a file; pass a folder", status=2)
