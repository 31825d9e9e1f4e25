"""Residual-sensitive verifiable reward (GREAM paper, eq. 13-14).

A generated item index earns ``r = (l / H) ** beta``: ``l`` is the length of the longest common
prefix of the generated and the target index (level by level), ``H`` the target's number of
levels. Coarse levels right but fine levels wrong still earn partial credit, so sparse exact hits
are not the only learning signal. ``exact`` is 1 only when the whole index matches.

Indexes may differ in length (``collision.mode: colliding`` gives items 3 or 4 levels), so ``l``
is counted over the shorter of the two:

* a shorter response (``<a_1><b_2><c_3>`` against ``<a_1><b_2><c_3><d_4>``) earns ``(3/4)**beta``,
  as eq. 13-14 say;
* an over-long response (``G`` levels, ``G > H``) is scored against its own length,
  ``r = (l / G) ** beta``: the full target plus one extra token earns ``(H / (H+1)) ** beta``, not
  1 and not ``exact`` (still more than a sibling item wrong at the last level, ``((H-1)/H) **
  beta``: every target level is right). With this one rule, ``r = (l / max(H, G)) ** beta``, only the exact index
  earns 1 and appending tokens to a response never raises its reward. (Eq. 13-14 assume one index
  length and leave this case open.)

Modes:

* ``direct``: the response is the index tokens alone (``<a_1><b_2><c_3><d_4>``); whitespace
  between or around tokens is tolerated, anything else is a format error.
* ``reason``: ``<think>...</think>``, optional free text (the SFT data's ``Denoised history:``
  line), then ``<answer>...</answer>`` holding the index as in ``direct``, then nothing. The
  opening ``<think>`` may be missing (chat templates that put it in the generation prompt). Any
  other shape (missing or repeated tags, text after the answer) is a format error.

A format error (empty, garbled, a broken tag structure) scores 0 and never raises. Only a
malformed *ground truth* (a data bug) raises.

Parsing takes linear time: a few C-speed passes of regexes that match fixed-shape tags and
tokens, never backtracking across the text. A rollout cut at the maximum response length, with
hundreds of ``<think>``/``<answer>`` pairs and no final ``</answer>``, scores in about a
millisecond at 64 KB (``scripts/bench/reward_bench.py``); the single ``.*?`` regex used before
took 36-42 s on 26 KB of such text, inside verl's reward workers.

Pure Python: no verl import here except in the fallback of :func:`compute_score` for data sources
that are not GREAM's.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from itertools import islice

from gream_verl.index.tokens import TOKEN_RE

MODES = ("direct", "reason")
DATA_SOURCE_PREFIX = "gream/"
DEFAULT_BETA = 0.5

_TAG_RE = re.compile(r"</?(?:think|answer)>")
_REASON_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
_INDEX_TOKEN_RE = re.compile(r"<[a-z]_\d+>")  # TOKEN_RE without groups: findall gives whole tokens


@dataclass(frozen=True)
class IndexReward:
    """What the reward reports per response (verl logs every key as ``reward_extra_info``)."""

    score: float  # (prefix_len / max(H, G)) ** beta, 0 on a format error
    exact: int  # 1 if the whole index matches the target (same tokens, same length)
    prefix_len: int  # levels matched from the first one on (the longest common prefix)
    format_ok: int  # 1 if the response had the expected shape

    def as_dict(self) -> dict:
        return asdict(self)


ZERO = IndexReward(score=0.0, exact=0, prefix_len=0, format_ok=0)


def parse_target(ground_truth: str) -> list[str]:
    """The target's index tokens; a target without any is a data bug and raises."""
    tokens = [m.group(0) for m in TOKEN_RE.finditer(ground_truth or "")]
    if not tokens or "".join(tokens) != re.sub(r"\s+", "", ground_truth):
        raise ValueError(f"ground truth {ground_truth!r} is not an index string like '<a_1><b_2><c_3>'")
    return tokens


def _is_blank(text: str) -> bool:
    """Empty or whitespace only (``str.isspace``: the same characters as regex ``\\s``)."""
    return not text or text.isspace()


def _reason_answer(response: str) -> str | None:
    """The text inside ``<answer>...</answer>`` of a well-formed reasoning response, else None.

    Well-formed: the tags, in order, are exactly ``<think> </think> <answer> </answer>`` (the
    first may be missing) with only whitespace before ``<think>`` and after ``</answer>``.
    """
    tags = []
    for match in _TAG_RE.finditer(response):
        if len(tags) == len(_REASON_TAGS):
            return None  # a fifth tag: repeated think/answer blocks
        tags.append(match)
    names = [m.group(0) for m in tags]
    if names == _REASON_TAGS:
        if not _is_blank(response[: tags[0].start()]):
            return None
    elif names != _REASON_TAGS[1:]:
        return None
    if not _is_blank(response[tags[-1].end() :]):
        return None
    return response[tags[-2].end() : tags[-1].start()]


def _is_index_text(text: str) -> bool:
    """True if ``text`` holds at least one index token and nothing else but whitespace."""
    return "<" in text and _is_blank(_INDEX_TOKEN_RE.sub("", text))


def _answer_text(response, mode: str) -> str | None:
    """The part of a well-formed response that holds the index, or None on a format error."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if not isinstance(response, str):
        return None
    if mode == "reason":
        response = _reason_answer(response)
    return response if response is not None and _is_index_text(response) else None


def extract_index(response: str, mode: str = "direct") -> list[str] | None:
    """Index tokens of a well-formed response, or None if the response breaks the format.
    Linear in the response length (see the module docstring)."""
    text = _answer_text(response, mode)
    return None if text is None else _INDEX_TOKEN_RE.findall(text)


def common_prefix_len(generated: list[str], target: list[str]) -> int:
    n = 0
    for g, t in zip(generated, target, strict=False):
        if g != t:
            break
        n += 1
    return n


def index_reward(response: str, ground_truth: str, mode: str = "direct", beta: float = DEFAULT_BETA) -> IndexReward:
    """Score one response against the target index string (see the module docstring)."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    target = parse_target(ground_truth)
    text = _answer_text(response, mode)
    if text is None:
        return ZERO
    levels = text.count("<")  # G: one "<" per token, nothing else is left in a well-formed answer
    head = [m.group(0) for m in islice(_INDEX_TOKEN_RE.finditer(text), len(target))]  # a 64 KB answer holds 13,000
    prefix = common_prefix_len(head, target)
    exact = prefix == len(target) == levels
    score = float((prefix / max(len(target), levels)) ** beta)  # eq. 13-14; over-long: see the docstring
    return IndexReward(score=score, exact=int(exact), prefix_len=prefix, format_ok=1)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, beta: float = DEFAULT_BETA, **kwargs) -> dict:
    """verl's ``reward.custom_reward_function`` signature.

    GREAM rows (``data_source`` starting with ``gream/``) get the index reward, mode from
    ``extra_info["mode"]`` (default ``direct``); ``beta`` can be set with
    ``reward.custom_reward_function.reward_kwargs.beta``. Other data sources go to verl's
    ``default_compute_score`` so a mixed dataset keeps working.
    """
    if not str(data_source).startswith(DATA_SOURCE_PREFIX):
        from verl.utils.reward_score import default_compute_score

        return default_compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)
    mode = (extra_info or {}).get("mode", "direct") if isinstance(extra_info, dict) else "direct"
    return index_reward(solution_str, ground_truth, mode=mode, beta=beta).as_dict()
