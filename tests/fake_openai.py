"""A local OpenAI-compatible server for the tests (no LLM, no network).

One fake serves the teacher tests (``gream_verl.teacher``), the SFT/enrichment tests that call
a teacher and the reasoning-evaluation tests (``gream eval reason --server``): it answers
``POST .../chat/completions`` and ``POST .../completions`` with ``n`` choices, can fail chosen
requests with an HTTP status, and records what it was sent and how many requests it handled at
once (to check the client's concurrency bound).

Import it as ``from fake_openai import FakeOpenAIServer`` (``tests/`` is on ``sys.path``
because of ``tests/conftest.py``), or use the ``openai_server`` fixture of that conftest.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def echo(messages: list[dict]) -> str:
    return f"echo: {messages[-1]['content']}"


class FakeOpenAIServer:
    """Context manager; ``url`` is the base URL (``http://127.0.0.1:PORT/v1``).

    * ``reply(messages) -> str``: the text of a chat completion (default: echoes the last
      message); every one of the ``n`` choices gets it.
    * ``sample(body, k) -> str``: when given, the text of choice ``k`` (0-based) of a request with
      JSON ``body``, for both routes (``body["messages"]`` or ``body["prompt"]``).
    * ``fail(count) -> status | None``: the ``count``-th request (1-based) answers this HTTP error.
    * ``delay``: seconds spent on each request before answering.

    Recorded: ``requests`` (path, body) of every request; ``received`` the bodies answered with a
    completion; ``authorization`` each request's Authorization header; ``count`` requests
    handled; ``max_in_flight`` the most requests handled at the same time.
    """

    def __init__(self, reply: Callable[[list[dict]], str] | None = None,
                 fail: Callable[[int], int | None] | None = None, delay: float = 0.0,
                 sample: Callable[[dict, int], str] | None = None):  # fmt: skip
        self.reply = reply or echo
        self.sample = sample
        self.fail = fail or (lambda count: None)
        self.delay = delay
        self.requests: list[tuple[str, dict]] = []
        self.received: list[dict] = []
        self.authorization: list[str | None] = []
        self.count = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _choices(self, path: str, body: dict) -> list[dict]:
        chat = path.endswith("/chat/completions")
        n = int(body.get("n", 1))
        texts = [self.sample(body, k) if self.sample else self.reply(body["messages"]) for k in range(n)]
        if chat:
            return [{"index": k, "message": {"role": "assistant", "content": t}} for k, t in enumerate(texts)]
        return [{"index": k, "text": t} for k, t in enumerate(texts)]

    def _answer(self, path: str, body: dict, authorization: str | None) -> tuple[int, dict]:
        with self._lock:
            self.requests.append((path, body))
            self.authorization.append(authorization)
            self.count += 1
            count = self.count
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            time.sleep(self.delay)
            if not path.endswith(("/chat/completions", "/completions")):
                return 404, {"error": {"message": f"no route {path}"}}
            status = self.fail(count)
            if status:
                return status, {"error": {"message": f"fake failure {status}"}}
            payload = {"choices": self._choices(path, body)}
            with self._lock:
                self.received.append(body)
            return 200, payload
        finally:
            with self._lock:
                self._in_flight -= 1

    def __enter__(self) -> FakeOpenAIServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                code, payload = fake._answer(self.path, body, self.headers.get("Authorization"))
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
