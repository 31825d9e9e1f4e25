import json

import pytest

from gream_verl.cli import main
from gream_verl.index.tokens import ItemIndex
from gream_verl.infer.reason import parse_answer, reasoning_prefix, sample_server
from gream_verl.openai_client import EndpointError


def test_reasoning_prefix_and_parse_answer():
    assert reasoning_prefix("<think>a</think>\n<answer><a_1>") == ("<think>a</think>\n<answer>", False)
    assert reasoning_prefix("ran out of tokens ") == ("ran out of tokens\n<answer>", True)
    index = ItemIndex({"7": ["<a_1>", "<b_2>"]})
    assert parse_answer("x <answer><a_1><b_2></answer>", index) == "7"
    assert parse_answer("x <answer><a_1><b_3></answer>", index) is None
    assert parse_answer("no answer at all", index) is None


def eval_reason(capsys, *argv, overrides=()):
    """argparse wants the key=value overrides together, after the options."""
    code = main(["eval", "reason", *argv, "--json", *overrides, "progress=false"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_in_process_sampling_gives_valid_answers_and_is_reproducible(capsys, tmp_path, tiny_data_dir, tiny_model_dir,
                                                                     tiny_index):  # fmt: skip
    args = ["--model", str(tiny_model_dir), "--data", str(tiny_data_dir), "--index", str(tiny_data_dir / "Tiny.index.json"),
            "--limit", "3", "--num-samples", "4", "--batch-size", "2"]  # fmt: skip
    over = ["reason.max_new_tokens=12"]
    first = eval_reason(capsys, *args, "--out", str(tmp_path / "a.json"), "--save-predictions", str(tmp_path / "a.jsonl"),
                        overrides=over)
    second = eval_reason(capsys, *args, "--out", str(tmp_path / "b.json"), "--save-predictions", str(tmp_path / "b.jsonl"),
                         overrides=over)
    assert set(first["metrics"]) == {"pass@1", "pass@5", "pass@10"}
    assert all(0.0 <= v <= 1.0 for v in first["metrics"].values())
    assert first["valid_answer_rate"] == 1.0  # constrained answers are always items
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["answers"]) == 4 for r in rows)
    assert all(a in tiny_index for r in rows for a in r["answers"])
    assert all(t.endswith("<answer>") for r in rows for t in r["reasoning"])
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    assert first["metrics"] == second["metrics"]


def test_server_samples_with_parsed_answers(capsys, tmp_path, tiny_data_dir, tiny_index, openai_server):
    from gream_verl.data.dataset import load_dataset
    from gream_verl.data.split import leave_one_out

    examples = leave_one_out(load_dataset(tiny_data_dir).sequences, "test")[:4]
    targets = [e.target for e in examples]
    wrong = next(i for i in tiny_index.tokens if i not in targets)

    def sample(body, k):
        content = body["messages"][-1]["content"]
        user = next(n for n, e in enumerate(examples) if tiny_index.string(e.history[-1]) in content)
        if k == 0:
            return "<think>garbage</think><answer>not an item</answer>"
        answer = targets[user] if (user % 2 == 0 and k == 2) else wrong
        return f"<think>step {k}</think>\n<answer>{tiny_index.string(answer)}</answer>"

    server = openai_server(sample=sample, delay=0.2)
    result = eval_reason(
        capsys, "--data", str(tiny_data_dir), "--index", str(tiny_data_dir / "Tiny.index.json"), "--limit", "4",
        "--server", server.url, "--server-model", "gream", "--num-samples", "3", "--batch-size", "1",
        "--out", str(tmp_path / "r.json"), overrides=["reason.answer=parse"],
    )  # fmt: skip
    bodies = [b for _, b in server.requests]
    assert len(bodies) == 4
    assert server.max_in_flight > 1  # users are sent together, not one batch (of 1) at a time
    assert all(b["n"] == 3 and b["temperature"] == 0.7 and b["top_p"] == 0.9 and "stop" not in b for b in bodies)
    # answers per user: [None, wrong, target-or-wrong]; distinct: [wrong, target] or [wrong]
    assert result["metrics"]["pass@1"] == 0.0
    assert result["metrics"]["pass@5"] == pytest.approx(0.5)
    assert result["valid_answer_rate"] == pytest.approx(2 / 3)


