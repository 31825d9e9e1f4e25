"""``gream serve`` as a user meets it: a real server process, a real HTTP client."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import httpx
import pytest

from gream_verl.io import read_json


@pytest.fixture(scope="module")
def http(server):
    """One client for the module (``httpx.post`` builds a new client, and an SSL context, per call)."""
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        yield client


def post(http, body) -> httpx.Response:
    return http.post("/v1/recommend", json=body)


@pytest.fixture(scope="module")
def histories(tiny_data_dir) -> list[list[str]]:
    """The tiny dataset's user sequences without their last item (4 to 7 items each)."""
    inter = read_json(tiny_data_dir / "Tiny.inter.json")
    return [seq[:-1] for seq in inter.values()]


def expected_ranking(tiny_lm, tiny_index, tiny_data_dir, history, beams):
    """The project's decoder called in this process on the same prompt: the oracle for wiring."""
    from gream_verl.data.dataset import load_dataset
    from gream_verl.data.split import Example
    from gream_verl.index.trie import build_trie
    from gream_verl.infer.common import chat_text, seqrec_messages
    from gream_verl.infer.constrained import constrained_beam_search

    model, tokenizer = tiny_lm
    trie = build_trie(tiny_index, tokenizer, model.config.vocab_size)
    example = Example(user="", history=tuple(history), target="")
    text = chat_text(tokenizer, seqrec_messages(example, load_dataset(tiny_data_dir), tiny_index))
    (row,) = constrained_beam_search(model, tokenizer, trie, [text], num_beams=beams)
    return [(c.item, c.score) for c in row]


def test_info_and_health(http, tiny_index):
    health = http.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    info = http.get("/v1/info").json()
    assert info["catalogue_size"] == 60
    assert info["index_levels"] == max(len(t) for t in tiny_index.tokens.values())
    assert info["beams"] == 10 and info["max_history"] == 5
    assert info["batching"]["max_batch"] == 32 and info["batching"]["max_wait_ms"] == 20.0
    assert info["engine"]
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/recommend", "/v1/info", "/healthz"} <= set(paths)


