import dataclasses
import functools
import json
import math
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.api import load
from charrnn.cli import app
from tests.conftest import assert_error, make_text, train_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

runner = CliRunner()
# Longer than the bounded model's re-read of 4 characters, so that the page cuts the prime as charrnn does.
PRIME = "Alice was curious. The queen said "
LENGTH = 240
CELLS = {
    "lstm": {"cell": "lstm", "num_layers": 2},
    "gru": {"cell": "gru", "num_layers": 2},
    "rnn-tanh": {"cell": "rnn", "nonlinearity": "tanh", "num_layers": 2},
    # A ReLU rnn restarts its state every --seq-len / 2 characters (ModelConfig.context): here every 4, often
    # enough that its greedy text differs from the text of its state carried on.
    "rnn-relu": {"cell": "rnn", "nonlinearity": "relu", "num_layers": 1},
    "lstm-tied": {"cell": "lstm", "num_layers": 2, "tie_embedding": True, "embed_size": 32},
}
SEQ_LEN = {"rnn-relu": 8}
needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} to load the page in")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("web") / "text.txt"
    path.write_text(make_text(20_000))
    return path


@pytest.fixture(scope="module")
def site(data):
    """A folder of web exports, one per cell, served by a plain static file server."""
    root = data.parent / "site"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module", params=list(CELLS))
def exported(request, data, site):
    """A briefly trained run of each cell, exported with the CLI into the served folder."""
    root, url = site
    run_dir = data.parent / request.param
    train_run(run_dir, data, model=CELLS[request.param], max_steps=150, seq_len=SEQ_LEN.get(request.param, 32))
    result = run("export", run_dir, "--format", "web", "--out", root / request.param)
    assert result.exit_code == 0, result.output
    return load(run_dir), f"{url}/{request.param}/"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the page is driven in Chromium with Playwright")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield context
        finally:
            context.close()


def generate_in_page(browser, url, prime, length, temperature, seed=0):
    """The page's text after `prime`, generated as a user asks for it; and every URL the page requested."""
    page = browser.new_page()
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    try:
        page.set_default_timeout(30_000)
        page.goto(url)
        page.wait_for_selector("#generate:enabled")
        page.fill("#prime", prime)
        for field, value in (("#length", length), ("#temperature", temperature), ("#seed", seed)):
            page.fill(field, str(value))
        page.click("#generate")
        page.wait_for_selector("#output[data-state=done]")
        return page.text_content("#output"), page.text_content("#status"), requested
    finally:
        page.close()


@needs_chromium
def test_the_page_gives_pytorchs_greedy_text(exported, browser):
    loaded, url = exported
    text, status, requested = generate_in_page(browser, url, PRIME, LENGTH, temperature=0)
    assert status.startswith(f"{LENGTH} characters")
    assert len(set(text[len(PRIME) :])) >= 4, "the model should have learnt more than one repeated character"
    assert text == loaded.generate(PRIME, LENGTH, temperature=0)
    bounded = loaded.model.config
    if bounded.context is not None:
        loaded.model.config = dataclasses.replace(bounded, context=None)
        try:
            assert text != loaded.generate(PRIME, LENGTH, temperature=0), "the restarts should change this text"
        finally:
            loaded.model.config = bounded
    assert requested and all(r.startswith(url) for r in requested)


@needs_chromium
def test_the_page_samples_by_its_seed(exported, browser):
    loaded, url = exported
    first, _, _ = generate_in_page(browser, url, "", LENGTH, temperature=0.8, seed=3)
    again, _, _ = generate_in_page(browser, url, "", LENGTH, temperature=0.8, seed=3)
    other, _, _ = generate_in_page(browser, url, "", LENGTH, temperature=0.8, seed=4)
    assert first == again != other
    assert len(first) == LENGTH and set(first) <= set(loaded.vocab.chars)


@needs_chromium
@pytest.mark.parametrize(
    "prime, temperature, message",
    [("Alice ~", 0, 'the prime holds "~"'), ("Alice", -1, "temperature"), ("Alice", "", "temperature")],
)
def test_the_page_names_what_it_cannot_use(tiny_run, site, browser, prime, temperature, message):
    root, url = site
    if not (root / "tiny").exists():
        assert run("export", tiny_run, "--format", "web", "--out", root / "tiny").exit_code == 0
    text, status, _ = generate_in_page(browser, f"{url}/tiny/", prime, LENGTH, temperature=temperature)
    assert status.startswith("error: ") and message in status
    assert text == prime


def test_the_folder_holds_the_page_its_script_and_the_weights(tiny_run, tmp_path):
    result = run("export", tiny_run, "--format", "web", "--out", tmp_path / "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'web'}\n" and "KiB" in result.stderr
    assert sorted(p.name for p in (tmp_path / "web").iterdir()) == [
        "charrnn.js",
        "index.html",
        "model.json",
        "weights.bin",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["web"]
    manifest = json.loads((tmp_path / "web" / "model.json").read_text())
    loaded = load(tiny_run)
    assert manifest["vocab"] == loaded.vocab.chars and manifest["model_config"] == loaded.content["model_config"]
    floats = sum(p.numel() for p in loaded.model.parameters())
    assert (tmp_path / "web" / "weights.bin").stat().st_size == 4 * floats


def test_a_tied_models_page_reads_its_embedding_as_the_output_layer(data, tmp_path):
    """The page's step reads `head.weight`; a tied model's is its embedding, written under both names."""
    train_run(tmp_path / "run", data, model=CELLS["lstm-tied"], max_steps=5)
    assert run("export", tmp_path / "run", "--format", "web", "--out", tmp_path / "web").exit_code == 0
    manifest = json.loads((tmp_path / "web" / "model.json").read_text())
    floats = np.fromfile(tmp_path / "web" / "weights.bin", dtype="<f4")

    def tensor(name):
        entry = manifest["tensors"][name]
        return torch.from_numpy(floats[entry["offset"] :][: math.prod(entry["shape"])].reshape(entry["shape"]))

    model = load(tmp_path / "run").model
    assert manifest["model_config"]["tie_embedding"] is True
    assert torch.equal(tensor("head.weight"), model.embedding.weight.detach())
    assert torch.equal(tensor("embedding.weight"), model.embedding.weight.detach())


def test_an_earlier_export_is_replaced_and_other_folders_are_not(tiny_run, tmp_path):
    assert run("export", tiny_run, "--format", "web", "--out", tmp_path / "web").exit_code == 0
    (tmp_path / "web" / "stale.txt").write_text("from before")
    assert run("export", tiny_run, "--format", "web", "--out", tmp_path / "web").exit_code == 0
    assert not (tmp_path / "web" / "stale.txt").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert_error(run("export", tiny_run, "--format", "web", "--out", tmp_path / "mine"), "--out", "not an earlier")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_a_fill_model_is_refused_naming_the_format(data, tmp_path):
    train_run(tmp_path / "fill", data, model={"bidirectional": True}, objective="fill", max_steps=2)
    for kind in ("web", "onnx"):
        result = run("export", tmp_path / "fill", "--format", kind, "--out", tmp_path / f"out-{kind}")
        assert_error(result, f"--format {kind}", "fill model", "both directions")
        assert len(result.stderr.splitlines()) == 1
        assert not (tmp_path / f"out-{kind}").exists()


def test_out_in_a_missing_directory_is_named(tiny_run, tmp_path):
    assert_error(run("export", tiny_run, "--format", "web", "--out", tmp_path / "missing" / "web"), "--out")
