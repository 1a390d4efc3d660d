"""The web app: a page, and the JSON API behind it (documented at /docs by FastAPI).

    alexnet-cifar serve runs/                       # http://127.0.0.1:8000
    GET  /api/runs                  every run directory under RUNS_DIR, with status and accuracy
    GET  /api/runs/{id}/metrics     one run's metrics.csv rows (the page polls it while a run trains)
    POST /api/predict               form: run=ID, files=IMAGE...; top-5 and a Grad-CAM overlay per image

Safe by default: the token (when set) and the size of a request are checked before its body is
read; nothing outside RUNS_DIR is served (a run is named by its id from the listing, never by a
path); uploads go through predict's checks; every refusal is a 4xx with a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

import torch
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..artifacts.run_dir import RunDir
from ..errors import UserError
from ..inference.predict import read_image
from .page import PAGE
from .predictor import Batcher, Models
from .runs import list_runs, summarise_run

MAX_UPLOAD_BYTES = 10 * 2**20  # per image
MAX_FILES = 16  # images per request
MAX_BODY_BYTES = 64 * 2**20  # per request, refused from its Content-Length before a byte is read
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]


def create_app(
    runs_dir: Path,
    token: str | None = None,
    device: torch.device | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """`allowed_hosts`: the Host headers accepted (the server's own names on loopback, against DNS
    rebinding); None accepts any."""
    batcher = Batcher(Models(device or torch.device("cpu")))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title="alexnet-cifar", description="Runs and predictions of the lesson's AlexNet.", lifespan=lifespan)
    app.state.batcher = batcher
    app.add_exception_handler(RequestValidationError, one_line)
    app.add_exception_handler(UserError, damaged_run)
    app.add_exception_handler(OSError, files_changed)
    app.add_exception_handler(TimeoutError, too_slow)
    app.add_exception_handler(Exception, internal)
    app.add_middleware(Gate, token=token)  # outermost but the host check: before any body is read
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/api/runs")
    def runs() -> list[dict[str, object]]:
        return [summarise_run(run_id, run).to_dict() for run_id, run in list_runs(runs_dir).items()]

    @app.get("/api/runs/{run_id}/metrics")
    def metrics(run_id: str) -> dict[str, object]:
        run = find_run(runs_dir, run_id)
        return {"id": run_id, "rows": [r.to_row() for r in run.history()]}

    @app.post("/api/predict")
    async def predict(
        run: Annotated[str, Form(max_length=255)], files: Annotated[list[UploadFile], File()]
    ) -> dict[str, object]:
        found = await run_in_threadpool(find_run, runs_dir, run)
        if len(files) > MAX_FILES:
            raise HTTPException(413, f"{len(files)} files: at most {MAX_FILES} per request")
        weights = next((p for p in (found.weights, found.last) if p.is_file()), None)
        if weights is None:
            raise HTTPException(409, f"run {run} has no weights yet: wait for its first epoch")
        images = [await read_upload(f) for f in files]
        results = await asyncio.gather(*(batcher.predict(weights, image) for image in images))
        return {"run": run, "results": [{"file": f.filename, **r} for f, r in zip(files, results, strict=True)]}

    return app


class Gate:
    """Before anything else reads a request: its token (the header, or `?token=` for the page alone,
    which a browser opens without headers) and its declared size. Pure ASGI, so the body is untouched."""

    def __init__(self, app, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refuse(scope, headers)
        if refusal is not None:
            status, detail = refusal
            return await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
        return await self.app(scope, receive, send)

    def refuse(self, scope, headers: dict[str, str]) -> tuple[int, str] | None:
        if self.token is not None and not self.authorised(scope, headers):
            return 401, "this server needs a token: send the header Authorization: Bearer TOKEN"
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length", "")
            if not length.isdigit():
                return 411, "send the request's Content-Length"
            if int(length) > MAX_BODY_BYTES:
                return 413, f"request of {int(length):,} bytes: at most {MAX_BODY_BYTES:,} bytes"
        return None

    def authorised(self, scope, headers: dict[str, str]) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = ""
        if not given and scope["path"] == "/":
            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        return bool(given) and secrets.compare_digest(given.encode(), self.token.encode())


async def one_line(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A malformed request is a 422 with one line naming the field, as every other refusal is."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)


async def damaged_run(request: Request, exc: UserError) -> JSONResponse:
    """A run's files that the tool refuses to read (damaged, foreign): the tool's own one line."""
    return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=409)


async def files_changed(request: Request, exc: OSError) -> JSONResponse:
    """A run's file that vanished or changed while it was read (a run being replaced, say)."""
    return JSONResponse({"detail": f"a run's file changed while it was read ({exc.strerror}); retry"}, status_code=409)


async def internal(request: Request, exc: Exception) -> JSONResponse:
    """A fault no check foresaw (the model's own, say): still one line, never a traceback."""
    what = " ".join(str(exc).split())[:200] or "no message"
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}: {what}); please report it"}, status_code=500)


async def too_slow(request: Request, exc: TimeoutError) -> JSONResponse:
    return JSONResponse({"detail": "the prediction took too long (the server is busy); retry"}, status_code=503)


def find_run(runs_dir: Path, run_id: str) -> RunDir:
    """The run with this id in the listing: anything else (a path, '..', a file) is not found."""
    run = list_runs(runs_dir).get(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r} here; GET /api/runs lists them")
    return run


async def read_upload(upload: UploadFile) -> torch.Tensor:
    """The uploaded image as uint8 (3, 32, 32), through predict's checks; a bad one is a 4xx."""
    name = " ".join(str(upload.filename).split())  # one line, whatever the client sent as its name
    content = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"{name}: over {MAX_UPLOAD_BYTES // 2**20} MB; send a smaller image")
    image, error = await run_in_threadpool(decode_upload, content)
    if image is None:
        raise HTTPException(400, f"{name}: {error}")
    return image


def decode_upload(content: bytes) -> tuple[torch.Tensor | None, str | None]:
    with tempfile.TemporaryDirectory() as folder:  # predict's checks read a file
        path = Path(folder) / "upload"
        path.write_bytes(content)
        try:
            return read_image(path)
        except Exception as exc:  # what Pillow raises beyond read_image's list (EOFError, struct.error)
            return None, f"cannot read image ({type(exc).__name__})"
