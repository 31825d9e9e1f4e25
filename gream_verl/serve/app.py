"""The HTTP layer of ``gream serve``: a FastAPI app over a loaded :class:`Recommender`.

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

* ``POST /v1/recommend`` ``{"history": [ids or ASINs], "k": 10, "mode": "direct"}`` -> the top-k
  items, best first, each with id, ASIN (where the catalogue has one), title, index and
  log-probability; ``"mode": "reason"`` adds the sampled reasoning (``temperature``, ``top_p``,
  ``max_new_tokens``, ``seed`` in the request, defaults from the eval config).
* ``GET /healthz`` (liveness and queue depth) and ``GET /v1/info`` (model, index, catalogue,
  engine, batch limits, batch statistics).

Errors are JSON ``{"detail": "<what is wrong>"}``: 400 malformed JSON, 413 body over
``max_body_bytes``, 422 a request the catalogue or the limits reject (unknown ids are listed
under ``unknown``), 503 queue full, 500 a failed decode (the server keeps running).

Handlers never decode themselves: direct requests go through a :class:`DynamicBatcher` (one
decoder call per gathered batch), reasoning requests through a second one with ``max_batch=1``
(each has its own sampling seed). Both run the model in worker threads, so the event loop keeps
reading slow clients' bodies and answering other requests meanwhile.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from gream_verl.serve.batcher import DynamicBatcher, QueueFull
from gream_verl.serve.recommender import HistoryError, Recommender

log = logging.getLogger(__name__)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: list[StrictStr | StrictInt] = Field(
        description="items the user interacted with, oldest first: catalogue item ids or ASINs",
        examples=[["12", "40", "7"]],
    )
    k: int = Field(10, ge=1, description="number of items to return (at most the server's beam width)")
    mode: Literal["direct", "reason"] = Field("direct", description="direct: constrained beam search; "
                                              "reason: a sampled chain of thought, then the constrained answer")  # fmt: skip
    temperature: float | None = Field(None, gt=0, le=10, description="reason mode: sampling temperature")
    top_p: float | None = Field(None, gt=0, le=1, description="reason mode: nucleus sampling mass")
    max_new_tokens: int | None = Field(None, ge=1, description="reason mode: reasoning token budget")
    seed: int | None = Field(None, description="reason mode: sampling seed (same seed, same answer)")


class RecommendedItem(BaseModel):
    rank: int
    item: str
    asin: str | None
    title: str
    index: str = Field(description="the item's semantic index tokens")
    log_prob: float | None = Field(description="sequence log-probability of the index (direct mode)")


class HistoryUsed(BaseModel):
    items: list[str] = Field(description="catalogue ids the prompt used, oldest first")
    received: int
    truncated: bool = Field(description="true when only the most recent max_history items were used")


class RecommendResponse(BaseModel):
    model: str
    index: str
    mode: str
    engine: str
    k: int
    items: list[RecommendedItem]
    history: HistoryUsed
    reasoning: str | None = None
    sampling: dict | None = None
    batch_size: int = Field(description="requests decoded together with this one")
    latency_ms: float


class ErrorResponse(BaseModel):
    detail: str


_ERRORS = {code: {"model": ErrorResponse} for code in (400, 413, 422, 500, 503)}
_SAMPLING = ("temperature", "top_p", "max_new_tokens", "seed")


def error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message, **extra})


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, checked on the declared
    ``Content-Length`` before anything is read, and on the bytes received for chunked bodies."""

    def __init__(self, app, max_bytes: int):
        if int(max_bytes) < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_bytes}")
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _reject(self, send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes (max_body_bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        seen, state = 0, {"rejected": False, "started": False}

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not state["started"]:
                    state["rejected"] = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


def readable_errors(errors: list[dict]) -> str:
    """``body.k: Input should be greater than or equal to 1; ...`` from pydantic's error list."""
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
    return "; ".join(parts)


def create_app(rec: Recommender, serve_cfg) -> BodyLimit:
    """The ASGI app (FastAPI inside the body-size limit) for ``rec`` and the ``serve`` config
    section (``max_batch``, ``max_wait_ms``, ``max_queue``, ``max_body_bytes``, ``max_new_tokens``)."""
    max_new_tokens = int(serve_cfg.max_new_tokens)
    direct = DynamicBatcher(rec.direct_batch, int(serve_cfg.max_batch), float(serve_cfg.max_wait_ms),
                            int(serve_cfg.max_queue), name="direct")  # fmt: skip
    reason = DynamicBatcher(lambda batch: [rec.reason(*x) for x in batch], 1, 0.0, int(serve_cfg.max_queue),
                            name="reason")  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await direct.start()
        await reason.start()
        log.info("serving %s (%d items, engine %s, max_batch %d, max_wait_ms %s)", rec.cfg.model, len(rec.index),
                 rec.engine, direct.max_batch, serve_cfg.max_wait_ms)  # fmt: skip
        yield
        await direct.stop()
        await reason.stop()

    app = FastAPI(title="gream serve", version="1", lifespan=lifespan,
                  description="Generative recommendation with trie-constrained decoding (GREAM).")  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            reason_ = (bad_json.get("ctx") or {}).get("error", "not valid JSON")
            where = bad_json["loc"][-1] if len(bad_json.get("loc", ())) > 1 else "?"
            return error(400, f"malformed JSON body: {reason_} (at character {where})")
        return error(422, "invalid request: " + readable_errors(errors), errors=jsonable_encoder(errors))

    @app.exception_handler(Exception)
    async def _failed(request: Request, exc: Exception):
        log.exception("request failed")
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "pending": {"direct": direct.pending, "reason": reason.pending}}

    @app.get("/v1/info")
    async def info() -> dict:
        return {
            **rec.info(),
            "batching": {"max_batch": direct.max_batch, "max_wait_ms": float(serve_cfg.max_wait_ms),
                         "max_queue": direct.max_queue},  # fmt: skip
            "limits": {"max_body_bytes": int(serve_cfg.max_body_bytes), "max_new_tokens": max_new_tokens,
                       "max_k": rec.beams, "max_history": rec.max_history},  # fmt: skip
            "stats": {"direct": direct.stats.as_dict(), "reason": reason.stats.as_dict()},
        }

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=_ERRORS)
    async def recommend(req: RecommendRequest):
        start = time.perf_counter()
        try:
            history = rec.resolve_history(req.history)
            rec.check_k(req.k)
        except HistoryError as e:
            return error(422, str(e), unknown=e.unknown)
        except ValueError as e:
            return error(422, str(e))
        given = {name: getattr(req, name) for name in _SAMPLING if getattr(req, name) is not None}
        sampling = None
        try:
            if req.mode == "direct":
                if given:
                    return error(422, f"{', '.join(given)} apply to mode 'reason' only")
                ranked, batch_size = await direct.submit(history.items)
                ranked, reasoning = ranked[: req.k], None
            else:
                if given.get("max_new_tokens", 0) > max_new_tokens:
                    return error(422, f"max_new_tokens={given['max_new_tokens']} is over the server's limit "
                                      f"{max_new_tokens} (serve.max_new_tokens)")  # fmt: skip
                sampling = {**rec.reason_defaults(), **given}
                (reasoning, items), batch_size = await reason.submit((history.items, req.k, sampling))
                ranked = [(item, None) for item in items[: req.k]]
        except QueueFull as e:
            return error(503, f"server busy: {e}; retry later")
        return {
            "model": str(rec.cfg.model), "index": str(rec.cfg.index), "mode": req.mode, "engine": rec.engine,
            "k": req.k,
            "items": [{"rank": r, **rec.describe(item), "log_prob": score} for r, (item, score) in enumerate(ranked, 1)],
            "history": {"items": list(history.items), "received": history.received, "truncated": history.truncated},
            "reasoning": reasoning, "sampling": sampling, "batch_size": batch_size,
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
        }  # fmt: skip

    return BodyLimit(app, int(serve_cfg.max_body_bytes))
