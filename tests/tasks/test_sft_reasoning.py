import json
import re
from collections import Counter

import pytest
from fake_openai import FakeOpenAIServer
from sft_fixtures import GOOD_CHAIN, behaviour, fake_teacher_reply, held_out_items

from gream_verl.index.tokens import parse_index_tokens
from gream_verl.tasks.reasoning import (
    REJECT_REASONS,
    build_reasoning,
    format_target,
    parse_chain,
    reasoning_examples,
)
from gream_verl.teacher import TeacherClient, TeacherConfig, TeacherError

GOOD = GOOD_CHAIN


def test_examples_are_last_training_positions(synthetic):
    dataset, _ = synthetic
    examples = reasoning_examples(dataset, max_history=3)
    held_out = held_out_items(dataset)
    assert len(examples) == len(dataset.sequences)
    for ex in examples:
        part = dataset.sequences[ex.user][:-2]
        assert ex.target == part[-1] and list(ex.history) == part[:-1][-3:]
        assert ex.target not in held_out and not set(ex.history) & held_out
    assert len(reasoning_examples(dataset, max_samples=5)) == 5


def test_parse_chain_reasons(synthetic):
    dataset, index = synthetic
    ex = reasoning_examples(dataset)[0]
    answer = index.string(ex.target)
    good = GOOD.format(answer=answer)
    chain = parse_chain(good, ex, dataset, index)
    assert not isinstance(chain, str) and chain.supporting == (0, 1)
    assert chain.steps[2] == "Intent and goal - restocking the desk."
    title = dataset.items[ex.target]["title"]
    cases = {
        "empty": "   ",
        "missing_steps": good.replace("Step 2:", "Then:"),
        "missing_supporting_items": good.replace("Supporting items: 1, 2\n", ""),
        "bad_supporting_items": good.replace("Supporting items: 1, 2", "Supporting items: 0, 999"),
        "missing_answer": good.replace(f"<answer>{answer}</answer>", answer),
        "wrong_answer": good.replace(answer, "<a_999><b_0><c_0>"),
        "target_leak": good.replace("restocking the desk", f"buying the {title}"),
    }
    assert set(cases) == set(REJECT_REASONS)
    for reason, text in cases.items():
        assert parse_chain(text, ex, dataset, index) == reason, reason
    leak_by_index = good.replace("restocking the desk", f"buying {answer}")
    assert parse_chain(leak_by_index, ex, dataset, index) == "target_leak"
    markdown = good.replace("Step 1:", "**Step 1: Evidence**\n").replace("Step 2:", "### Step 2.")
    assert parse_chain(markdown, ex, dataset, index).steps[0] == "Evidence Behavioural evidence - buys office supplies often."
    in_text = good.replace("buys office supplies", "bought the Step 2 kids desk and office supplies")
    assert parse_chain(in_text, ex, dataset, index).steps[0].startswith("Behavioural evidence - bought the Step 2")
    scratchpad = "<think>Step 1: draft, mentions " + title + "\nStep 2: x\nStep 3: y</think>\n" + good
    assert parse_chain(scratchpad, ex, dataset, index).steps == chain.steps
    repeat = type(ex)(ex.user, (ex.target, *ex.history), ex.target)  # a re-purchase may be named
    assert not isinstance(parse_chain(cases["target_leak"], repeat, dataset, index), str)


def test_target_format_and_denoised_history(synthetic):
    dataset, index = synthetic
    ex = next(e for e in reasoning_examples(dataset) if len(e.history) >= 3)
    chain = parse_chain(GOOD.format(answer=index.string(ex.target)).replace("1, 2", "3, 1"), ex, dataset, index)
    out = format_target(chain, ex, index)
    assert re.fullmatch(r"<think>\nStep 1: .+\nStep 2: .+\nStep 3: .+\n</think>\nDenoised history: .+\n<answer>.+</answer>", out)
    denoised = out.split("Denoised history: ")[1].split("\n")[0]
    assert denoised == f"{index.string(ex.history[0])}, {index.string(ex.history[2])}"  # chronological
    assert "".join(parse_index_tokens(out.split("<answer>")[1])) == index.string(ex.target)


def test_template_teacher_passes_validation(synthetic):
    dataset, index = synthetic
    examples = reasoning_examples(dataset)
    result = build_reasoning(dataset, index, examples, "template")
    assert len(result.rows) == len(examples) and not result.rejected
    for row, ex in zip(result.rows, examples, strict=True):
        assert row["task"] == "reason" and row["target_item"] == ex.target
        assert row["output"].endswith(f"<answer>{index.string(ex.target)}</answer>")
        assert dataset.items[ex.target]["title"] not in row["output"]


def _client(url, tmp_path, **kw):
    return TeacherClient(TeacherConfig(base_url=url, model="fake", cache_dir=str(tmp_path / "cache"),
                                       backoff=0.0, **kw))


def test_llm_teacher_against_local_server(synthetic, tmp_path):
    dataset, index = synthetic
    examples = reasoning_examples(dataset)
    expected = Counter(behaviour(dataset.items[e.target]["title"]) for e in examples)
    with FakeOpenAIServer(reply=fake_teacher_reply) as server:
        result = build_reasoning(dataset, index, examples, "llm", _client(server.url, tmp_path).complete_many)
    assert server.count == len({f"{e.user}:{e.target}" for e in examples})
    assert len(result.rows) == expected.pop("good")
    assert dict(result.rejected) == dict(expected)
    assert all(r["output"].startswith("<think>\nStep 1: Behavioural evidence") for r in result.rows)
    assert {e["reason"] for e in result.rejected_examples} == set(expected)


def test_interrupted_run_resumes_without_repeating_requests(synthetic, tmp_path):
    dataset, index = synthetic
    examples = reasoning_examples(dataset)
    with FakeOpenAIServer(reply=fake_teacher_reply, fail=lambda n: 503 if n > 6 else None) as first:
        with pytest.raises(TeacherError, match="re-run to resume"):
            build_reasoning(dataset, index, examples, "llm",
                            _client(first.url, tmp_path, max_retries=0, max_concurrency=2).complete_many)
    answered_first = [json.dumps(b["messages"], sort_keys=True) for b in first.received]
    assert 0 < len(answered_first) < len(examples)
    with FakeOpenAIServer(reply=fake_teacher_reply) as second:
        resumed = build_reasoning(dataset, index, examples, "llm", _client(second.url, tmp_path).complete_many)
    answered_second = [json.dumps(b["messages"], sort_keys=True) for b in second.received]
    assert second.count == len(examples) - len(answered_first)
    assert not set(answered_first) & set(answered_second)
    with FakeOpenAIServer(reply=fake_teacher_reply) as third:
        again = build_reasoning(dataset, index, examples, "llm", _client(third.url, tmp_path).complete_many)
    assert third.count == 0 and again.rows == resumed.rows


def test_llm_mode_needs_a_client(synthetic):
    dataset, index = synthetic
    with pytest.raises(ValueError, match="teacher"):
        build_reasoning(dataset, index, reasoning_examples(dataset), "llm")
    with pytest.raises(ValueError, match="unknown teacher mode"):
        build_reasoning(dataset, index, [], "gpt")
