"""Residual-sensitive reward: hand-computed values of (l/H)^beta and the format rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gream_verl.srpo.reward import compute_score, extract_index, index_reward

TARGET = "<a_1><b_2><c_3><d_4>"


@pytest.mark.parametrize(
    "response, prefix, score",
    [
        ("<a_1><b_2><c_3><d_4>", 4, 1.0),
        ("<a_1><b_2><c_3><d_9>", 3, math.sqrt(3 / 4)),
        ("<a_1><b_2><c_9><d_4>", 2, math.sqrt(2 / 4)),
        ("<a_1><b_9><c_3><d_4>", 1, math.sqrt(1 / 4)),
        ("<a_7><b_2><c_3><d_4>", 0, 0.0),
        ("  <a_1> <b_2>\n<c_3>\t<d_4>  ", 4, 1.0),  # whitespace tolerated
    ],
)
def test_direct_scores(response, prefix, score):
    r = index_reward(response, TARGET)
    assert r.prefix_len == prefix
    assert r.score == pytest.approx(score, abs=1e-12)
    assert r.exact == int(prefix == 4)
    assert r.format_ok == 1


def test_beta_changes_the_curve():
    assert index_reward("<a_1><b_2><c_9><d_9>", TARGET, beta=1.0).score == pytest.approx(0.5)
    assert index_reward("<a_1><b_2><c_9><d_9>", TARGET, beta=2.0).score == pytest.approx(0.25)
    with pytest.raises(ValueError):
        index_reward(TARGET, TARGET, beta=0)


@pytest.mark.parametrize(
    "response",
    [
        "",
        "   ",
        "<a_1><b_2><c_3>",  # truncated
        "<a_1><b_2><c_3><d_4><e_5>",  # over-long
        "<a_1><b_2><c_3><d_4> and more text",
        "the item is <a_1><b_2><c_3><d_4>",
        "<a_1><b_2><c_3><d_",
        None,
        "<think>x</think><answer><a_1><b_2><c_3><d_4></answer>",  # reasoning output in direct mode
    ],
)
def test_direct_garbage_scores_zero(response):
    r = index_reward(response, TARGET)
    assert r.score == 0.0 and r.exact == 0


def test_reasoning_mode():
    good = "<think>\nThe user buys pens.\n</think>\n<answer><a_1><b_2><c_3><d_9></answer>"
    r = index_reward(good, TARGET, mode="reason")
    assert (r.prefix_len, r.format_ok) == (3, 1) and r.score == pytest.approx(math.sqrt(0.75))
    sft_shape = "<think>\nStep 1: pens\n</think>\nDenoised history: <a_1><b_2><c_3><d_5>\n<answer>" + TARGET + "</answer>"
    assert index_reward(sft_shape, TARGET, mode="reason").exact == 1
    # opening <think> already in the generation prompt
    assert index_reward("reasoning</think><answer>" + TARGET + "</answer>", TARGET, mode="reason").exact == 1
    for bad in [
        TARGET,  # no think/answer
        "<think>x</think>" + TARGET,  # no answer tags
        "<answer>" + TARGET + "</answer>",  # no think
        "<think>x</think><answer>" + TARGET + "</answer> trailing",
        "<think>x</think><answer>" + TARGET,  # truncated
        "<think>x</think><answer>" + TARGET + "</answer><answer>" + TARGET + "</answer>",
        "<think><think>x</think><answer>" + TARGET + "</answer>",
        "<think>x</think><answer>item: " + TARGET + "</answer>",
        "<think>x</think><think>y</think><answer>" + TARGET + "</answer>",
    ]:
        r = index_reward(bad, TARGET, mode="reason")
        assert r.score == 0.0 and r.format_ok == 0, bad


def test_bad_ground_truth_and_mode_raise():
    with pytest.raises(ValueError, match="ground truth"):
        index_reward(TARGET, "")
    with pytest.raises(ValueError, match="ground truth"):
        index_reward(TARGET, "item 42")
    with pytest.raises(ValueError, match="mode"):
        extract_index(TARGET, "chat")


def test_compute_score_verl_signature():
    out = compute_score("gream/Office", "<a_1><b_2><c_3><d_4>", TARGET, {"mode": "direct"})
    assert out == {"score": 1.0, "exact": 1, "prefix_len": 4, "format_ok": 1}
    out = compute_score("gream/Office", "<think>a</think><answer><a_1><b_5><c_3><d_4></answer>", TARGET, {"mode": "reason"})
    assert out["prefix_len"] == 1 and out["score"] == pytest.approx(0.5)
    assert compute_score("gream/Office", "<a_1><b_2><c_3><d_4>", TARGET, None, beta=1.0)["score"] == 1.0


@given(st.text(max_size=200))
def test_any_text_never_raises(text):
    for mode in ("direct", "reason"):
        r = index_reward(text, TARGET, mode=mode)
        assert 0.0 <= r.score <= 1.0


@given(st.lists(st.integers(0, 3), min_size=4, max_size=4), st.floats(0.1, 3.0))
def test_score_is_prefix_power(codes, beta):
    target = [1, 2, 3, 0]
    response = "".join(f"<{chr(97 + i)}_{c}>" for i, c in enumerate(codes))
    truth = "".join(f"<{chr(97 + i)}_{c}>" for i, c in enumerate(target))
    prefix = next((i for i, (a, b) in enumerate(zip(codes, target, strict=True)) if a != b), 4)
    assert index_reward(response, truth, beta=beta).score == pytest.approx((prefix / 4) ** beta)


def test_other_data_sources_use_verls_default_scorer():
    pytest.importorskip("verl")
    assert compute_score("openai/gsm8k", "so the answer is #### 42", "42") == 1.0
    assert compute_score("openai/gsm8k", "#### 41", "42") == 0.0
