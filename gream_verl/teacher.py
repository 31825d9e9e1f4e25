"""Client for an OpenAI-compatible chat endpoint (the "teacher" LLM).

Used for item-text enrichment (``gream data enrich``) and chain-of-thought synthesis. Any
server that speaks ``POST {base_url}/chat/completions`` works: vLLM, SGLang, llama.cpp,
OpenAI itself.

Teacher calls are slow and cost money, so the client
  * runs requests concurrently (a thread pool of ``max_concurrency``),
  * retries connection errors, timeouts, 429 and 5xx with exponential backoff,
  * caches every completion on disk, one small JSON file per request, written atomically as
    soon as it arrives. The cache key is sha256 of (model, messages, sampling parameters), not
    the URL, so an interrupted run resumes where it stopped (on any server with that model)
    and a repeated run sends nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from pathlib import Path

from gream_verl.io import write_json

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx
MAX_RETRY_AFTER = 60.0  # seconds; a server asking for longer is not waited on blindly


class TeacherError(RuntimeError):
    """The teacher endpoint failed; the message names the URL (and request key) and the cause."""


@dataclass
class TeacherConfig:
    base_url: str
    model: str
    api_key: str | None = None
    cache_dir: str | None = None
    max_concurrency: int = 8
    max_retries: int = 5  # retries after the first attempt
    timeout: float = 60.0  # seconds per HTTP request
    temperature: float = 0.7
    max_tokens: int = 1024
    backoff: float = 1.0  # first retry waits this long, then doubles

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ValueError("teacher base_url is empty (set --base-url or OPENAI_BASE_URL)")
        if not self.model:
            raise ValueError("teacher model is empty (set --model or GREAM_TEACHER_MODEL)")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")

    @classmethod
    def from_env(cls, **values) -> TeacherConfig:
        """Config from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``GREAM_TEACHER_MODEL``;
        keyword ``values`` that are not None take precedence."""
        env = {
            "base_url": os.environ.get("OPENAI_BASE_URL"),
            "api_key": os.environ.get("OPENAI_API_KEY"),
            "model": os.environ.get("GREAM_TEACHER_MODEL"),
        }
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown teacher settings {sorted(unknown)}; expected some of {sorted(known)}")
        merged = {k: v for k, v in env.items() if v}
        merged.update({k: v for k, v in values.items() if v is not None})
        for required in ("base_url", "model"):
            merged.setdefault(required, "")
        return cls(**merged)


class TeacherClient:
    """Concurrent, retrying, caching chat-completion client. See the module docstring."""

    def __init__(self, config: TeacherConfig):
        self.config = config
        base = config.base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else f"{base}/chat/completions"
        self.cache_dir = Path(config.cache_dir) if config.cache_dir else None
        self.stats = {"requests_sent": 0, "cache_hits": 0, "retries": 0, "failures": 0}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public API
    def complete(self, messages: list[dict]) -> str:
        """One completion (cached like any other)."""
        return self.complete_many({"0": messages}, desc="teacher")["0"]

    def complete_many(self, requests: Mapping[str, list[dict]], desc: str = "teacher") -> dict[str, str]:
        """Complete every ``key -> messages`` request; returns ``key -> completion text``.

        Cached requests are answered from disk; identical requests are sent once. If a request
        still fails after its retries, requests not yet started are cancelled, those in flight
        finish (and are cached), and a :class:`TeacherError` is raised: re-running resumes.
        """
        from tqdm.auto import tqdm

        for key, messages in requests.items():
            _check_messages(key, messages)
        cache_keys = {key: self.cache_key(messages) for key, messages in requests.items()}
        answers: dict[str, str] = {}  # cache key -> completion
        todo: dict[str, list[dict]] = {}  # cache key -> messages, still to send
        for key, messages in requests.items():
            ck = cache_keys[key]
            if ck in answers or ck in todo:
                continue
            cached = self._cache_get(ck)
            if cached is not None:
                answers[ck] = cached
                self._count("cache_hits")
            else:
                todo[ck] = messages

        if todo:
            bar = tqdm(total=len(todo), desc=desc, unit="req", disable=len(todo) < 2)
            pool = ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(todo)))
            futures = {}
            error: BaseException | None = None
            try:
                futures = {pool.submit(self._fetch, ck, msgs): ck for ck, msgs in todo.items()}
                pending = set(futures)
                while pending and error is None:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        if fut.exception() is not None:
                            error = error or fut.exception()
                            continue
                        answers[futures[fut]] = fut.result()
                        bar.update(1)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                bar.close()
            for fut, ck in futures.items():  # requests in flight when one failed are answered too
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    answers[ck] = fut.result()
            if error is not None:
                missing = len(todo) - sum(ck in answers for ck in todo)
                if isinstance(error, TeacherError):
                    raise TeacherError(f"{error} ({missing} of {len(todo)} requests not completed; "
                                       "completed ones are cached, re-run to resume)") from error
                raise error
        return {key: answers[cache_keys[key]] for key in requests}

    def cache_key(self, messages: list[dict]) -> str:
        """sha256 of everything that determines the answer: model, messages, sampling params."""
        payload = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    # ------------------------------------------------------------------ internals
    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def _cache_file(self, ck: str) -> Path | None:
        return self.cache_dir / ck[:2] / f"{ck}.json" if self.cache_dir else None

    def _cache_get(self, ck: str) -> str | None:
        path = self._cache_file(ck)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            return str(entry["completion"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("teacher cache entry %s is unreadable; asking again", path)
            return None

    def _cache_put(self, ck: str, messages: list[dict], completion: str) -> None:
        path = self._cache_file(ck)
        if path is not None:
            write_json(path, {"model": self.config.model, "messages": messages, "completion": completion}, indent=None)

    def _fetch(self, ck: str, messages: list[dict]) -> str:
        completion = self._post(messages)
        self._cache_put(ck, messages, completion)
        return completion

    def _post(self, messages: list[dict]) -> str:
        """POST one request, retrying transient failures with exponential backoff."""
        cfg = self.config
        body = json.dumps({
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
        }).encode()
        headers = {"Content-Type": "application/json"}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        cause = "no attempt made"
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                self._count("retries")
            self._count("requests_sent")
            retry_after = 0.0
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=cfg.timeout) as resp:
                    raw = resp.read()
                return self._parse(raw)
            except urllib.error.HTTPError as e:
                detail = _snippet(e.read() if e.fp is not None else b"")
                cause = f"HTTP {e.code} {e.reason}: {detail}"
                if e.code not in RETRY_STATUS and e.code < 500:
                    self._count("failures")
                    raise TeacherError(f"teacher {self.url} rejected the request: {cause}") from e
                retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets
                reason = getattr(e, "reason", e)
                cause = f"cannot connect ({type(reason).__name__}: {reason})"
            if attempt < cfg.max_retries:
                delay = max(cfg.backoff * (2**attempt), retry_after)
                log.debug("teacher %s: %s; retry %d in %.2fs", self.url, cause, attempt + 1, delay)
                time.sleep(delay)
        self._count("failures")
        raise TeacherError(f"teacher {self.url} failed after {cfg.max_retries + 1} attempts: {cause}")

    def _parse(self, raw: bytes) -> str:
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            self._count("failures")
            raise TeacherError(f"teacher {self.url} returned no chat completion: {_snippet(raw)}") from e
        if not isinstance(content, str):
            self._count("failures")
            raise TeacherError(f"teacher {self.url} returned non-text content: {_snippet(raw)}")
        return content


def _check_messages(key: str, messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"teacher request {key!r}: messages must be a non-empty list of chat messages")
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"teacher request {key!r}: each message needs 'role' and 'content', got {m!r}")


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value else 0.0
    except ValueError:
        return 0.0


class FakeTeacherServer:
    """A local OpenAI-compatible endpoint for tests and offline demos (no LLM needed).

    ``reply(messages) -> str`` makes each completion (default: echoes the last message);
    ``fail(n) -> status | None`` makes the n-th request (1-based) answer an HTTP error
    instead; ``delay`` seconds are spent on each request. Use as a context manager; ``url``
    is the ``base_url`` to give :class:`TeacherConfig`. ``received`` lists the request bodies
    answered with a completion, ``max_in_flight`` the most requests handled at once.
    """

    def __init__(self, reply=None, fail=None, delay: float = 0.0):
        self.reply = reply or (lambda messages: f"echo: {messages[-1]['content']}")
        self.fail = fail or (lambda n: None)
        self.delay = delay
        self.received: list[dict] = []
        self.authorization: list[str | None] = []
        self.count = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeTeacherServer:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with fake._lock:
                    fake.authorization.append(self.headers.get("Authorization"))
                    fake.count += 1
                    n = fake.count
                    fake._in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
                try:
                    time.sleep(fake.delay)
                    status = fake.fail(n) if self.path.endswith("/chat/completions") else 404
                    if status:
                        payload, code = {"error": {"message": f"fake failure {status}"}}, status
                    else:
                        text = fake.reply(body["messages"])
                        with fake._lock:
                            fake.received.append(body)
                        payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
                        code = 200
                finally:
                    with fake._lock:
                        fake._in_flight -= 1
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
