"""Residual-sensitive verifiable reward (GREAM paper, eq. 13-14).

A generated item index earns ``r = (l / H) ** beta``: ``l`` is the length of the longest common
prefix of the generated and the target index (level by level), ``H`` the target's number of
levels. Coarse levels right but fine levels wrong still earn partial credit, so sparse exact hits
are not the only learning signal.

Modes:

* ``direct``: the response is the index tokens alone (``<a_1><b_2><c_3><d_4>``); whitespace
  between or around tokens is tolerated, anything else is a format error.
* ``reason``: ``<think>...</think>``, optional free text (the SFT data's ``Denoised history:``
  line), then ``<answer>...</answer>`` holding the index as in ``direct``, then nothing. The
  opening ``<think>`` may be missing (chat templates that put it in the generation prompt). Any
  other shape (missing or repeated tags, text after the answer) is a format error.

A format error, an empty, truncated (fewer levels than the target), over-long (more levels) or
garbled response scores 0 and never raises. Only a malformed *ground truth* (a data bug) raises.

Pure Python: no verl import here except in the fallback of :func:`compute_score` for data sources
that are not GREAM's.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from gream_verl.index.tokens import TOKEN_RE

MODES = ("direct", "reason")
DATA_SOURCE_PREFIX = "gream/"
DEFAULT_BETA = 0.5

_DIRECT_RE = re.compile(r"\s*(?:<[a-z]_\d+>\s*)+")
_REASON_RE = re.compile(
    r"\s*(?:<think>)?(?P<think>.*?)</think>(?P<between>.*?)<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL
)
_TAG_RE = re.compile(r"</?(?:think|answer)>")


@dataclass(frozen=True)
class IndexReward:
    """What the reward reports per response (verl logs every key as ``reward_extra_info``)."""

    score: float  # (prefix_len / H) ** beta, 0 on a format error
    exact: int  # 1 if the whole index matches the target
    prefix_len: int  # levels matched from the first one on
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


def extract_index(response: str, mode: str = "direct") -> list[str] | None:
    """Index tokens of a well-formed response, or None if the response breaks the format."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if not isinstance(response, str):
        return None
    if mode == "reason":
        match = _REASON_RE.fullmatch(response)
        if match is None or any(_TAG_RE.search(match.group(g)) for g in ("think", "between", "answer")):
            return None
        response = match.group("answer")
    if _DIRECT_RE.fullmatch(response) is None:
        return None
    return [m.group(0) for m in TOKEN_RE.finditer(response)]


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
    generated = extract_index(response, mode)
    if generated is None:
        return ZERO
    if len(generated) != len(target):  # truncated or over-long: not an item index at all
        return IndexReward(score=0.0, exact=0, prefix_len=0, format_ok=1)
    prefix = common_prefix_len(generated, target)
    score = float((prefix / len(target)) ** beta)
    return IndexReward(score=score, exact=int(prefix == len(target)), prefix_len=prefix, format_ok=1)


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
