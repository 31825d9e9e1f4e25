"""A small synthetic dataset whose valid/test items appear nowhere else, so any leak is visible."""

from __future__ import annotations

import re

import numpy as np

from gream_verl.data.dataset import RecDataset
from gream_verl.index.tokens import ItemIndex, codes_to_tokens

CATEGORIES = ["Pens", "Paper", "Staplers", "Ink"]
BRANDS = ["Acme", "Bic", "Zebra"]


def make_dataset(num_users: int = 30, num_items: int = 40, seed: int = 0) -> RecDataset:
    rng = np.random.default_rng(seed)
    sequences = {}
    for u in range(num_users):
        length = int(rng.integers(3, 12))
        body = [str(i) for i in rng.choice(num_items, size=length, replace=False)]  # no repeats
        sequences[f"u{u}"] = body + [f"valid{u}", f"test{u}"]
    items = {}
    for i in list(range(num_items)) + [f"valid{u}" for u in range(num_users)] + [f"test{u}" for u in range(num_users)]:
        i = str(i)
        k = sum(map(ord, i)) if not i.isdigit() else int(i)
        items[i] = {
            "title": f"Product number {i} of the catalogue",
            "description": "" if k % 3 == 0 else f"A fine product {i} " + "with many words " * 40,
            "brand": BRANDS[k % len(BRANDS)],
            "categories": f"Office Products, {CATEGORIES[k % len(CATEGORIES)]}",
        }
    return RecDataset("Synthetic", sequences, items, source="synthetic")


def make_index(dataset: RecDataset) -> ItemIndex:
    ids = dataset.item_ids
    return ItemIndex({item: codes_to_tokens([k // 16, k % 16, 0]) for k, item in enumerate(ids)})


def held_out_items(dataset: RecDataset) -> set[str]:
    return {i for s in dataset.sequences.values() for i in s[-2:]}


GOOD_CHAIN = ("Step 1: Behavioural evidence - buys office supplies often.\n"
              "Step 2: Latent preferences - prefers reliable brands.\n"
              "Step 3: Intent and goal - restocking the desk.\n"
              "Supporting items: 1, 2\n<answer>{answer}</answer>")


def behaviour(title: str) -> str:
    """Which reply the fake teacher gives for a target (by its item number)."""
    number = int(re.search(r"Product number (\d+)", title).group(1))
    return ["good", "good", "missing_steps", "wrong_answer", "target_leak", "missing_answer"][number % 6]


def fake_teacher_reply(messages: list[dict]) -> str:
    """Well-formed chains for most targets, each kind of malformed chain for some; a summary for
    preference requests."""
    text = messages[-1]["content"]
    if "summarise this user's preferences" in text:
        return "This user buys office basics from a few trusted brands."
    title, answer = re.search(r'next is "(.*)" \(index (.*)\)', text).groups()
    good = GOOD_CHAIN.format(answer=answer)
    return {
        "good": good,
        "missing_steps": good.split("Step 3")[0] + f"<answer>{answer}</answer>",
        "wrong_answer": good.replace(answer, "<a_999><b_0><c_0>"),
        "target_leak": good.replace("restocking the desk", f"buying the {title}"),
        "missing_answer": good.split("<answer>")[0],
    }[behaviour(title)]
