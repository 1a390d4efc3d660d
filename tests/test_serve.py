"""alexnet-cifar serve: the API through FastAPI's test client, its security rules, random requests,
and one end-to-end upload in headless Chromium."""

import base64
import io
import socket
import threading
import time

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
from fastapi.testclient import TestClient

from alexnet_cifar.serve.app import MAX_UPLOAD_BYTES, create_app

from .conftest import tiny_fit


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """RUNS_DIR with one finished run, one folder that is not a run, and a file."""
    root = tmp_path_factory.mktemp("serve")
    tiny_fit(root, "lesson", epochs=2)
    (root / "holiday-photos").mkdir()
    (root / "holiday-photos" / "model.pt").write_bytes(b"not ours")
    (root / "notes.txt").write_text("hello")
    return root


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app(runs)) as client:
        yield client


def png(size=(40, 30), colour=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_runs_lists_only_run_directories_with_their_numbers(client):
    (run,) = client.get("/api/runs").json()
    assert run["id"] == "lesson" and run["recipe"] == "seed" and run["status"] == "finished"
    assert run["epochs_done"] == run["epochs"] == 2 and 0 <= run["last_acc"] <= 1
    rows = client.get("/api/runs/lesson/metrics").json()["rows"]
    assert [r["epoch"] for r in rows] == [0, 1] and rows[-1]["valid_acc"] == run["last_acc"]


def test_predict_gives_the_top_five_and_an_overlay(client):
    files = [("files", ("red.png", png(), "image/png")), ("files", ("blue.png", png(colour=(0, 0, 200)), "image/png"))]
    reply = client.post("/api/predict", data={"run": "lesson"}, files=files)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["file"] for r in results] == ["red.png", "blue.png"]
    for r in results:
        probs = [t["probability"] for t in r["top5"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert Image.open(io.BytesIO(base64.b64decode(r["saliency_png"]))).size == (128, 128)


OUTSIDE = ("../", "..%2F..%2Fetc/", "holiday-photos/", "notes.txt/", "%2Fetc%2Fpasswd/", "lesson%00/")


@pytest.mark.parametrize("path", [f"/api/runs/{name}metrics" for name in OUTSIDE])
def test_nothing_outside_the_runs_is_served(client, path):
    reply = client.get(path)
    assert reply.status_code == 404 and "etc" not in reply.text.replace(path, "")


@pytest.mark.parametrize("run", ["../lesson", "holiday-photos", "/tmp", "lesson/../lesson"])
def test_predict_only_with_a_listed_run(client, run):
    reply = client.post("/api/predict", data={"run": run}, files=[("files", ("a.png", png(), "image/png"))])
    assert reply.status_code == 404 and reply.json()["detail"].startswith("no run")


@pytest.mark.parametrize(
    "content, status, words",
    [
        (b"this is not an image", 400, "not an image Pillow can read"),
        (png()[:60], 400, "cannot read image"),
        (b"\0" * (MAX_UPLOAD_BYTES + 1), 413, "over 10 MB"),
    ],
    ids=["not-an-image", "truncated", "too-big"],
)
def test_bad_uploads_are_a_4xx_with_one_line(client, content, status, words):
    reply = client.post("/api/predict", data={"run": "lesson"}, files=[("files", ("x.png", content, "image/png"))])
    assert reply.status_code == status and words in reply.json()["detail"]
    assert "\n" not in reply.json()["detail"]


def test_a_pixel_bomb_is_refused_before_it_is_decoded(client):
    """A small PNG that declares 10,000 x 10,000 pixels: refused from its header by predict's check."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    files = [("files", ("bomb.png", buffer.getvalue(), "image/png"))]
    reply = client.post("/api/predict", data={"run": "lesson"}, files=files)
    assert reply.status_code == 400 and "over the limit" in reply.json()["detail"]


def test_malformed_requests_are_a_422_with_one_line(client):
    reply = client.post("/api/predict", data={"run": "lesson"})
    assert reply.status_code == 422 and reply.json()["detail"].startswith("body.files")


def test_with_a_token_every_request_carries_it(runs):
    with TestClient(create_app(runs, token="s3cret")) as client:
        for path in ("/", "/api/runs", "/api/runs/lesson/metrics", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get(path, headers={"Authorization": "s3cret"}).status_code == 401  # no scheme
            assert client.get(path, headers={"Authorization": "bearer s3cret"}).status_code == 200
        assert client.get("/?token=s3cret").status_code == 200  # the page, which a browser opens bare
        assert client.get("/api/runs?token=s3cret").status_code == 401  # the API: the header only
        files = [("files", ("a.png", png(), "image/png"))]
        assert client.post("/api/predict", data={"run": "lesson"}, files=files).status_code == 401
        ok = client.post(
            "/api/predict", data={"run": "lesson"}, files=files, headers={"Authorization": "Bearer s3cret"}
        )
        assert ok.status_code == 200


def test_a_request_too_big_or_without_a_length_is_refused_before_it_is_read(client, monkeypatch):
    from alexnet_cifar.serve import app as app_module

    monkeypatch.setattr(app_module, "MAX_BODY_BYTES", 1000)
    files = [("files", ("a.png", b"\0" * 2000, "image/png"))]
    reply = client.post("/api/predict", data={"run": "lesson"}, files=files)
    assert reply.status_code == 413 and reply.json()["detail"].endswith("bytes: at most 1,000 bytes")

    def chunks():
        yield b"run=lesson"

    assert client.post("/api/predict", content=chunks()).status_code == 411


def test_more_files_than_allowed_is_a_413(client):
    files = [("files", (f"{i}.png", png(), "image/png")) for i in range(17)]
    reply = client.post("/api/predict", data={"run": "lesson"}, files=files)
    assert reply.status_code == 413 and reply.json()["detail"] == "17 files: at most 16 per request"


def test_a_damaged_run_is_a_409_with_its_own_line(runs, tmp_path):
    import shutil

    shutil.copytree(runs / "lesson", tmp_path / "lesson")
    (tmp_path / "lesson" / "metrics.csv").write_text("garbage\n")
    with TestClient(create_app(tmp_path)) as client:
        (listed,) = client.get("/api/runs").json()
        assert listed["id"] == "lesson" and listed["epochs_done"] == 0  # listed, with nothing to show
        reply = client.get("/api/runs/lesson/metrics")
        assert reply.status_code == 409 and "metrics.csv is damaged" in reply.json()["detail"]
        (tmp_path / "lesson" / "model.pt").write_bytes(b"not a checkpoint")
        reply = client.post("/api/predict", data={"run": "lesson"}, files=[("files", ("a.png", png(), "image/png"))])
        assert reply.status_code == 409 and "not a readable checkpoint" in reply.json()["detail"]


def test_the_worker_survives_a_failing_prediction(runs, monkeypatch):
    from alexnet_cifar.serve import predictor

    real, calls = predictor.infer, []

    def fails_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return real(*args)

    monkeypatch.setattr(predictor, "infer", fails_once)
    with TestClient(create_app(runs), raise_server_exceptions=False) as client:  # as a browser would see it
        files = [("files", ("a.png", png(), "image/png"))]
        reply = client.post("/api/predict", data={"run": "lesson"}, files=files)
        assert reply.status_code == 500 and reply.json()["detail"].startswith("internal error (RuntimeError")
        assert client.post("/api/predict", data={"run": "lesson"}, files=files).status_code == 200


def test_loopback_answers_only_to_its_own_names(runs):
    from alexnet_cifar.serve.app import LOOPBACK_HOSTS

    with TestClient(create_app(runs, allowed_hosts=LOOPBACK_HOSTS), base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/runs").status_code == 200
        assert client.get("/api/runs", headers={"Host": "attacker.example"}).status_code == 400


def test_the_openapi_page_documents_the_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/runs", "/api/runs/{run_id}/metrics", "/api/predict"} <= set(paths)


def test_concurrent_requests_are_batched(runs):
    """Requests that arrive together wait in one queue and share model calls."""
    import asyncio

    import httpx

    app = create_app(runs)

    async def eight_clients():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            requests = [
                http.post("/api/predict", data={"run": "lesson"}, files={"files": (f"{i}.png", png(colour=(i, 9, 9)))})
                for i in range(8)
            ]
            return await asyncio.gather(*requests)

    replies = asyncio.run(eight_clients())
    assert [r.status_code for r in replies] == [200] * 8
    assert sum(app.state.batcher.batches) == 8 and max(app.state.batcher.batches) > 1
    app.state.batcher.close()


def test_random_requests_never_get_a_500(client):

    from urllib.parse import quote

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    texts = st.text(max_size=30)
    runs = st.one_of(st.just("lesson"), texts)  # the listed run often: so random bytes reach the decoder
    images = st.one_of(st.binary(max_size=300), st.builds(lambda n: png()[:n], st.integers(0, 200)))

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(run=runs, name=texts, content=images, path=texts)
    def check(run, name, content, path):
        reply = client.post("/api/predict", data={"run": run}, files=[("files", (name or "f", content, "image/png"))])
        assert reply.status_code < 500, reply.text
        assert client.get(f"/api/runs/{quote(path, safe='')}/metrics").status_code < 500

    check()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.process
def test_a_browser_uploads_an_image_and_sees_the_top_five(runs, tmp_path):
    """The real thing: uvicorn on a free loopback port, headless Chromium through Selenium."""
    import shutil

    import uvicorn

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("no chromium and chromedriver here (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runs), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    browser = webdriver.Chrome(options=options, service=service)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "tr.run"))
        Image.new("RGB", (64, 64), (30, 160, 40)).save(tmp_path / "green.png")
        browser.find_element(By.ID, "files").send_keys(str(tmp_path / "green.png"))
        browser.find_element(By.CSS_SELECTOR, "#try button").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".top5 li"))
        items = [li.text for li in browser.find_elements(By.CSS_SELECTOR, ".top5 li")]
        assert len(items) == 5 and all(len(item.split()) == 2 for item in items)
        assert browser.find_element(By.CSS_SELECTOR, ".result img").get_attribute("naturalWidth") == "128"
    finally:
        browser.quit()
        server.should_exit = True
        thread.join(timeout=10)
