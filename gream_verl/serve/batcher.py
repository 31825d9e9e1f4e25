"""Dynamic batching: requests that arrive close together share one decoder call.

A constrained beam search costs about as much for 16 prompts as for one on a small model: the
fixed cost of a ``generate`` call (Python, the processors, a few decode steps) dominates the
arithmetic. So the server does not decode each request on its own. Request handlers put their
input in a queue and await a future; one worker task takes the first waiting input, then keeps
collecting more until ``max_batch`` inputs are gathered or ``max_wait_ms`` have passed since the
first, and hands the whole batch to ``run_batch`` in a worker thread (the event loop stays free
to accept and answer other connections meanwhile). While a batch decodes, the next one gathers
in the queue, so under load batches fill up without waiting at all; with a single client the
added latency is at most ``max_wait_ms``.

``max_batch=1`` turns batching off (each request is its own decoder call), which is the
baseline the benchmark compares against. The queue is bounded (``max_queue``): beyond it a
request is refused at once (:class:`QueueFull`, HTTP 503) instead of waiting without limit.
A failing batch fails each of its requests with the same error; the worker keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """More requests are waiting than the batcher accepts."""


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0
    failed_batches: int = 0

    def as_dict(self) -> dict:
        mean = self.requests / self.batches if self.batches else 0.0
        return {"batches": self.batches, "requests": self.requests, "largest_batch": self.largest,
                "mean_batch": round(mean, 3), "failed_batches": self.failed_batches}  # fmt: skip


class DynamicBatcher:
    """Gathers :meth:`submit` calls into lists for ``run_batch(inputs) -> outputs`` (same
    length, same order), which runs in one dedicated thread, one batch at a time.

    Use inside a running event loop: ``await start()``, then ``await submit(x)`` from any
    number of tasks, then ``await stop()`` (finishes everything already submitted).
    """

    def __init__(self, run_batch: Callable[[list], Sequence], max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, name: str = "decoder"):  # fmt: skip
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not float(max_wait_ms) >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if int(max_queue) < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.run_batch = run_batch
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.name = name
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0  # submitted and not yet answered (queued or decoding)

    @property
    def pending(self) -> int:
        return self._pending

    async def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError(f"{self.name} batcher already started")
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gream-{self.name}")
        self._worker = asyncio.create_task(self._run(), name=f"gream-{self.name}-batcher")

    async def submit(self, item: Any) -> tuple[Any, int]:
        """``(output, size of the batch it was decoded in)`` for one input."""
        if self._worker is None or self._worker.done():
            raise RuntimeError(f"{self.name} batcher is not running")
        if self._pending >= self.max_queue:
            raise QueueFull(f"{self._pending} requests are already waiting (max_queue={self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        self._pending += 1
        try:
            self._queue.put_nowait((item, future))
            return await future
        finally:
            self._pending -= 1

    async def _gather(self) -> list[tuple[Any, asyncio.Future]]:
        """The next batch: the first waiting input, then whatever arrives within ``max_wait``."""
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(x, f) for x, f in await self._gather() if not f.done()]  # done: the client went away
            if not batch:
                continue
            inputs = [x for x, _ in batch]
            try:
                outputs = await loop.run_in_executor(self._executor, self.run_batch, inputs)
                if len(outputs) != len(inputs):
                    raise RuntimeError(f"run_batch returned {len(outputs)} outputs for {len(inputs)} inputs")
            except Exception as e:  # one failed batch must not stop the server
                log.exception("%s batch of %d failed", self.name, len(inputs))
                self.stats.failed_batches += 1
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            self.stats.batches += 1
            self.stats.requests += len(inputs)
            self.stats.largest = max(self.stats.largest, len(inputs))
            for (_, f), out in zip(batch, outputs, strict=True):
                if not f.done():
                    f.set_result((out, len(inputs)))

    async def stop(self) -> None:
        """Answer everything already submitted, then stop the worker and its thread."""
        if self._worker is None:
            return
        while self._pending and not self._worker.done():
            await asyncio.sleep(0.01)
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        self._executor.shutdown(wait=True)
        self._worker = None
