"""SIGTERM lets requests already in the server finish before it exits."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from gream_verl.io import read_json


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests(start_server, tiny_data_dir):
    # A batch waits up to 1.5 s for company, so the requests are still queued when SIGTERM arrives.
    server = start_server("--beams", "5", "--max-wait-ms", "1500")
    histories = [seq[:-1] for seq in read_json(tiny_data_dir / "Tiny.inter.json").values()][:4]

    async def requests_then_sigterm():
        async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:
            sent = [asyncio.create_task(client.post("/v1/recommend", json={"history": h, "k": 5})) for h in histories]
            deadline = time.monotonic() + 30
            while (await client.get("/healthz")).json()["pending"]["direct"] < len(histories):
                assert time.monotonic() < deadline, "the requests never reached the batcher"
                await asyncio.sleep(0.02)
            server.proc.terminate()  # SIGTERM
            return await asyncio.gather(*sent)

    responses = asyncio.run(requests_then_sigterm())
    assert [r.status_code for r in responses] == [200] * len(histories), [r.text for r in responses]
    assert all(len(r.json()["items"]) == 5 for r in responses)
    # uvicorn re-raises the signal once shut down, so the exit status is SIGTERM's (or 0).
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM), server.log()
    assert "Application shutdown complete" in server.log()
