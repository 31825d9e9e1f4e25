"""D_reason: reverse-reasoning chain-of-thought samples (paper sec. 4.3 and appendix C).

A teacher sees a user's history (titles) *and* the item actually bought next, and explains the
choice in three steps without naming that item. The student is trained on::

    <think>
    Step 1: <behavioural evidence>
    Step 2: <latent preferences>
    Step 3: <intent and goal>
    </think>
    Denoised history: <index>, <index>, ...
    <answer><index of the target></answer>

**Denoised history** = the history items the teacher names as supporting the prediction (its
``Supporting items:`` line, 1-based positions), kept in chronological order and written as index
strings; items that do not explain the next purchase (noise) are dropped.

Teacher output is validated before it is kept; a rejected sample is counted under its reason
(see ``REJECT_REASONS``) and dropped. The ``template`` teacher is a **structural stand-in**, not
reasoning: it fills the steps from item metadata (categories, brands, recent titles) so the
pipeline runs offline; use ``llm`` for real data.

One sample per user: the last position of the training part (``s[:-2]``), so a valid or test item
is never a target nor in a history.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gream_verl.data.dataset import RecDataset
from gream_verl.data.split import Example, train_items
from gream_verl.index.tokens import ItemIndex, parse_index_tokens
from gream_verl.tasks import prompts

TEACHER_MODES = ("template", "llm")
REJECT_REASONS = (
    "empty",                     # no text at all
    "missing_steps",             # Step 1, 2 and 3 not all present (in order, non-empty)
    "missing_supporting_items",  # no "Supporting items:" line
    "bad_supporting_items",      # no valid 1-based history position on that line
    "missing_answer",            # no <answer>...</answer>
    "wrong_answer",              # the answer is not the target's index
    "target_leak",               # the target's title or index appears in Steps 1-3
)
MIN_LEAK_TITLE_CHARS = 10  # shorter titles ("Pens") are too generic to call a mention a leak
# The template teacher's chain must fit the budgets it is trained and sampled under: LLaMA-Factory's
# cutoff_len (which keeps the head of a long response and cuts the </think> ... <answer> tail) and
# RL's response length in reasoning mode (256 tokens in the CPU recipe). Quoting three whole titles
# and every supporting item made the median chain 326 tokens with the quickstart's tokenizer.
TEMPLATE_QUOTE_CHARS = 32    # the latest item's title is quoted up to this many characters
TEMPLATE_MAX_SUPPORTING = 4  # the most recent supporting items are kept (and rewritten as the denoised history)

# A step header starts a line ("Step 1:", "**Step 2.**", "### Step 3 -"), so a title that
# happens to contain "step 2" inside a step's text is not taken for a header.
_STEP = re.compile(r"^[\s#*>-]*step\s*([123])\b\**\s*[:.)\-–—]?\**", re.IGNORECASE | re.MULTILINE)
_SUPPORT = re.compile(r"supporting\s+items?\s*[:\-]\s*([^\n<]*)", re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_WS = re.compile(r"\s+")
_TEACHER_THINK = re.compile(r"^\s*<think>.*?</think>", re.IGNORECASE | re.DOTALL)  # R1-style teachers


@dataclass(frozen=True)
class Chain:
    """A validated teacher chain: three step texts and the supporting history positions (0-based)."""

    steps: tuple[str, str, str]
    supporting: tuple[int, ...]


@dataclass
class ReasonResult:
    rows: list[dict]
    requested: int = 0
    rejected: Counter = field(default_factory=Counter)
    rejected_examples: list[dict] = field(default_factory=list)


def reasoning_examples(dataset: RecDataset, max_history: int = 20, max_samples: int | None = None,
                       seed: int = 42) -> list[Example]:
    """One example per user whose training part has at least two items: its last position."""
    out = []
    for user, part in train_items(dataset.sequences).items():
        if len(part) >= 2:
            history = part[:-1][-max_history:] if max_history > 0 else part[:-1]
            out.append(Example(user, tuple(history), part[-1]))
    if max_samples is not None and len(out) > max_samples:
        rng = np.random.default_rng(prompts.family_seed(seed, "reason-users"))
        out = [out[k] for k in np.sort(rng.choice(len(out), size=max_samples, replace=False))]
    return out


def history_lines(history: tuple[str, ...] | list[str], dataset: RecDataset, index: ItemIndex | None) -> str:
    """``1. <a_1><b_2> Title`` per line (without ``index``: titles only)."""
    if index is None:
        return prompts.format_titles([dataset.title(i) for i in history])
    return "\n".join(f"{k}. {index.string(i)} {dataset.title(i)}" for k, i in enumerate(history, 1))


def reason_prompt(example: Example, dataset: RecDataset, index: ItemIndex) -> tuple[str, str]:
    """The student's (instruction, input) in reasoning mode."""
    template = prompts.templates("reason")[0]
    return template.render(history=history_lines(example.history, dataset, index))


