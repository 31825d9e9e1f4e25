"""The one HTTP client for OpenAI-compatible endpoints (vLLM, SGLang, llama.cpp, OpenAI).

Two parts of GREAM talk to such a server: the teacher LLM (:mod:`gream_verl.teacher`, for SFT
data) and ``gream eval reason --server`` (:mod:`gream_verl.infer.reason`). Both send many
independent requests, and both go through :class:`OpenAIClient`, which

* keeps up to ``max_concurrency`` requests in flight (a thread pool over one ``httpx``
  connection pool). A vLLM/SGLang server batches the requests it has; sent one at a time they
  would leave it mostly idle;
* retries what may pass on a second try (connection errors, timeouts, HTTP 408/409/425/429 and
  every 5xx) with exponential backoff, waiting at least a server's ``Retry-After`` (up to 60 s);
  any other HTTP error fails at once, naming the URL, the status and the start of the body;
* on a request that still fails, cancels the requests not yet started, lets those in flight
  finish (their ``handle`` runs, so a caller can keep them, e.g. in a cache), then raises
  :class:`EndpointError` listing how many requests were not completed.

Thread pool rather than asyncio: callers stay plain functions, and the work per request
(parsing, a cache write) is small next to the server's latency.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import httpx

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx
MAX_RETRY_AFTER = 60.0  # seconds; a server asking for longer is not waited on blindly

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class EndpointError(RuntimeError):
    """A request to an OpenAI-compatible endpoint failed; the message names the URL and the cause."""


class OpenAIClient:
    """Concurrent, retrying JSON POSTs to ``{base_url}/{route}``. See the module docstring.

    ``stats`` counts ``requests_sent`` (HTTP attempts), ``retries`` and ``failures`` (requests
    given up on, or whose answer ``handle`` rejected).
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0, max_retries: int = 5,
                 backoff: float = 1.0, max_concurrency: int = 8):  # fmt: skip
        if not base_url or not str(base_url).startswith(("http://", "https://")):
            raise ValueError(f"endpoint base URL must start with http:// or https://, got {base_url!r}")
        if int(max_concurrency) < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if int(max_retries) < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if not float(timeout) > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.base_url = str(base_url).rstrip("/")
        self.api_key = api_key
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_concurrency = int(max_concurrency)
        self.stats = {"requests_sent": 0, "retries": 0, "failures": 0}
        self._lock = threading.Lock()

    def url(self, route: str) -> str:
        """``{base_url}/{route}``; a base URL that already ends in ``route`` is used as is."""
        route = route.strip("/")
        return self.base_url if self.base_url.endswith("/" + route) else f"{self.base_url}/{route}"

    def post(self, route: str, payload: dict) -> dict:
        """One request (with retries); the response's JSON object."""
        return self.post_many(route, {0: payload}, progress=False)[0]

    def post_many(self, route: str, payloads: Mapping[K, dict], handle: Callable[[K, dict], T] | None = None,
                  desc: str = "requests", progress: bool = True) -> dict[K, T]:  # fmt: skip
        """POST every ``key -> payload`` with at most ``max_concurrency`` in flight; returns
        ``key -> handle(key, response JSON)`` (the response itself without ``handle``).

        ``handle`` runs in the worker thread as each answer arrives; an exception it raises
        fails the run like a failed request."""
        from tqdm.auto import tqdm

        if not payloads:
            return {}
        url = self.url(route)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        results: dict[K, T] = {}
        error: BaseException | None = None
        bar = tqdm(total=len(payloads), desc=desc, unit="req", disable=not progress or len(payloads) < 2)
        with httpx.Client(timeout=self.timeout, limits=limits, headers=headers) as http:

            def one(key: K, payload: dict) -> T:
                answer = self._post_with_retries(http, url, payload)
                try:
                    return handle(key, answer) if handle is not None else answer
                except Exception:
                    self._count("failures")
                    raise

            pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(payloads)))
            futures = {}
            try:
                futures = {pool.submit(one, key, payload): key for key, payload in payloads.items()}
                pending = set(futures)
                while pending and error is None:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        if fut.exception() is not None:
                            error = error or fut.exception()
                        else:
                            bar.update(1)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                bar.close()
        for fut, key in futures.items():  # requests in flight when one failed are answered too
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                results[key] = fut.result()
        if error is not None:
            missing = len(payloads) - len(results)
            if isinstance(error, EndpointError):
                raise type(error)(f"{error} ({missing} of {len(payloads)} requests not completed)") from error
            raise error
        return results

    # ------------------------------------------------------------------ internals
    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _post_with_retries(self, http: httpx.Client, url: str, payload: dict) -> dict:
        cause = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
            self._count("requests_sent")
            retry_after = 0.0
            try:
                response = http.post(url, json=payload)
            except httpx.TransportError as e:  # refused, reset, timeouts, DNS
                cause = f"cannot connect ({type(e).__name__}: {e})"
            else:
                if response.status_code == 200:
                    return self._json(url, response)
                cause = f"HTTP {response.status_code} {response.reason_phrase}: {_snippet(response.content)}"
                if response.status_code not in RETRY_STATUS and response.status_code < 500:
                    self._count("failures")
                    raise EndpointError(f"{url} rejected the request: {cause}")
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt < self.max_retries:
                delay = max(self.backoff * (2**attempt), retry_after)
                log.debug("%s: %s; retry %d in %.2fs", url, cause, attempt + 1, delay)
                time.sleep(delay)
        self._count("failures")
        raise EndpointError(f"{url} failed after {self.max_retries + 1} attempts: {cause}")

    def _json(self, url: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._count("failures")
            raise EndpointError(f"{url} answered with something other than a JSON object: {_snippet(response.content)}")
        return data


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value else 0.0
    except ValueError:
        return 0.0
