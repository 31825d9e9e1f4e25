import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gream_verl.cli import main
from gream_verl.index.tokens import ItemIndex
from gream_verl.infer.reason import parse_answer, reasoning_prefix


class FakeServer:
    """OpenAI-compatible /v1/chat/completions and /v1/completions honouring ``n``."""

    def __init__(self, reply):
        self.reply = reply  # (request body, sample number) -> text
        self.requests = []

    def __enter__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                texts = [fake.reply(body, k) for k in range(body.get("n", 1))]
                if self.path.endswith("/chat/completions"):
                    choices = [{"index": k, "message": {"role": "assistant", "content": t}} for k, t in enumerate(texts)]
                else:
                    choices = [{"index": k, "text": t} for k, t in enumerate(texts)]
                data = json.dumps({"choices": choices}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


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


def test_server_samples_with_parsed_answers(capsys, tmp_path, tiny_data_dir, tiny_index):
    from gream_verl.data.dataset import load_dataset
    from gream_verl.data.split import leave_one_out

    examples = leave_one_out(load_dataset(tiny_data_dir).sequences, "test")[:4]
    targets = [e.target for e in examples]
    wrong = next(i for i in tiny_index.tokens if i not in targets)

    def reply(body, k):
        content = body["messages"][-1]["content"]
        user = next(n for n, e in enumerate(examples) if tiny_index.string(e.history[-1]) in content)
        if k == 0:
            return "<think>garbage</think><answer>not an item</answer>"
        answer = targets[user] if (user % 2 == 0 and k == 2) else wrong
        return f"<think>step {k}</think>\n<answer>{tiny_index.string(answer)}</answer>"

    with FakeServer(reply) as server:
        result = eval_reason(
            capsys, "--data", str(tiny_data_dir), "--index", str(tiny_data_dir / "Tiny.index.json"), "--limit", "4",
            "--server", server.url, "--server-model", "gream", "--num-samples", "3",
            "--out", str(tmp_path / "r.json"), overrides=["reason.answer=parse"],
        )  # fmt: skip
        bodies = [b for _, b in server.requests]
    assert len(bodies) == 4
    assert all(b["n"] == 3 and b["temperature"] == 0.7 and b["top_p"] == 0.9 and "stop" not in b for b in bodies)
    # answers per user: [None, wrong, target-or-wrong]; distinct: [wrong, target] or [wrong]
    assert result["metrics"]["pass@1"] == 0.0
    assert result["metrics"]["pass@5"] == pytest.approx(0.5)
    assert result["valid_answer_rate"] == pytest.approx(2 / 3)


def test_server_reasoning_with_constrained_answer(capsys, tmp_path, tiny_data_dir, tiny_model_dir, tiny_index):
    with FakeServer(lambda body, k: f"<think>thought {k}</think>\n") as server:
        result = eval_reason(
            capsys, "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
            "--index", str(tiny_data_dir / "Tiny.index.json"), "--limit", "2", "--server", server.url,
            "--server-model", "gream", "--num-samples", "2",
            "--out", str(tmp_path / "r.json"), "--save-predictions", str(tmp_path / "p.jsonl"),
            overrides=["reason.api=completions"],
        )  # fmt: skip
        paths = [p for p, _ in server.requests]
        bodies = [b for _, b in server.requests]
    assert paths == ["/v1/completions"] * 2
    assert all(b["stop"] == ["<answer>"] and b["prompt"].endswith("<|im_start|>assistant\n") for b in bodies)
    assert result["forced_answers"] == 4 and result["valid_answer_rate"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all(a in tiny_index for r in rows for a in r["answers"])


def test_server_errors_are_clear(capsys, tiny_data_dir):
    code = main(["eval", "reason", "--data", str(tiny_data_dir), "--index", str(tiny_data_dir / "Tiny.index.json"),
                 "--server", "http://127.0.0.1:9/v1", "--server-model", "m", "--limit", "1",
                 "reason.answer=parse", "progress=false"])  # fmt: skip
    assert code == 1
    assert "127.0.0.1:9" in capsys.readouterr().err


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
