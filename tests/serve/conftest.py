"""A real ``gream serve`` process on a free local port, over the tiny Qwen3, index and data of
tests/conftest.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m gream_verl.cli serve ...`` in a subprocess; :meth:`stop` always ends it."""

    def __init__(self, args: list[str], log_path: Path, startup_s: float = 300.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self._log = open(log_path, "w")  # closed in stop()
        cmd = [sys.executable, "-m", "gream_verl.cli", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            self._wait_ready(startup_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:  # one client: polling stays cheap
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gream serve exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.25)
        raise RuntimeError(f"gream serve not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not stop within ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop(self) -> None:
        try:
            self.terminate(timeout=10.0)
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def start_server(tiny_model_dir, tiny_data_dir, tmp_path_factory):
    """``start_server(*flags) -> ServerProcess`` over the tiny model; all are stopped at the end."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        log = tmp_path_factory.mktemp("serve") / "server.log"
        args = ["--model", str(tiny_model_dir), "--index", str(tiny_data_dir / "Tiny.index.json"),
                "--data", str(tiny_data_dir), "--device", "cpu", *flags]  # fmt: skip
        started.append(ServerProcess(args, log))
        return started[-1]

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture(scope="module")
def server(start_server):
    """Beam width 10, histories cut to 5 items, bodies up to 4 KiB, reasoning budget up to 32."""
    return start_server("--beams", "10", "--max-history", "5", "--max-wait-ms", "20", "serve.max_body_bytes=4096",
                        "serve.max_new_tokens=32", "reason.max_new_tokens=8")  # fmt: skip
