"""Item-text enrichment with a teacher LLM (``gream data enrich``).

GREAM rewrites each item's title, description and reviews into one rich description with a
strong LLM before building the item index. This module writes the prompt, sends it through
:class:`gream_verl.teacher.TeacherClient` (concurrent, cached, resumable) and stores the
answer as a new ``enriched`` field; the original fields are kept.

Documented behaviour: an item without any text in the prompt fields is not sent and gets no
``enriched`` field (``skipped_no_text``); an answer that is empty after cleaning (e.g. only a
``<think>`` block) gets no field either (``empty_answers``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from gream_verl.data.rec_dataset import clean_text, id_sort_key

SYSTEM_PROMPT = (
    "You write product descriptions for the item catalogue of a recommender system. "
    "Your descriptions are factual, specific and free of marketing filler."
)

USER_PROMPT = (
    "Rewrite the product information below as one fluent paragraph of at most {max_words} words. "
    "Say what the item is, what it is used for, its notable features, and what kind of customer "
    "would buy it. Use only facts stated below; reviews may tell you about use and quality. "
    "Do not invent specifications, prices or claims. Reply with the paragraph only.\n\n{facts}"
)

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_LABEL = re.compile(r"^(description|paragraph|rewritten description)\s*:\s*", re.IGNORECASE)


def enrichment_messages(
    meta: Mapping[str, str], fields: Sequence[str], max_words: int = 120, max_field_chars: int = 1500
) -> list[dict] | None:
    """Chat messages asking for one item's description, or None if it has no text at all."""
    facts = []
    for name in fields:
        value = clean_text(meta.get(name))
        if value:
            if len(value) > max_field_chars:
                value = value[:max_field_chars].rsplit(" ", 1)[0] + " ..."
            facts.append(f"{name.capitalize()}: {value}")
    if not facts:
        return None
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT.format(max_words=max_words, facts="\n".join(facts))},
    ]


def clean_answer(text: str) -> str:
    """The description in a teacher answer: no reasoning block, label, quotes or line breaks."""
    text = clean_text(_THINK.sub(" ", text or ""))
    text = _LABEL.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def enrich_items(
    items: Mapping[str, Mapping],
    client,
    fields: Sequence[str] = ("title", "brand", "categories", "description", "reviews"),
    max_words: int = 120,
    max_field_chars: int = 1500,
    limit: int | None = None,
) -> tuple[dict[str, dict], dict[str, int]]:
    """A copy of ``items`` where (up to ``limit``) items with text gain an ``enriched`` field.

    ``client`` is a :class:`~gream_verl.teacher.TeacherClient` (or anything with its
    ``complete_many``). Returns the new items (all of them, in id order) and counts.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    order = sorted(items, key=lambda i: id_sort_key(str(i)))
    requests: dict[str, list[dict]] = {}
    skipped = 0
    for item in order:
        if limit is not None and len(requests) >= limit:
            break
        messages = enrichment_messages(items[item], fields, max_words, max_field_chars)
        if messages is None:
            skipped += 1
        else:
            requests[item] = messages
    answers = client.complete_many(requests, desc="enrich") if requests else {}
    out: dict[str, dict] = {}
    empty = 0
    for item in order:
        entry = dict(items[item])
        if item in answers:
            entry.pop("enriched", None)  # a re-run replaces an old description
            text = clean_answer(answers[item])
            if text:
                entry["enriched"] = text
            else:
                empty += 1
        out[item] = entry
    report = {
        "items": len(out),
        "enriched": len(answers) - empty,
        "skipped_no_text": skipped,
        "empty_answers": empty,
        "not_requested": len(out) - len(requests) - skipped,
    }
    return out, report
