"""Hand-written prompt templates for the SFT task families, and the deterministic choice of one.

A template is an (instruction, input) pair of ``str.format`` patterns plus what it needs and what
it answers. Placeholders: ``{history}`` (index strings), ``{titles}`` (numbered item titles),
``{title}``, ``{description}``, ``{index}`` (one item's index string). ``output`` names what the
response is: ``index`` (direct mode: the index string only), ``title``, ``description``,
``summary`` or ``history`` (a sequence of index strings). ``requires`` lists the item fields that
must be non-empty for the template to apply (a title-only item never gets a description template).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PromptTemplate:
    family: str
    number: int
    instruction: str
    input: str
    output: str = "index"
    requires: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.family}/{self.number}"

    def render(self, **values: str) -> tuple[str, str]:
        return self.instruction.format(**values), self.input.format(**values)


def _family(name: str, rows: list[tuple]) -> tuple[PromptTemplate, ...]:
    out = []
    for number, row in enumerate(rows):
        instruction, input_, *rest = row
        output = rest[0] if rest else "index"
        requires = rest[1] if len(rest) > 1 else ()
        out.append(PromptTemplate(name, number, instruction, input_, output, requires))
    return tuple(out)


SEQREC = _family("seqrec", [
    ("Here is the purchase history of a user, oldest first, as item indices. Predict the item the user will buy next.",
     "{history}"),
    ("A user has interacted with the following items in this order: {history}. Which item will the user interact with next?",
     ""),
    ("Given the chronological sequence of items below, recommend the next item for this user.",
     "History: {history}"),
    ("You are a recommender system. Based on the items this user bought before, output the index of the next item.",
     "{history}"),
    ("The user's past interactions are {history}. Recommend one item the user is most likely to choose next.",
     ""),
    ("Continue this user's interaction sequence with the most probable next item.",
     "Sequence so far: {history}"),
])

FUSEDREC = _family("fusedrec", [
    ("Here are the titles of the items a user bought, oldest first. Predict the index of the next item the user will buy.",
     "{titles}"),
    ("A user has purchased these products in order:\n{titles}\nWhich item, given by its index, will the user buy next?",
     ""),
    ("Based on the product titles in this user's history, recommend the next item. Answer with the item index.",
     "Purchase history:\n{titles}"),
    ("You are a shopping assistant. The user previously bought:\n{titles}\nOutput the index of the item they will want next.",
     ""),
    ("Read the user's purchase history and predict the next purchase as an item index.",
     "{titles}"),
])

ITEM2INDEX = _family("item2index", [
    ("Which item has the following title? Answer with its index.", "{title}", "index", ("title",)),
    ("Give the index of the product called \"{title}\".", "", "index", ("title",)),
    ("Here is the description of a product. Output the item index it corresponds to.",
     "{description}", "index", ("description",)),
    ("An item is described as follows. What is its index?",
     "Title: {title}\nDescription: {description}", "index", ("title", "description")),
    ("Find the item index for this product: {title}.", "", "index", ("title",)),
    ("Map this product text to its item index.",
     "{title}. {description}", "index", ("title", "description")),
])

INDEX2ITEM = _family("index2item", [
    ("What is the title of the item {index}?", "", "title", ("title",)),
    ("Give the product title of the following item index.", "{index}", "title", ("title",)),
    ("Describe the item with index {index}.", "", "description", ("description",)),
    ("Which product does this index stand for? Answer with its title.", "{index}", "title", ("title",)),
    ("Write the description of the item below.", "Item: {index}", "description", ("description",)),
    ("Name the product whose index is {index}.", "", "title", ("title",)),
])

PREFERENCE = _family("preference", [
    ("Here are the titles of the items a user bought, oldest first. Summarise this user's preferences in a few sentences.",
     "{titles}", "summary"),
    ("Describe what this user likes, based on their purchase history:\n{titles}", "", "summary"),
    ("Infer the preferences of a user who bought the following items.", "{titles}", "summary"),
    ("What kind of products does this user prefer? Their history:\n{titles}", "", "summary"),
    ("Write a short profile of this shopper's tastes and needs from their purchases.", "{titles}", "summary"),
])

SEQUENCE = _family("sequence", [  # short on purpose: the rows are many and the items are the lesson
    ("List the items of one user, oldest first.", "", "history"),
    ("Write a user's purchase history as item indices.", "", "history"),
    ("Give a user's interaction sequence.", "", "history"),
])

# Reasoning mode: one template on purpose, so SFT and RL prompts (srpo/rl_data.py) can share it.
REASON = _family("reason", [
    ("Here is a user's purchase history, oldest first, each item as its index and title. Think step by step "
     "about the user's behaviour, preferences and intent inside <think></think>, then rewrite the history "
     "keeping only the items that support your prediction, and give the next item in <answer></answer>.",
     "{history}"),
])

TEMPLATES: dict[str, tuple[PromptTemplate, ...]] = {
    t[0].family: t for t in (SEQREC, FUSEDREC, ITEM2INDEX, INDEX2ITEM, PREFERENCE, SEQUENCE, REASON)
}


def templates(family: str) -> tuple[PromptTemplate, ...]:
    try:
        return TEMPLATES[family]
    except KeyError:
        raise KeyError(f"unknown task family {family!r}; expected one of {sorted(TEMPLATES)}") from None


def family_seed(seed: int, family: str) -> list[int]:
    """A per-family seed sequence, so adding samples to one family never reshuffles another."""
    return [int(seed), *family.encode()]


def choose_templates(family: str, n: int, seed: int) -> np.ndarray:
    """``n`` template numbers of ``family``, uniform and reproducible for a given seed."""
    rng = np.random.default_rng(family_seed(seed, family))
    return rng.integers(0, len(templates(family)), size=n)


def applicable(template: PromptTemplate, fields: dict[str, str]) -> bool:
    return all(fields.get(f) for f in template.requires)


def format_history(index_strings: list[str]) -> str:
    return ", ".join(index_strings)


def format_titles(titles: list[str]) -> str:
    return "\n".join(f"{k}. {t}" for k, t in enumerate(titles, 1))
