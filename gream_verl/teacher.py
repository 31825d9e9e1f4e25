"""Client for an OpenAI-compatible chat endpoint (the "teacher" LLM).

Used for item-text enrichment (``gream data enrich``) and chain-of-thought synthesis. Any
server that speaks ``POST {base_url}/chat/completions`` works: vLLM, SGLang, llama.cpp,
OpenAI itself.

Teacher calls are slow and cost money, so the client
  * sends them through :class:`gream_verl.openai_client.OpenAIClient`: up to
    ``max_concurrency`` in flight, transient failures (connection errors, timeouts, 429, 5xx)
    retried with exponential backoff;
  * caches every completion on disk, one small JSON file per request, written atomically as
    soon as it arrives. The cache key is sha256 of (model, messages, sampling parameters), not
    the URL, so an interrupted run resumes where it stopped (on any server with that model)
    and a repeated run sends nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from gream_verl.io import write_json
from gream_verl.openai_client import EndpointError, OpenAIClient

log = logging.getLogger(__name__)


class TeacherError(EndpointError):
    """The teacher endpoint failed; the message names the URL and the cause."""


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
    """Caching chat-completion client (concurrency and retries from :class:`OpenAIClient`)."""

    def __init__(self, config: TeacherConfig):
        self.config = config
        self.endpoint = OpenAIClient(config.base_url, api_key=config.api_key, timeout=config.timeout,
                                     max_retries=config.max_retries, backoff=config.backoff,
                                     max_concurrency=config.max_concurrency)  # fmt: skip
        self.url = self.endpoint.url("chat/completions")
        self.cache_dir = Path(config.cache_dir) if config.cache_dir else None
        self._cache_hits = 0
        self._lock = threading.Lock()

    @property
    def stats(self) -> dict[str, int]:
        """``requests_sent`` (HTTP attempts), ``cache_hits``, ``retries``, ``failures``."""
        return {**self.endpoint.stats, "cache_hits": self._cache_hits}

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
                with self._lock:
                    self._cache_hits += 1
            else:
                todo[ck] = messages

        payloads = {ck: self._payload(messages) for ck, messages in todo.items()}
        try:
            keep = lambda ck, response: self._keep(ck, todo[ck], response)  # noqa: E731
            answers.update(self.endpoint.post_many("chat/completions", payloads, keep, desc=desc))
        except EndpointError as e:
            raise TeacherError(f"teacher {e}; completed ones are cached, re-run to resume") from e
        return {key: answers[cache_keys[key]] for key in requests}

    def cache_key(self, messages: list[dict]) -> str:
        """sha256 of everything that determines the answer: model, messages, sampling params."""
        return hashlib.sha256(json.dumps(self._payload(messages), sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    # ------------------------------------------------------------------ internals
    def _payload(self, messages: list[dict]) -> dict:
        cfg = self.config
        return {"model": cfg.model, "messages": messages, "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}

    def _keep(self, ck: str, messages: list[dict], response: dict) -> str:
        """The completion text of ``response``, cached under ``ck`` (runs as each answer arrives)."""
        try:
            content = response["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise TeacherError(f"{self.url} returned no chat completion: {_snippet(response)}") from e
        if not isinstance(content, str):
            raise TeacherError(f"{self.url} returned non-text content: {_snippet(response)}")
        path = self._cache_file(ck)
        if path is not None:
            write_json(path, {"model": self.config.model, "messages": messages, "completion": content}, indent=None)
        return content

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


def _check_messages(key: str, messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"teacher request {key!r}: messages must be a non-empty list of chat messages")
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"teacher request {key!r}: each message needs 'role' and 'content', got {m!r}")


def _snippet(value, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."
