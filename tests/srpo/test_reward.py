"""Residual-sensitive reward: hand-computed values of (l/H)^beta, the format rules, and the parser
against the regex it replaced (which hung on long reasoning output)."""

from __future__ import annotations

import math
import os
import re
import signal
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
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
    with pytest.raises(ValueError, match="beta must be > 0"):
        index_reward(TARGET, TARGET, beta=0)


@pytest.mark.parametrize(
    "response",
    [
        "",
        "   ",
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


@pytest.mark.parametrize(
    "response, target, prefix, score, exact",
    [
        # eq. 13-14 with H = the target's levels: a 4-level response against a 5-level target
        ("<a_1><b_2><c_3><d_4>", "<a_1><b_2><c_3><d_4><e_0>", 4, math.sqrt(4 / 5), 0),
        ("<a_1><b_2><c_3>", TARGET, 3, math.sqrt(3 / 4), 0),  # truncated
        ("<a_1><b_9><c_3>", TARGET, 1, math.sqrt(1 / 4), 0),
        ("<a_1><b_2><c_3><d_4><e_0>", "<a_1><b_2><c_3><d_4><e_0>", 5, 1.0, 1),
        # over-long: the whole target plus extra tokens is scored against the response's length
        ("<a_1><b_2><c_3><d_4><e_5>", TARGET, 4, math.sqrt(4 / 5), 0),
        ("<a_1><b_2><c_3><d_4>", "<a_1><b_2><c_3>", 3, math.sqrt(3 / 4), 0),
        ("<a_1><b_2><c_3><d_4><e_5><f_6>", TARGET, 4, math.sqrt(4 / 6), 0),
        ("<a_1><b_9><c_3><d_4><e_5>", TARGET, 1, math.sqrt(1 / 5), 0),
    ],
)
def test_index_lengths_differ(response, target, prefix, score, exact):
    r = index_reward(response, target)
    assert (r.prefix_len, r.exact, r.format_ok) == (prefix, exact, 1)
    assert r.score == pytest.approx(score, abs=1e-12)
    out = compute_score("gream/Office", "<think>x</think><answer>" + response + "</answer>", target, {"mode": "reason"})
    assert out["prefix_len"] == prefix and out["score"] == pytest.approx(score, abs=1e-12)


index_lists = st.lists(st.integers(0, 2), min_size=1, max_size=6)


@given(index_lists, index_lists, st.floats(0.1, 3.0))
def test_score_is_the_common_prefix_over_the_longer_index(generated, target, beta):
    def tokens(codes):
        return [f"<{chr(97 + i)}_{c}>" for i, c in enumerate(codes)]

    gen, tgt = tokens(generated), tokens(target)
    prefix = len(os.path.commonprefix([gen, tgt]))  # os.path.commonprefix works on any sequences
    r = index_reward("".join(gen), "".join(tgt), beta=beta)
    assert r.prefix_len == prefix
    assert r.exact == int(gen == tgt)
    assert r.score == pytest.approx((prefix / max(len(gen), len(tgt))) ** beta)
    assert (r.score == 1.0) == (gen == tgt)  # only the exact index earns the full reward
    longer = index_reward("".join(gen) + "<z_0>", "".join(tgt), beta=beta)
    assert longer.score <= r.score  # appending a token never pays


# --- the parser against the regex it replaced -------------------------------------------------

_OLD_DIRECT_RE = re.compile(r"\s*(?:<[a-z]_\d+>\s*)+")
_OLD_REASON_RE = re.compile(
    r"\s*(?:<think>)?(?P<think>.*?)</think>(?P<between>.*?)<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL
)
_OLD_TAG_RE = re.compile(r"</?(?:think|answer)>")


def old_extract_index(response, mode):
    """The backtracking implementation before the fix: the reference on short strings only."""
    if mode == "reason":
        match = _OLD_REASON_RE.fullmatch(response)
        if match is None or any(_OLD_TAG_RE.search(match.group(g)) for g in ("think", "between", "answer")):
            return None
        response = match.group("answer")
    if _OLD_DIRECT_RE.fullmatch(response) is None:
        return None
    return re.findall(r"<[a-z]_\d+>", response)


PIECES = ["<think>", "</think>", "<answer>", "</answer>", "<a_1>", "<b_2>", "<c_3>", "<d_4>", "<", ">", "a_1",
          "<a_", "_", "7", "/", "think", "answer", " ", "\n", "\t", "\u2003", "x", "Denoised history: "]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join), st.sampled_from(["direct", "reason"]))
def test_parser_matches_the_old_regex(text, mode):
    tokens = old_extract_index(text, mode)
    assert extract_index(text, mode) == tokens
    r = index_reward(text, "<a_1><b_2><c_3>", mode=mode)
    assert r.format_ok == int(tokens is not None)
    if tokens is not None:
        assert r.prefix_len == len(os.path.commonprefix([tokens, ["<a_1>", "<b_2>", "<c_3>"]]))
        assert r.score == pytest.approx((r.prefix_len / max(3, len(tokens))) ** 0.5)


@contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError after ``seconds`` (SIGALRM; the regex engine checks signals), so a
    regression fails instead of hanging the suite."""

    def expire(signum, frame):
        raise TimeoutError(f"scoring took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def hostile_responses(size: int = 64 * 1024) -> dict[str, str]:
    """Rollouts cut at the maximum response length: long loops of tags without the final one."""
    unit = "<think>hmm</think>\n<answer><a_1><b_2><c_3><d_4></answer>\n"
    return {
        "repeated blocks, cut inside <think>": (unit * (size // len(unit)) + "<think>hm")[-size:],
        "</think><answer> repeated": ("</think><answer>" * size)[:size],
        "<think> repeated": ("<think>" * size)[:size],
        "index tokens then garbage": ("<a_1>" * size)[: size - 1] + "x",
        "digits without a closing >": "<a_" + "1" * (size - 3),
    }


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
@pytest.mark.parametrize("name", list(hostile_responses()))
def test_long_looping_output_scores_at_once(name):
    # the old regex took 1.5 s at 11 KB, 36 s at 26 KB and minutes at 64 KB; the parser takes ~1 ms
    response = hostile_responses()[name]
    with time_limit(2.0):
        for mode in ("direct", "reason"):
            r = index_reward(response, TARGET, mode=mode)
            assert (r.score, r.format_ok) == (0.0, 0)
    with time_limit(2.0):  # 13,000 index tokens: a valid, over-long direct answer
        assert index_reward("<a_1>" * 13_000, "<a_1><b_2>").prefix_len == 1
