"""The web app: a page, and the JSON API behind it (documented at /docs by FastAPI).

    alexnet-cifar serve runs/                       # http://127.0.0.1:8000
    GET  /api/runs                  every run directory under RUNS_DIR, with status and accuracy
    GET  /api/runs/{id}/metrics     one run's metrics.csv rows (the page polls it while a run trains)
    POST /api/predict               form: run=ID, files=IMAGE...; top-5 and a Grad-CAM overlay per image

Safe by default: nothing outside RUNS_DIR is served (a run is named by its id from the listing,
never by a path), uploads are limited in bytes, count and pixels (predict's checks), a bad request
is a 4xx with a one-line reason, and with a token every request must carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from pathlib import Path
from typing import Annotated

import torch
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from ..artifacts.run_dir import RunDir
from ..inference.predict import read_image
from .page import PAGE
from .predictor import Batcher, Models
from .runs import list_runs, summarise_run

MAX_UPLOAD_BYTES = 10 * 2**20  # per image
MAX_FILES = 16  # images per request


def create_app(runs_dir: Path, token: str | None = None, device: torch.device | None = None) -> FastAPI:
    device = device or torch.device("cpu")
    models, batcher = Models(device), Batcher(device)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()

    app = FastAPI(title="alexnet-cifar", description="Runs and predictions of the lesson's AlexNet.", lifespan=lifespan)
    app.state.batcher = batcher
    app.add_exception_handler(RequestValidationError, one_line)
    guard = [Depends(token_guard(token))]

    @app.get("/", response_class=HTMLResponse, dependencies=guard, include_in_schema=False)
    async def page() -> str:
        return PAGE

    @app.get("/api/runs", dependencies=guard)
    async def runs() -> list[dict[str, object]]:
        return [summarise_run(run_id, run).to_dict() for run_id, run in list_runs(runs_dir).items()]

    @app.get("/api/runs/{run_id}/metrics", dependencies=guard)
    async def metrics(run_id: str) -> dict[str, object]:
        run = find_run(runs_dir, run_id)
        return {"id": run_id, "rows": [r.to_row() for r in run.history()]}

    @app.post("/api/predict", dependencies=guard)
    async def predict(
        run: Annotated[str, Form(max_length=255)], files: Annotated[list[UploadFile], File()]
    ) -> dict[str, object]:
        found = find_run(runs_dir, run)
        if len(files) > MAX_FILES:
            raise HTTPException(413, f"{len(files)} files: at most {MAX_FILES} per request")
        weights = next((p for p in (found.weights, found.last) if p.is_file()), None)
        if weights is None:
            raise HTTPException(409, f"run {run} has no weights yet: wait for its first epoch")
        images = [await read_upload(f) for f in files]
        model = models.get(weights)
        results = await asyncio.gather(*(batcher.predict(model, image) for image in images))
        return {"run": run, "results": [{"file": f.filename, **r} for f, r in zip(files, results, strict=True)]}

    return app


def token_guard(token: str | None):
    """A dependency that refuses a request without `token` (none is needed when it is None)."""

    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ") or request.query_params.get("token")
        if not (given and secrets.compare_digest(given.encode(), token.encode())):
            raise HTTPException(401, "this server needs a token: send the header Authorization: Bearer TOKEN")

    return authorised


async def one_line(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A malformed request is a 422 with one line naming the field, as every other refusal is."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)


def find_run(runs_dir: Path, run_id: str) -> RunDir:
    """The run with this id in the listing: anything else (a path, '..', a file) is not found."""
    run = list_runs(runs_dir).get(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r} here; GET /api/runs lists them")
    return run


async def read_upload(upload: UploadFile) -> torch.Tensor:
    """The uploaded image as uint8 (3, 32, 32), through predict's checks; a bad one is a 4xx."""
    content = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"{upload.filename}: over {MAX_UPLOAD_BYTES // 2**20} MB; send a smaller image")
    with tempfile.TemporaryDirectory() as folder:  # predict's checks read a file
        path = Path(folder) / "upload"
        path.write_bytes(content)
        image, error = read_image(path)
    if image is None:
        raise HTTPException(400, f"{upload.filename}: {error}")
    return image
