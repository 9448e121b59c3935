"""Nothing a request sends names a file the server opens or writes: models are chosen by name from those
loaded at start, and every text is only read by the model."""

import hashlib
import shutil

import httpx
import pytest

from charrnn.api import load

pytest.importorskip("fastapi", reason="charrnn serve needs the [serve] extra (FastAPI, uvicorn)")
from charrnn.serving import app as serve  # noqa: E402

PATHS = ["../../x.pt", "/tmp/evil", "best.pt", "run", "./run/last.pt", "C:\\\\x", "%2e%2e/x", "~/x"]


def tree(root) -> dict:
    """Every file under `root`, with its bytes' digest."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_requests_naming_paths_change_no_file(tiny_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "served" / "run"
    shutil.copytree(tiny_run, run_dir)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    app = serve.build_app(load(run_dir), run_dir, max_length=50, max_concurrent=4)
    with serve.background(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path in PATHS:
            for endpoint, body in [
                ("/v1/generate", {"model": path, "length": 5}),
                ("/v1/generate", {"prime": path, "length": 5}),
                ("/v1/score", {"text": path, "model": path}),
                ("/v1/score", {"text": path, "skip_unknown": True}),
                ("/v1/completions", {"model": path, "prompt": path, "max_tokens": 5}),
                ("/v1/completions", {"prompt": path, "max_tokens": 5, "stream": True}),
            ]:
                response = client.post(endpoint, json=body)
                assert response.status_code < 500, response.text
            assert client.get("/v1/model", params={"model": path}).status_code in (200, 404)
            assert client.get(f"/{path}").status_code in (404, 405)
    assert tree(tmp_path) == before