def test_direct_items_match_the_decoder(http, tiny_lm, tiny_index, tiny_data_dir, histories):
    history = histories[0]
    r = post(http, {"history": history, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    want = expected_ranking(tiny_lm, tiny_index, tiny_data_dir, history, beams=10)[:7]
    assert [x["item"] for x in body["items"]] == [item for item, _ in want]
    assert [x["log_prob"] for x in body["items"]] == pytest.approx([s for _, s in want], abs=1e-4)
    assert [x["rank"] for x in body["items"]] == list(range(1, 8))
    for x in body["items"]:
        assert x["title"] == f"product number {x['item']}"
        assert x["index"] == "".join(tiny_index.tokens[x["item"]])
        assert x["asin"] is None
    assert body["mode"] == "direct" and body["k"] == 7
    assert body["model"].endswith("model") and body["index"].endswith("Tiny.index.json")
    assert body["history"] == {"items": history, "received": len(history), "truncated": False}


def test_rankings_are_deterministic(http, histories):
    first, second = (post(http, {"history": histories[3], "k": 10}).json() for _ in range(2))
    assert first["items"] == second["items"]
    assert len({x["item"] for x in first["items"]}) == 10  # distinct


def test_long_history_is_cut_to_the_most_recent_items(http, tiny_data_dir):
    items = list(read_json(tiny_data_dir / "Tiny.item.json"))[:8]
    long = post(http, {"history": items, "k": 5}).json()
    recent = post(http, {"history": items[-5:], "k": 5}).json()
    assert long["history"] == {"items": items[-5:], "received": 8, "truncated": True}
    assert long["items"] == recent["items"]


def test_integer_ids_are_accepted(http, histories):
    as_int = post(http, {"history": [int(i) for i in histories[1]], "k": 3}).json()
    as_str = post(http, {"history": histories[1], "k": 3}).json()
    assert as_int["items"] == as_str["items"]


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        ({"history": ["0", "nope", "999"]}, 422, r"2 unknown item id\(s\) in history .*'nope', '999'"),
        ({"history": []}, 422, r"history is empty"),
        ({"history": ["0"], "k": 11}, 422, r"k=11 is out of range: .*beam width 10"),
        ({"history": ["0"], "k": 0}, 422, r"body\.k: Input should be greater than or equal to 1"),
        ({"history": ["0"], "mode": "think"}, 422, r"body\.mode: Input should be 'direct' or 'reason'"),
        ({"k": 3}, 422, r"body\.history: Field required"),
        ({"history": "0,1"}, 422, r"body\.history: Input should be a valid list"),
        ({"history": ["0"], "histroy": ["1"]}, 422, r"body\.histroy: Extra inputs are not permitted"),
        ({"history": ["0"], "temperature": 0.5}, 422, r"temperature apply to mode 'reason' only"),
        ({"history": ["0"], "mode": "reason", "max_new_tokens": 33}, 422, r"max_new_tokens=33 is over .* 32"),
        ({"history": ["0"], "mode": "reason", "top_p": 1.5}, 422, r"body\.top_p: Input should be less than or equal to 1"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_that_names_the_problem(http, body, status, match):
    r = post(http, body)
    assert r.status_code == status, r.text
    assert re.search(match, r.json()["detail"]), r.json()["detail"]
    if "nope" in json.dumps(body):
        assert r.json()["unknown"] == ["nope", "999"]


def test_malformed_json_and_oversized_bodies(http, histories):
    bad = http.post("/v1/recommend", content=b'{"history": ["0",',
                    headers={"content-type": "application/json"})  # fmt: skip
    assert bad.status_code == 400 and re.search(r"malformed JSON body", bad.json()["detail"]), bad.text
    big = post(http, {"history": [str(i % 60) for i in range(2000)]})
    assert big.status_code == 413 and re.search(r"larger than 4096 bytes", big.json()["detail"]), big.text

    def chunks():  # no Content-Length: the limit must count the bytes as they arrive
        yield b'{"history": ['
        for _ in range(400):
            yield b'"1", "2", "3", '
        yield b'"4"]}'

    chunked = http.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})  # fmt: skip
    assert chunked.status_code == 413, chunked.text
    assert post(http, {"history": histories[0], "k": 2}).status_code == 200  # still serving


def test_slow_client_does_not_block_others(server, http, histories):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200\r\n\r\n{\"history\": [")  # fmt: skip
        r = post(http, {"history": histories[2], "k": 3})
        assert r.status_code == 200, r.text


def test_concurrent_requests_equal_sequential_ones(server, http, histories):
    bodies = [{"history": histories[i % len(histories)][-(1 + i % 5) :], "k": 10} for i in range(50)]
    sequential = [post(http, b).json() for b in bodies]

    async def all_at_once():
        async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:
            return await asyncio.gather(*(client.post("/v1/recommend", json=b) for b in bodies))

    concurrent = [r.json() for r in asyncio.run(all_at_once())]
    for seq, conc in zip(sequential, concurrent, strict=True):
        assert [x["item"] for x in conc["items"]] == [x["item"] for x in seq["items"]]
        assert [x["log_prob"] for x in conc["items"]] == pytest.approx([x["log_prob"] for x in seq["items"]], abs=1e-4)
    assert max(r["batch_size"] for r in concurrent) > 1  # they were batched
    stats = http.get("/v1/info").json()["stats"]["direct"]
    assert stats["largest_batch"] > 1 and stats["failed_batches"] == 0


def test_reason_mode_returns_reasoning_and_valid_items(http, tiny_index, histories):
    body = {"history": histories[4], "mode": "reason", "k": 3, "seed": 7, "temperature": 1.0}
    first, second = post(http, body), post(http, body)
    assert first.status_code == 200, first.text
    a, b = first.json(), second.json()
    assert a["reasoning"].endswith("<answer>")
    items = [x["item"] for x in a["items"]]
    assert 1 <= len(items) <= 3 and len(set(items)) == len(items) and all(i in tiny_index for i in items)
    assert a["sampling"] == {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 8, "seed": 7}
    assert (a["reasoning"], a["items"]) == (b["reasoning"], b["items"])  # same seed, same answer


def test_cli_reports_a_missing_model_folder(tmp_path, tiny_data_dir, capsys):
    from gream_verl.cli import main

    code = main(["serve", "--model", str(tmp_path / "nowhere"), "--index", str(tiny_data_dir / "Tiny.index.json"),
                 "--data", str(tiny_data_dir)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and re.search(r"gream serve: error: .*nowhere: not a model folder \(no config.json\)", err), err