def test_server_reasoning_with_constrained_answer(capsys, tmp_path, tiny_data_dir, tiny_model_dir, tiny_index,
                                                  openai_server):  # fmt: skip
    # the first request meets a 503 (an overloaded server) and is retried
    server = openai_server(sample=lambda body, k: f"<think>thought {k}</think>\n", fail=lambda n: 503 if n == 1 else None)
    result = eval_reason(
        capsys, "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
        "--index", str(tiny_data_dir / "Tiny.index.json"), "--limit", "2", "--server", server.url,
        "--server-model", "gream", "--num-samples", "2",
        "--out", str(tmp_path / "r.json"), "--save-predictions", str(tmp_path / "p.jsonl"),
        overrides=["reason.api=completions"],
    )  # fmt: skip
    paths = [p for p, _ in server.requests]
    bodies = server.received
    assert paths == ["/v1/completions"] * 3 and len(bodies) == 2
    assert all(b["stop"] == ["<answer>"] and b["prompt"].endswith("<|im_start|>assistant\n") for b in bodies)
    assert result["forced_answers"] == 4 and result["valid_answer_rate"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all(a in tiny_index for r in rows for a in r["answers"])


def test_sample_server_keeps_a_bounded_number_of_requests_in_flight(openai_server):
    server = openai_server(sample=lambda body, k: f"{body['prompt']}-{k}", delay=0.2)
    texts = sample_server(server.url, "m", [f"p{i}" for i in range(6)], 2, 0.7, 0.9, 8, stop=True, api="completions",
                          max_concurrency=2)  # fmt: skip
    assert texts == [[f"p{i}-0", f"p{i}-1"] for i in range(6)]  # in request order
    assert server.max_in_flight == 2
    assert all(b["stop"] == ["<answer>"] and b["n"] == 2 for b in server.received)


def test_sample_server_names_an_unreachable_url():
    with pytest.raises(EndpointError, match=r"http://127\.0\.0\.1:9/v1/chat/completions failed after 1 attempts: cannot connect"):
        sample_server("http://127.0.0.1:9/v1", "m", [[{"role": "user", "content": "hi"}]], 1, 0.7, 0.9, 8, stop=False,
                      max_retries=0)  # fmt: skip
    with pytest.raises(ValueError, match="api must be 'chat' or 'completions', got 'responses'"):
        sample_server("http://127.0.0.1:9/v1", "m", ["hi"], 1, 0.7, 0.9, 8, stop=False, api="responses")


def test_server_errors_are_clear(capsys, tiny_data_dir, openai_server):
    args = ["eval", "reason", "--data", str(tiny_data_dir), "--index", str(tiny_data_dir / "Tiny.index.json"),
            "--server-model", "m", "--limit", "1", "--server"]  # fmt: skip
    server = openai_server(fail=lambda n: 400)
    assert main([*args, server.url, "reason.answer=parse", "progress=false"]) == 1
    assert f"{server.url}/chat/completions rejected the request: HTTP 400" in capsys.readouterr().err
    assert server.count == 1  # a client error is not retried


def test_recommend_reason_mode_prints_reasoning(capsys, tiny_data_dir, tiny_model_dir, tiny_index):
    code = main(["recommend", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
                 "--index", str(tiny_data_dir / "Tiny.index.json"), "--history", "3,4", "--mode", "reason", "-k", "3",
                 "--json", "reason.max_new_tokens=8"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["reasoning"].endswith("<answer>")
    assert len(result["recommendations"]) == 3
    assert len({r["item"] for r in result["recommendations"]}) == 3


def test_unbiased_pass_at_k_only_for_k_up_to_n():
    from gream_verl.infer.reason import unbiased_pass_at_k

    out = unbiased_pass_at_k([["t", "x", "t", None], ["x", "x", "x", "x"]], ["t", "t"], [1, 2, 5])
    assert set(out) == {"pass@1", "pass@2"}
    assert out["pass@1"] == pytest.approx((2 / 4 + 0) / 2)
    assert out["pass@2"] == pytest.approx((1 - (2 * 1) / (4 * 3)) / 2)
