"""The dynamic batcher on its own (no model): gathering, limits, errors, shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gream_verl.serve.batcher import DynamicBatcher, QueueFull


def run(coro):
    return asyncio.run(coro)


def test_concurrent_submissions_share_batches_up_to_max_batch():
    sizes = []

    def double(xs):
        sizes.append(len(xs))
        return [2 * x for x in xs]

    async def main():
        b = DynamicBatcher(double, max_batch=4, max_wait_ms=50)
        await b.start()
        out = await asyncio.gather(*(b.submit(x) for x in range(10)))
        await b.stop()
        return out, b.stats.as_dict()

    out, stats = run(main())
    assert [o for o, _ in out] == [2 * x for x in range(10)]
    assert sizes == [4, 4, 2] and [n for _, n in out] == [4] * 8 + [2] * 2
    assert stats["batches"] == 3 and stats["requests"] == 10 and stats["largest_batch"] == 4


def test_max_wait_bounds_how_long_a_batch_gathers():
    sizes = []

    def ident(xs):
        sizes.append(len(xs))
        return xs

    async def two_apart(wait_ms):
        b = DynamicBatcher(ident, max_batch=8, max_wait_ms=wait_ms)
        await b.start()
        first = asyncio.create_task(b.submit(1))
        await asyncio.sleep(0.15)
        await asyncio.gather(first, b.submit(2))
        await b.stop()

    run(two_apart(1000))  # the second arrives while the first still waits: one batch
    assert sizes == [2]
    sizes.clear()
    run(two_apart(0))  # no waiting: two batches
    assert sizes == [1, 1]


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    def fragile(xs):
        if "bad" in xs:
            raise ValueError("cannot decode 'bad'")
        return xs

    async def main():
        b = DynamicBatcher(fragile, max_batch=4, max_wait_ms=20)
        await b.start()
        results = await asyncio.gather(b.submit("ok"), b.submit("bad"), return_exceptions=True)
        after = await b.submit("fine")
        await b.stop()
        return results, after, b.stats.as_dict()

    results, after, stats = run(main())
    assert all(isinstance(r, ValueError) and "cannot decode 'bad'" in str(r) for r in results)
    assert after == ("fine", 1) and stats["failed_batches"] == 1


def test_queue_limit_refuses_at_once_and_stop_answers_everything_submitted():
    release = threading.Event()

    def slow(xs):
        release.wait(10)
        return xs

    async def main():
        b = DynamicBatcher(slow, max_batch=1, max_wait_ms=0, max_queue=2)
        await b.start()
        held = [asyncio.create_task(b.submit(i)) for i in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull, match=r"2 requests are already waiting \(max_queue=2\)"):
            await b.submit(3)
        release.set()
        stopping = asyncio.create_task(b.stop())
        done = await asyncio.gather(*held)
        await stopping
        return done

    assert run(main()) == [(0, 1), (1, 1)]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_batch": 0}, r"max_batch must be >= 1, got 0"),
    ({"max_wait_ms": -1}, r"max_wait_ms must be >= 0, got -1"),
    ({"max_queue": 0}, r"max_queue must be >= 1, got 0"),
])  # fmt: skip
def test_bad_limits_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicBatcher(lambda xs: xs, **kwargs)


def test_submit_before_start_is_an_error():
    with pytest.raises(RuntimeError, match=r"decoder batcher is not running"):
        run(DynamicBatcher(lambda xs: xs).submit(1))