def teacher_messages(example: Example, dataset: RecDataset, index: ItemIndex) -> list[dict]:
    """Reverse-reasoning request: the teacher knows the answer and explains it."""
    target = index.string(example.target)
    return [
        {"role": "system", "content": "You are an expert analyst of user behaviour for recommender systems."},
        {"role": "user", "content": (
            f"A user bought these items, oldest first:\n{history_lines(example.history, dataset, None)}\n\n"
            f"The item the user actually bought next is \"{dataset.title(example.target)}\" (index {target}).\n\n"
            "Reason as if you had not seen that next item, and explain why this user would choose it. "
            "Answer in exactly this format:\n"
            "Step 1: Behavioural evidence - what the history shows (recurring categories, brands, "
            "complementary purchases, recent focus).\n"
            "Step 2: Latent preferences - the preferences these behaviours reveal.\n"
            "Step 3: Intent and goal - what the user is trying to achieve with the next purchase.\n"
            "Supporting items: the numbers of the history items that support the prediction, comma-separated.\n"
            f"<answer>{target}</answer>\n\n"
            "Do not mention the next item's title or index in Steps 1-3."
        )},
    ]


def _leaf_category(meta: dict[str, str]) -> str:
    cats = meta.get("categories", "")
    return cats.split(",")[-1].strip() if cats else ""


def _top(counter: Counter, k: int = 2) -> str:
    return ", ".join(f"{name} ({n})" for name, n in counter.most_common(k)) or "none recorded"


def template_teacher(example: Example, dataset: RecDataset, index: ItemIndex) -> str:
    """Structural stand-in for a teacher LLM: steps filled from item metadata, same format, kept
    short (see ``TEMPLATE_QUOTE_CHARS`` / ``TEMPLATE_MAX_SUPPORTING``)."""
    history = list(example.history)
    metas = [dataset.items.get(i, {}) for i in history]
    cats = Counter(c for c in (_leaf_category(m) for m in metas) if c)
    brands = Counter(b for b in (m.get("brand", "") for m in metas) if b)
    target_meta = dataset.items.get(example.target, {})
    target_cat, target_brand = _leaf_category(target_meta), target_meta.get("brand", "")
    latest = dataset.title(history[-1])
    latest = latest if len(latest) <= TEMPLATE_QUOTE_CHARS else latest[: TEMPLATE_QUOTE_CHARS].rstrip() + "..."
    supporting = [k for k, m in enumerate(metas, 1)
                  if (target_cat and _leaf_category(m) == target_cat) or (target_brand and m.get("brand") == target_brand)]
    if not supporting:
        supporting = list(range(max(1, len(history) - 2), len(history) + 1))
    supporting = supporting[-TEMPLATE_MAX_SUPPORTING:]
    goal = f"a {target_cat} product" if target_cat else "a product related to recent purchases"
    if target_brand and target_brand in brands:
        goal += f", likely {target_brand} again"
    top_cat = cats.most_common(1)[0][0] if cats else "no single category"
    loyal = bool(brands) and brands.most_common(1)[0][1] > 1
    positions = ", ".join(map(str, supporting))
    return (
        f"Step 1: Behavioural evidence - {len(history)} purchases, latest \"{latest}\". "
        f"Categories: {_top(cats)}. Brands: {_top(brands)}.\n"
        f"Step 2: Latent preferences - returns to {top_cat}; "
        f"{'sticks to familiar brands' if loyal else 'tries different brands' if brands else 'no brand signal'}.\n"
        f"Step 3: Intent and goal - {goal}, like item{'s' if len(supporting) > 1 else ''} {positions}.\n"
        f"Supporting items: {positions}\n"
        f"<answer>{index.string(example.target)}</answer>"
    )


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def parse_chain(raw: str, example: Example, dataset: RecDataset, index: ItemIndex) -> Chain | str:
    """Validate one teacher output; the :class:`Chain`, or the reject reason."""
    if not isinstance(raw, str) or not raw.strip():
        return "empty"
    raw = _TEACHER_THINK.sub("", raw)  # a reasoning teacher's own scratchpad is not the chain
    starts: dict[int, re.Match] = {}
    for m in _STEP.finditer(raw):
        starts.setdefault(int(m.group(1)), m)
    if set(starts) != {1, 2, 3} or not starts[1].start() < starts[2].start() < starts[3].start():
        return "missing_steps"
    support = _SUPPORT.search(raw, starts[3].end())
    answer = _ANSWER.search(raw, starts[3].end())
    ends = [m.start() for m in (support, answer) if m is not None]
    step3_end = min(ends) if ends else len(raw)
    bounds = [(starts[1].end(), starts[2].start()), (starts[2].end(), starts[3].start()), (starts[3].end(), step3_end)]
    steps = tuple(_WS.sub(" ", raw[a:b].replace("**", "")).strip() for a, b in bounds)
    if not all(steps):
        return "missing_steps"
    if support is None:
        return "missing_supporting_items"
    positions = sorted({int(n) for n in re.findall(r"\d+", support.group(1)) if 1 <= int(n) <= len(example.history)})
    if not positions:
        return "bad_supporting_items"
    if answer is None:
        return "missing_answer"
    target = index.string(example.target)
    if "".join(parse_index_tokens(answer.group(1))) != target:
        return "wrong_answer"
    reasoning = _norm(" ".join(steps))
    title = _norm(dataset.items.get(example.target, {}).get("title", ""))
    history_titles = {_norm(dataset.title(i)) for i in example.history}
    if target in " ".join(steps) or (
        len(title) >= MIN_LEAK_TITLE_CHARS and title not in history_titles and title in reasoning
    ):
        return "target_leak"
    return Chain(steps=steps, supporting=tuple(p - 1 for p in positions))  # type: ignore[arg-type]


