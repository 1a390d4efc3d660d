import base64
import io
import os
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from alexnet_cifar.cli import main

from .conftest import tiny_fit


class ImageCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, bytes] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix), "images must be inline"
            self.images[attrs["alt"]] = base64.b64decode(attrs["src"][len(prefix) :])

    def handle_data(self, data):
        self.text.append(data)


def assert_png(content: bytes, min_size=(200, 150)) -> None:
    img = Image.open(io.BytesIO(content))
    img.verify()  # a complete, valid PNG
    assert img.format == "PNG" and img.size[0] >= min_size[0] and img.size[1] >= min_size[1]


@pytest.mark.beyond_core
def test_report_embeds_valid_pngs_and_the_config(tmp_path, fake_root, capsys):
    run = tiny_fit(tmp_path, data_root=fake_root)[1]
    assert main(["report", str(run.path), "--data-dir", str(fake_root), "--device", "cpu"]) == 0
    names = ["curves.png", "confusion.png", "per_class.png", "most_wrong.png"]
    # what the network learned: inspect's sections
    names += ["kernels.png", "kernels_by_epoch.png", "feature_maps.png", "where_it_looks.png", "neighbours.png"]
    names += ["feature_map_2d.png", "confusions.png"]
    for name in names:
        assert_png((run.path / name).read_bytes(), min_size=(150, 150))
    parser = ImageCollector()
    parser.feed((run.path / "report.html").read_text())
    assert sorted(parser.images) == sorted(names)
    for name, content in parser.images.items():
        assert content == (run.path / name).read_bytes()
    text = " ".join(parser.text)
    assert (
        "peak test (the per-epoch Valid column) accuracy" in text
        and "top-5" in text
        and "batch_size" in text
        and "torch" in text
    )


@pytest.mark.beyond_core
def test_report_finds_the_runs_own_data(tmp_path, fake_root, monkeypatch):
    run = tiny_fit(tmp_path, data_root=fake_root, epochs=1)[1]
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run.path)]) == 0
    assert (run.path / "confusion.png").exists()  # the test set was found through last.pt


def test_report_without_data_has_curves_only(tmp_path, fake_root):
    run = tiny_fit(tmp_path, data_root=fake_root, epochs=1)[1]
    (run.path / "last.pt").unlink()
    (run.path / "model.pt").unlink()
    assert main(["report", str(run.path), "--data-dir", str(tmp_path / "nowhere")]) == 0
    parser = ImageCollector()
    parser.feed((run.path / "report.html").read_text())
    assert list(parser.images) == ["curves.png"]


@pytest.mark.process
def test_report_screenshot_in_headless_chromium(tmp_path, fake_root):
    """The documented screenshot script renders the report (skipped where Chromium is absent)."""
    import shutil
    from pathlib import Path

    import pytest

    if not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")):
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    run = tiny_fit(tmp_path, data_root=fake_root, epochs=1)[1]
    assert main(["report", str(run.path), "--data-dir", str(fake_root)]) == 0
    script = Path(__file__).parents[1] / "scripts" / "screenshot_report.sh"
    env = {**os.environ, "WINDOW": "900,1200"}
    cmd = ["bash", str(script), str(run.path), str(tmp_path / "shot.png")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    shot = Image.open(tmp_path / "shot.png")
    assert shot.size == (900, 1200)
    assert len(np.unique(np.asarray(shot.convert("L")))) > 50  # a rendered page, not a blank one


def test_read_metrics_names_a_missing_or_empty_file(tmp_path):
    from alexnet_cifar.errors import UserError
    from alexnet_cifar.report.run_report import read_metrics

    with pytest.raises(UserError, match="metrics.csv is missing; pass a run directory"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.csv").write_text("epoch,train_loss,train_acc,valid_loss,valid_acc,lr,seconds,images_per_s\n")
    with pytest.raises(UserError, match="has no epochs yet"):
        read_metrics(tmp_path)
