"""TeacherClient against a local fake OpenAI-compatible server."""

import json
import socket
import time

import pytest
from fake_openai import FakeOpenAIServer

from gream_verl.teacher import TeacherClient, TeacherConfig, TeacherError


def msgs(i):
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"q{i}"}]


def client(url, tmp_path=None, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_retries", 3)
    cache = str(tmp_path / "cache") if tmp_path is not None else None
    return TeacherClient(TeacherConfig(base_url=url, model="fake", cache_dir=cache, **kw))


def test_answers_by_key_and_concurrently():
    with FakeOpenAIServer(delay=0.2) as server:
        c = client(server.url, max_concurrency=4, api_key="sk-test")
        out = c.complete_many({f"k{i}": msgs(i) for i in range(16)})
    assert out == {f"k{i}": f"echo: q{i}" for i in range(16)}
    assert 1 < server.max_in_flight <= 4  # concurrent, and bounded by max_concurrency
    assert set(server.authorization) == {"Bearer sk-test"}
    body = server.received[0]
    assert body["model"] == "fake" and body["temperature"] == 0.7 and body["max_tokens"] == 1024
    assert c.stats == {"requests_sent": 16, "cache_hits": 0, "retries": 0, "failures": 0}


def test_no_key_sends_no_authorization():
    with FakeOpenAIServer() as server:
        assert client(server.url).complete(msgs(0)) == "echo: q0"
    assert server.authorization == [None]


@pytest.mark.parametrize("status", [500, 429, 503, 529])
def test_retries_transient_errors_then_succeeds(status):
    with FakeOpenAIServer(fail=lambda n: status if n <= 2 else None) as server:
        c = client(server.url, max_retries=3)
        assert c.complete(msgs(1)) == "echo: q1"
    assert c.stats["retries"] == 2 and c.stats["requests_sent"] == 3 and c.stats["failures"] == 0


def test_client_error_is_not_retried():
    with FakeOpenAIServer(fail=lambda n: 400) as server:
        c = client(server.url, max_retries=3)
        with pytest.raises(TeacherError, match=r"127\.0\.0\.1.*HTTP 400"):
            c.complete(msgs(1))
    assert server.count == 1 and c.stats["failures"] == 1


def test_gives_up_after_retries():
    with FakeOpenAIServer(fail=lambda n: 500) as server:
        c = client(server.url, max_retries=2)
        with pytest.raises(TeacherError, match="after 3 attempts.*HTTP 500"):
            c.complete(msgs(1))
    assert server.count == 3


def test_cache_makes_second_run_send_nothing(tmp_path):
    requests = {f"k{i}": msgs(i) for i in range(10)}
    with FakeOpenAIServer() as server:
        first = client(server.url, tmp_path).complete_many(requests)
        second_client = client(server.url, tmp_path)
        second = second_client.complete_many(requests)
    assert first == second
    assert server.count == 10
    assert second_client.stats["requests_sent"] == 0 and second_client.stats["cache_hits"] == 10


def test_cache_key_depends_on_sampling_params(tmp_path):
    with FakeOpenAIServer() as server:
        client(server.url, tmp_path).complete(msgs(1))
        client(server.url, tmp_path, temperature=0.0).complete(msgs(1))
        client(server.url, tmp_path, max_tokens=7).complete(msgs(1))
        client(server.url, tmp_path).complete(msgs(1))
    assert server.count == 3


def test_identical_requests_sent_once():
    with FakeOpenAIServer() as server:
        out = client(server.url).complete_many({"a": msgs(1), "b": msgs(1), "c": msgs(2)})
    assert out == {"a": "echo: q1", "b": "echo: q1", "c": "echo: q2"}
    assert server.count == 2


def test_interrupted_run_resumes_without_repeating(tmp_path):
    requests = {f"k{i}": msgs(i) for i in range(20)}
    with FakeOpenAIServer(fail=lambda n: 500 if n > 6 else None) as broken:
        with pytest.raises(TeacherError, match="re-run to resume"):
            client(broken.url, tmp_path, max_retries=0, max_concurrency=2).complete_many(requests)
    answered_first = {b["messages"][-1]["content"] for b in broken.received}
    assert len(answered_first) == 6
    with FakeOpenAIServer() as healthy:
        out = client(healthy.url, tmp_path).complete_many(requests)
    answered_second = {b["messages"][-1]["content"] for b in healthy.received}
    assert answered_first.isdisjoint(answered_second)
    assert answered_first | answered_second == {f"q{i}" for i in range(20)}
    assert out == {f"k{i}": f"echo: q{i}" for i in range(20)}


def test_corrupt_cache_entry_is_asked_again(tmp_path):
    with FakeOpenAIServer() as server:
        c = client(server.url, tmp_path)
        c.complete(msgs(1))
        (entry,) = (tmp_path / "cache").rglob("*.json")
        entry.write_text("{trunc")
        assert client(server.url, tmp_path).complete(msgs(1)) == "echo: q1"
    assert server.count == 2


def test_unreachable_endpoint_names_url_quickly():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    c = client(url, max_retries=2, timeout=2.0)
    start = time.monotonic()
    with pytest.raises(TeacherError, match=f"127.0.0.1:{port}/v1/chat/completions.*cannot connect"):
        c.complete_many({"a": msgs(1), "b": msgs(2)})
    assert time.monotonic() - start < 5
    assert c.stats["failures"] >= 1


def test_garbage_response_is_a_teacher_error():
    with FakeOpenAIServer(reply=lambda m: None) as server:
        with pytest.raises(TeacherError, match="non-text content"):
            client(server.url).complete(msgs(1))


def test_bad_messages_and_config():
    c = TeacherClient(TeacherConfig(base_url="http://x/v1", model="m"))
    with pytest.raises(ValueError, match="'k'"):
        c.complete_many({"k": []})
    with pytest.raises(ValueError, match="role"):
        c.complete_many({"k": [{"text": "hi"}]})
    with pytest.raises(ValueError, match="base_url"):
        TeacherConfig(base_url="", model="m")


def test_from_env(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("GREAM_TEACHER_MODEL", "env-model")
    cfg = TeacherConfig.from_env(model="flag-model", max_retries=None)
    assert (cfg.base_url, cfg.api_key, cfg.model, cfg.max_retries) == ("http://env:1/v1", "sk-env", "flag-model", 5)
    assert TeacherClient(cfg).url == "http://env:1/v1/chat/completions"
    monkeypatch.delenv("GREAM_TEACHER_MODEL")
    with pytest.raises(ValueError, match="model"):
        TeacherConfig.from_env()
    with pytest.raises(ValueError, match="unknown"):
        TeacherConfig.from_env(modle="x")
    assert json.loads(json.dumps(cfg.__dict__))  # plain values, loggable