def format_target(chain: Chain, example: Example, index: ItemIndex) -> str:
    """The student's response (see the module docstring)."""
    denoised = ", ".join(index.string(example.history[p]) for p in chain.supporting)
    s1, s2, s3 = chain.steps
    return (f"<think>\nStep 1: {s1}\nStep 2: {s2}\nStep 3: {s3}\n</think>\n"
            f"Denoised history: {denoised}\n<answer>{index.string(example.target)}</answer>")


def build_reasoning(dataset: RecDataset, index: ItemIndex, examples: list[Example], mode: str = "template",
                    complete_many: Callable[..., dict[str, str]] | None = None,
                    keep_rejected: int = 20) -> ReasonResult:
    """Ask the teacher (``template`` stand-in, or ``complete_many`` of a TeacherClient for
    ``llm``), validate, and turn accepted chains into alpaca rows of the ``reason`` task."""
    if mode not in TEACHER_MODES:
        raise ValueError(f"unknown teacher mode {mode!r}; expected one of {TEACHER_MODES}")
    keys = [f"{e.user}:{e.target}" for e in examples]
    if mode == "template":
        raw = {k: template_teacher(e, dataset, index) for k, e in zip(keys, examples, strict=True)}
    else:
        if complete_many is None:
            raise ValueError("teacher mode 'llm' needs a teacher client (set teacher.base_url and teacher.model)")
        requests = {k: teacher_messages(e, dataset, index) for k, e in zip(keys, examples, strict=True)}
        raw = complete_many(requests, desc="reasoning teacher") if requests else {}
    result = ReasonResult(rows=[], requested=len(examples))
    template_id = prompts.templates("reason")[0].id
    for key, example in zip(keys, examples, strict=True):
        chain = parse_chain(raw.get(key, ""), example, dataset, index)
        if isinstance(chain, str):
            result.rejected[chain] += 1
            if len(result.rejected_examples) < keep_rejected:
                result.rejected_examples.append({"key": key, "reason": chain, "output": raw.get(key, "")})
            continue
        instruction, input_ = reason_prompt(example, dataset, index)
        result.rows.append({"instruction": instruction, "input": input_, "output": format_target(chain, example, index),
                            "task": "reason", "template": template_id, "user": example.user,
                            "target_item": example.target})
    return result
