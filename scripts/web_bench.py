"""The two ways to run a model in a browser, side by side in one Chromium: charrnn's JavaScript step
(`charrnn export --format web`) against onnxruntime-web's WebAssembly runtime on the ONNX export.

    npm pack onnxruntime-web && tar xzf onnxruntime-web-*.tgz      # unpacks ./package
    python scripts/web_bench.py CHECKPOINT --ort package/dist [--length 2000]

Writes both folders to a temporary directory, serves it on 127.0.0.1, and in the same page session times
`--length` greedy characters after a prime with each (after a warm-up of 50); prints a Markdown table of each
folder's size and characters per second. Both run on one thread: a plain static server sends no
cross-origin isolation headers, without which the browser allows no WebAssembly threads.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import sync_playwright

from charrnn.api import load
from charrnn.serving import onnx_export, web_export

CHROMIUM = "/usr/bin/chromium"
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PRIME = "Alice was "

CHARRNN_LOOP = """async ([prime, length]) => {
  const { loadModel, read, step, choose } = await import("./charrnn.js");
  const model = await loadModel();
  const run = (n) => {
    let { logits, state } = read(model, [...prime].map((c) => model.index.get(c)));
    for (let i = 0; i < n; i++) ({ logits, state } = step(model, choose(logits, 0, null), state));
  };
  run(50);
  const start = performance.now();
  run(length);
  return length / ((performance.now() - start) / 1000);
}"""

ORT_LOOP = """async ([prime, length]) => {
  const ort = await import("./ort.wasm.min.mjs");
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  const config = await (await fetch("config.json")).json();
  const shape = [config.num_layers, 1, config.hidden_size];
  const names = config.cell === "lstm" ? ["h", "c"] : ["h"];
  const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);
  const zeros = () => new ort.Tensor("float32", new Float32Array(shape.reduce((a, b) => a * b)), shape);
  const run = async (n) => {
    let state = Object.fromEntries(names.map((k) => [k, zeros()]));
    let id = config.vocab.indexOf(prime[0]), logits = null;
    for (let i = 0; i < prime.length + n; i++) {
      if (i < prime.length) id = config.vocab.indexOf(prime[i]); else id = argmax(logits);
      const out = await session.run({ ids: new ort.Tensor("int64", BigInt64Array.of(BigInt(id)), [1]), ...state });
      logits = out.logits.data;
      state = Object.fromEntries(names.map((k) => [k, out[`${k}_out`]]));
    }
  };
  await run(50);
  const start = performance.now();
  await run(length);
  return length / ((performance.now() - start) / 1000);
}"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name != "blank.html")


def build(checkpoint: str, ort_dist: Path, root: Path) -> None:
    loaded = load(checkpoint)
    web_export.export(loaded, root / "charrnn")
    (root / "ort").mkdir()
    onnx_export.export(loaded, root / "ort" / "model.onnx")
    for name in ORT_FILES:
        shutil.copy(ort_dist / name, root / "ort" / name)
    config = {k: getattr(loaded.model.config, k) for k in ("cell", "num_layers", "hidden_size")}
    (root / "ort" / "config.json").write_text(json.dumps({**config, "vocab": loaded.vocab.chars}))
    for name in ("charrnn", "ort"):
        (root / name / "blank.html").write_text("<!doctype html><title>bench</title>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--ort", type=Path, required=True, help="onnxruntime-web's dist folder")
    parser.add_argument("--length", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(args.checkpoint, args.ort, root)
        handler = functools.partial(QuietHandler, directory=tmp)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        rows = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            for name, loop in (("charrnn", CHARRNN_LOOP), ("ort", ORT_LOOP)):
                page = browser.new_page()
                page.goto(f"{url}/{name}/blank.html")
                rate = page.evaluate(loop, [PRIME, args.length])
                rows.append((name, folder_bytes(root / name), rate))
                page.close()
            browser.close()
        server.shutdown()
    print("| runtime | folder | characters per second |\n|---|---:|---:|")
    for name, size, rate in rows:
        print(f"| {name} | {size / 2**20:.2f} MiB | {rate:,.0f} |")


if __name__ == "__main__":
    main()
