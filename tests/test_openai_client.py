"""OpenAIClient against the fake OpenAI-compatible server (the teacher tests cover caching,
and the retry/concurrency behaviour seen through the teacher)."""

import pytest

from gream_verl.openai_client import EndpointError, OpenAIClient


def test_urls_and_settings_are_checked():
    assert OpenAIClient("http://h:1/v1/").url("chat/completions") == "http://h:1/v1/chat/completions"
    assert OpenAIClient("http://h:1/v1/completions").url("/completions") == "http://h:1/v1/completions"
    with pytest.raises(ValueError, match="must start with http:// or https://, got 'localhost:8000/v1'"):
        OpenAIClient("localhost:8000/v1")
    with pytest.raises(ValueError, match="max_concurrency must be >= 1, got 0"):
        OpenAIClient("http://h/v1", max_concurrency=0)
    with pytest.raises(ValueError, match="max_retries must be >= 0, got -1"):
        OpenAIClient("http://h/v1", max_retries=-1)
    with pytest.raises(ValueError, match="timeout must be > 0 seconds, got 0"):
        OpenAIClient("http://h/v1", timeout=0)


def test_post_many_returns_every_answer_by_key(openai_server):
    server = openai_server(sample=lambda body, k: f"{body['prompt']}/{k}")
    client = OpenAIClient(server.url, max_concurrency=3, backoff=0.01)
    payloads = {("u", i): {"model": "m", "prompt": f"p{i}", "n": 2} for i in range(7)}
    out = client.post_many("completions", payloads, lambda key, r: [c["text"] for c in r["choices"]], progress=False)
    assert out == {("u", i): [f"p{i}/0", f"p{i}/1"] for i in range(7)}
    assert client.stats == {"requests_sent": 7, "retries": 0, "failures": 0}
    assert client.post_many("completions", {}) == {}


def test_a_rejected_answer_stops_the_run_and_keeps_those_in_flight(openai_server):
    server = openai_server(delay=0.1)
    client = OpenAIClient(server.url, max_concurrency=2, backoff=0.01)
    kept = []

    def handle(key, response):
        if key == 0:
            raise EndpointError("answer 0 is not usable")
        kept.append(key)
        return response

    payloads = {i: {"model": "m", "messages": [{"role": "user", "content": str(i)}]} for i in range(10)}
    with pytest.raises(EndpointError, match=r"answer 0 is not usable \(\d+ of 10 requests not completed\)") as error:
        client.post_many("chat/completions", payloads, handle, progress=False)
    # the requests already sent were answered and handled; the others were never sent
    assert 1 <= len(kept) == server.count - 1 <= 3
    assert f"({10 - len(kept)} of 10 requests not completed)" in str(error.value)
    assert client.stats["failures"] == 1


def test_a_client_error_is_not_retried_and_names_the_url(openai_server):
    server = openai_server()
    client = OpenAIClient(server.url, max_retries=3, backoff=0.01)
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1:\d+/v1/embeddings rejected the request: HTTP 404"):
        client.post("embeddings", {"model": "m", "input": "x"})
    assert server.count == 1 and client.stats == {"requests_sent": 1, "retries": 0, "failures": 1}
