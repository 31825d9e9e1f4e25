"""Benchmark: ``gream serve`` under a bounded local load, batched vs ``max_batch=1``.

Starts two servers on free ports of 127.0.0.1 (dynamic batching on; ``max_batch=1``), and at
each concurrency, alternating between them, sends up to ``--requests`` direct-mode requests
(histories of Office's test split) from that many concurrent clients, stopping early after
``--max-seconds``. Reports
throughput, p50/p95/p99 latency and errors per run, and the batched/unbatched throughput ratio
measured in the same run.

Goals: zero errors; batched >= 5x the throughput of unbatched at concurrency 32; p99 at
concurrency 8 (batched) under 200 ms. Only 127.0.0.1 is ever contacted.

    .venv/bin/python scripts/bench/serve_bench.py --run runs/office-default
    .venv/bin/python scripts/bench/serve_bench.py --run runs/office-default --requests 300 --max-seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # local only, by design


def run_paths(run: Path) -> tuple[Path, Path, Path]:
    """(model, index, data) of a quickstart run folder: ``sft/``, ``index/*.index.json``, ``data/<name>/``."""
    indexes = sorted((run / "index").glob("*.index.json"))
    datasets = sorted(p for p in (run / "data").iterdir() if p.is_dir()) if (run / "data").is_dir() else []
    if not (run / "sft" / "config.json").is_file() or not indexes or not datasets:
        raise SystemExit(f"{run}: not a finished quickstart run (needs sft/config.json, index/*.index.json, data/<name>/)")
    return run / "sft", indexes[0], datasets[0]


def test_histories(data: Path, max_history: int, users: int) -> list[list[str]]:
    from gream_verl.data.dataset import load_dataset
    from gream_verl.data.split import leave_one_out

    examples = leave_one_out(load_dataset(data).sequences, "test", max_history=max_history)[:users]
    if not examples:
        raise SystemExit(f"{data}: no test users")
    return [list(e.history) for e in examples]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A ``gream serve`` subprocess; always stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, model: Path, index: Path, data: Path, max_batch: int, max_wait_ms: float, extra: list[str]):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="serve_bench_", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [sys.executable, "-m", "gream_verl.cli", "serve", "--model", str(model), "--index", str(index),
               "--data", str(data), "--host", HOST, "--port", str(self.port), "--max-batch", str(max_batch),
               "--max-wait-ms", str(max_wait_ms), "serve.log_level=warning", *extra]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 600.0) -> dict:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:  # one client: polling stays cheap
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"gream serve exited with {self.proc.returncode}; log: {self.log.name}")
                try:
                    return client.get("/v1/info").raise_for_status().json()
                except httpx.HTTPError:
                    time.sleep(0.5)
        raise SystemExit(f"gream serve not ready after {timeout} s; log: {self.log.name}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def load(url: str, histories: list[list[str]], concurrency: int, requests: int, max_seconds: float,
               k: int) -> dict:  # fmt: skip
    """``concurrency`` clients in closed loop until ``requests`` are sent or ``max_seconds`` pass."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    stop_at = time.perf_counter() + max_seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < stop_at:
            history = histories[issued % len(histories)]
            issued += 1
            start = time.perf_counter()
            try:
                r = await http.post("/v1/recommend", json={"history": history, "k": k})
                ok = r.status_code == 200
                key = None if ok else f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                key = type(e).__name__
            if key is None:
                latencies.append(time.perf_counter() - start)
            else:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - began
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "concurrency": concurrency, "requests": issued, "errors": sum(errors.values()), "error_kinds": errors,
        "seconds": round(seconds, 2), "throughput_rps": round(len(latencies) / seconds, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/office-default", help="quickstart run folder (model, index, data)")
    parser.add_argument("--model", default=None, help="instead of --run: model folder")
    parser.add_argument("--index", default=None, help="instead of --run: X.index.json")
    parser.add_argument("--data", default=None, help="instead of --run: LC-Rec dataset folder")
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level (at most)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time limit per concurrency level")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--max-batch", type=int, default=32, help="batched server's max_batch")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batched server's max_wait_ms")
    parser.add_argument("--users", type=int, default=1000, help="distinct test histories to cycle through")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=16, help="requests before measuring (not counted)")
    parser.add_argument("--out", default="runs/bench/serve_bench.json")
    parser.add_argument("overrides", nargs="*", help="passed to gream serve, e.g. serve.engine=hf beams=20")
    args = parser.parse_args()
    if args.requests < 1 or args.max_seconds <= 0:
        raise SystemExit("--requests must be >= 1 and --max-seconds > 0")
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.model or args.index or args.data:
        if not (args.model and args.index and args.data):
            raise SystemExit("--model, --index and --data go together (or use --run)")
        model, index, data = Path(args.model), Path(args.index), Path(args.data)
    else:
        model, index, data = run_paths(Path(args.run))

    from gream_verl.io import write_json
    from gream_verl.tables import format_table

    # Both servers run side by side and the levels alternate between them, so that a change in
    # the machine's load (a shared CPU) hits both sides of each ratio alike.
    rows, info = [], {}
    with contextlib.ExitStack() as stack:
        servers = {label: stack.enter_context(Server(model, index, data, mb, args.max_wait_ms, args.overrides))
                   for label, mb in (("batched", args.max_batch), ("unbatched", 1))}  # fmt: skip
        for server in servers.values():
            info = server.wait_ready()
        histories = test_histories(data, info["max_history"], args.users)
        for server in servers.values():
            asyncio.run(load(server.url, histories, 4, args.warmup, 60.0, args.k))
        for c in levels:
            for label, server in servers.items():
                before = httpx.get(server.url + "/v1/info", timeout=10).json()["stats"]["direct"]
                row = asyncio.run(load(server.url, histories, c, args.requests, args.max_seconds, args.k))
                after = httpx.get(server.url + "/v1/info", timeout=10).json()["stats"]["direct"]
                batches = max(after["batches"] - before["batches"], 1)
                row = {"server": label, "max_batch": 1 if label == "unbatched" else args.max_batch, **row,
                       "mean_batch": round((after["requests"] - before["requests"]) / batches, 2)}  # fmt: skip
                rows.append(row)
                print(format_table([{k: v for k, v in row.items() if k != "error_kinds"}]), flush=True)

    by = {(r["server"], r["concurrency"]): r for r in rows}
    ratios = {f"c{c}": round(by["batched", c]["throughput_rps"] / max(by["unbatched", c]["throughput_rps"], 1e-9), 2)
              for c in levels}  # fmt: skip
    goals = {"zero_errors": all(r["errors"] == 0 for r in rows)}
    if 32 in levels:
        goals["batched_5x_at_c32"] = ratios["c32"] >= 5
    if 8 in levels:
        goals["p99_under_200ms_at_c8"] = by["batched", 8]["p99_ms"] < 200
    print()
    print(format_table([{k: v for k, v in r.items() if k != "error_kinds"} for r in rows]))
    print(f"\nthroughput batched / unbatched: {ratios}")
    print(f"goals: {goals}")
    result = {"model": str(model), "index": str(index), "data": str(data), "engine": info.get("engine"),
              "device": info.get("device"), "threads": info.get("threads"), "cpus": os.cpu_count(),
              "beams": info.get("beams"), "k": args.k, "max_wait_ms": args.max_wait_ms,
              "rows": rows, "throughput_ratio": ratios, "goals": goals}  # fmt: skip
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
