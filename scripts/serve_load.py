"""Aggregate streaming throughput of `charrnn serve` for 1, 4, 16 and 64 concurrent clients, against the limit.

    python scripts/serve_load.py CHECKPOINT [--clients 1,4,16,64] [--seconds 10] [--length 400] [--limit-seconds 3]

Starts `charrnn serve CHECKPOINT` on a free loopback port, and for each number of clients has that many
clients stream requests back to back for --seconds, and then, while the server idles, times the limit for that
number: B streams of the same model stepped in a bare loop, one batched cell step and one batched draw per character,
no HTTP and nothing per stream. Prints a Markdown table: characters received per second, against one client,
against the limit at B = clients, and the median time to the first new character. Everything stays on
127.0.0.1, and the run ends by itself after about levels x (seconds + limit seconds) plus start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import torch

from charrnn.api import load
from charrnn.generation.drawing import RowOptions, pick
from charrnn.generation.sampling import Stepper
from charrnn.settings.config import SampleConfig

PRIME = "Alice "


async def stream_once(client: httpx.AsyncClient, length: int, seed: int) -> tuple[int, float]:
    """New characters received, and seconds to the first of them, for one streamed request."""
    body = {"prime": PRIME, "length": length, "seed": seed, "stream": True}
    started, first, received, events = time.perf_counter(), None, 0, 0
    async with client.stream("POST", "/v1/generate", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events += 1
            if events == 1:
                continue  # the prime comes back first, as it is
            received += len(json.loads(line[6:])["text"])
            if first is None:
                first = time.perf_counter() - started
    return received, first


async def level(url: str, clients: int, seconds: float, length: int) -> tuple[float, float]:
    """Characters per second over all clients, and the median time to first character."""
    deadline = time.perf_counter() + seconds
    counts, waits = [], []

    async def client_loop(index: int):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            seed = index * 1000
            while time.perf_counter() < deadline:
                received, first = await stream_once(client, length, seed)
                counts.append(received)
                waits.append(first)
                seed += 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(clients)))
    return sum(counts) / (time.perf_counter() - started), statistics.median(waits)


def start_server(checkpoint: str, max_concurrent: int, threads: int | None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "charrnn", "serve", checkpoint, "--port", "0"]
    command += ["--max-concurrent", str(max_concurrent)] + (["--threads", str(threads)] if threads else [])
    server = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent, env=os.environ
    )
    line = server.stderr.readline()
    if not line.startswith("serving "):
        server.kill()
        sys.exit(f"the server did not start: {line}{server.stderr.read()}")
    url = line.split()[1]
    # The server's log goes on to stderr, read to the end so that the server never blocks on a full pipe.
    threading.Thread(target=server.stderr.read, daemon=True).start()
    for _ in range(300):
        try:
            httpx.get(f"{url}/healthz", timeout=5).raise_for_status()
            return server, url
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    sys.exit("the server did not answer /healthz within 30 s")


def limit(checkpoint: str, rows: int, seconds: float) -> float:
    """Characters per second of `rows` streams stepped in a bare loop with the server's default options: the
    cell step the server's batch runs, and one draw for every row from one generator."""
    model = load(checkpoint).model.eval()
    stepper = Stepper(model, 1 if rows == 1 else 2)
    options = RowOptions.of(SampleConfig(), rows, model.config.vocab_size, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        logits, layers = stepper.step(torch.zeros(rows, dtype=torch.long), Stepper(model, rows).zero_state())
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            ids = pick(logits, options, torch.rand(rows, generator=generator))
            logits, layers = stepper.step(ids, layers)
            steps += 1
    return steps * rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--clients", default="1,4,16,64", help="numbers of concurrent clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="time each number of clients streams")
    parser.add_argument("--length", type=int, default=400, help="new characters per request")
    parser.add_argument("--threads", type=int, default=None, help="the server's --threads, and the limit's")
    parser.add_argument("--limit-seconds", type=float, default=3.0, help="time the limit is stepped for each B")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    server, url = start_server(args.checkpoint, max(levels), args.threads)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        results, limits = {}, {}
        for n in levels:
            # The limit right after its level, while the server idles: both see the same load from other work.
            results[n] = asyncio.run(level(url, n, args.seconds, args.length))
            limits[n] = limit(args.checkpoint, n, args.limit_seconds)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    base = results[levels[0]][0]
    print(
        f"| clients | characters/s | x {levels[0]} client{'s' * (levels[0] > 1)} | limit at B = clients "
        "| ÷ limit | median time to first character |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, (rate, wait) in results.items():
        ratios = f"{rate / base:.2f} | {limits[n]:,.0f} | {rate / limits[n]:.2f}"
        print(f"| {n} | {rate:,.0f} | {ratios} | {wait * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
