"""D_align: the collaborative-semantic alignment tasks (paper sec. 4.2), as alpaca rows.

Families (templates in :mod:`gream_verl.tasks.prompts`):
  ``seqrec``      history of index strings -> next index string
  ``fusedrec``    titles of the history -> next index string
  ``item2index``  title and/or description -> index string
  ``index2item``  index string -> title or description
  ``preference``  titles of the history -> a preference summary written by a teacher LLM
  ``sequence``    -> a user's whole training sequence as index strings (off in the paper recipe).
                  One row trains every next-item transition of a window at once, where ``seqrec``
                  needs a row (and a forward pass over the history) per target: the objective
                  that lets a small model learn the transitions within a CPU budget. Windows hold
                  at most ``max_history + 1`` items, the longest history evaluation shows.

Only training interactions are used: user tasks come from ``leave_one_out(..., "train")`` (a
user's valid ``s[-2]`` and test ``s[-1]`` are never a target nor in a history) and item tasks
cover the items of the training parts only. Direct-mode targets are the index string alone.

Every row is ``{instruction, input, output, task, template, user, target_item}``; the last four
are bookkeeping columns LLaMA-Factory ignores (``user`` is None for item tasks, ``target_item``
for the preference task, whose target is text).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gream_verl.data.dataset import RecDataset
from gream_verl.data.split import Example, leave_one_out, train_items
from gream_verl.index.tokens import ItemIndex
from gream_verl.tasks import prompts

log = logging.getLogger(__name__)

PAPER_FAMILIES = ("seqrec", "fusedrec", "item2index", "index2item", "preference")
ALIGN_FAMILIES = (*PAPER_FAMILIES, "sequence")


@dataclass
class AlignConfig:
    """Which families to build and how much of each (None = everything)."""

    seed: int = 42
    max_history: int = 20
    max_description_chars: int = 400
    families: tuple[str, ...] = PAPER_FAMILIES
    seqrec_max_per_user: int | None = None
    seqrec_max_total: int | None = None
    fusedrec_max_per_user: int | None = None
    fusedrec_max_total: int | None = None
    preference_max_users: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.families) - set(ALIGN_FAMILIES)
        if unknown:
            raise ValueError(f"unknown alignment task families {sorted(unknown)}; expected some of {ALIGN_FAMILIES}")
        for name in ("seqrec_max_per_user", "seqrec_max_total", "fusedrec_max_per_user",
                     "fusedrec_max_total", "preference_max_users"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")


@dataclass
class AlignResult:
    rows: list[dict]
    counts: dict[str, int] = field(default_factory=dict)
    template_counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # family -> why it is empty


def truncate(text: str, limit: int) -> str:
    """Cut long descriptions at a word boundary so prompts stay short."""
    if limit <= 0 or len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut or text[:limit]) + " ..."


def check_index_covers(dataset: RecDataset, index: ItemIndex, source: str = "index") -> None:
    """Every item of a training part needs an index string; say which are missing."""
    needed = {i for seq in train_items(dataset.sequences).values() for i in seq}
    missing = sorted(needed - set(index.tokens))
    if missing:
        raise ValueError(f"{source}: {len(missing)} items of {dataset.name} have no index "
                         f"(e.g. {missing[:5]}); was the index built from this dataset?")


def subsample_examples(examples: list[Example], max_per_user: int | None, max_total: int | None,
                       rng: np.random.Generator) -> list[Example]:
    """Seeded random subset: at most ``max_per_user`` per user, then ``max_total`` overall
    (original order kept, so a user's examples stay chronological)."""
    keep = np.ones(len(examples), dtype=bool)
    if max_per_user is not None:
        users = np.array([e.user for e in examples], dtype=object)
        keep[:] = False
        # Random priority per example; per user keep the max_per_user lowest priorities.
        priority = rng.random(len(examples))
        order = np.lexsort((priority, users))
        sorted_users = users[order]
        starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        keep[order[rank < max_per_user]] = True
    chosen = np.flatnonzero(keep)
    if max_total is not None and len(chosen) > max_total:
        chosen = np.sort(rng.choice(chosen, size=max_total, replace=False))
    return [examples[k] for k in chosen]


def _row(template: prompts.PromptTemplate, values: dict[str, str], output: str, user: str | None,
         target: str | None) -> dict:
    instruction, input_ = template.render(**values)
    return {"instruction": instruction, "input": input_, "output": output, "task": template.family,
            "template": template.id, "user": user, "target_item": target}


def _user_rows(family: str, examples: list[Example], dataset: RecDataset, index: ItemIndex,
               seed: int) -> list[dict]:
    family_templates = prompts.templates(family)
    choice = prompts.choose_templates(family, len(examples), seed)
    strings = {item: index.string(item) for item in index.tokens}
    rows = []
    for ex, k in zip(examples, choice, strict=True):
        if family == "seqrec":
            values = {"history": prompts.format_history([strings[i] for i in ex.history])}
        else:
            values = {"titles": prompts.format_titles([dataset.title(i) for i in ex.history])}
        rows.append(_row(family_templates[k], values, strings[ex.target], ex.user, ex.target))
    return rows


def sequence_windows(dataset: RecDataset, window: int) -> list[tuple[str, list[str]]]:
    """(user, items) windows of at most ``window`` items covering each training part ``s[:-2]``
    from its end; consecutive windows overlap by one item so every transition is in one."""
    if window < 2:
        raise ValueError(f"a sequence window needs at least 2 items, got {window}")
    out = []
    for user, seq in train_items(dataset.sequences).items():
        end = len(seq)
        while end > 1:
            out.append((user, seq[max(0, end - window):end]))
            end -= window - 1
    return out


def _sequence_rows(dataset: RecDataset, index: ItemIndex, window: int, seed: int) -> list[dict]:
    family_templates = prompts.templates("sequence")
    windows = sequence_windows(dataset, window)
    choice = prompts.choose_templates("sequence", len(windows), seed)
    return [_row(family_templates[k], {}, prompts.format_history([index.string(i) for i in items]), user, None)
            for (user, items), k in zip(windows, choice, strict=True)]


def _item_rows(family: str, items: list[str], dataset: RecDataset, index: ItemIndex, seed: int,
               max_description_chars: int) -> list[dict]:
    family_templates = prompts.templates(family)
    rng = np.random.default_rng(prompts.family_seed(seed, family))
    draws = rng.random(len(items))
    shared = Counter(index.string(i) for i in index.tokens)
    rows = []
    for item, u in zip(items, draws, strict=True):
        if family == "index2item" and shared[index.string(item)] > 1:
            continue  # a colliding index names several items: no single right text to answer
        meta = dataset.items.get(item, {})
        fields = {"title": meta.get("title", ""),
                  "description": truncate(meta.get("description", ""), max_description_chars)}
        usable = [t for t in family_templates if prompts.applicable(t, fields)]
        if not usable:  # an item without any text cannot be aligned to text
            continue
        template = usable[int(u * len(usable))]
        index_string = index.string(item)
        values = {**fields, "index": index_string}
        output = index_string if template.output == "index" else fields[template.output]
        rows.append(_row(template, values, output, None, item))
    return rows


def preference_histories(dataset: RecDataset, max_history: int = 20, max_users: int | None = None,
                         seed: int = 42) -> dict[str, list[str]]:
    """user -> the most recent training items (the input of the preference task)."""
    parts = {u: s[-max_history:] if max_history > 0 else s
             for u, s in train_items(dataset.sequences).items() if s}
    users = sorted(parts)
    if max_users is not None and len(users) > max_users:
        rng = np.random.default_rng(prompts.family_seed(seed, "preference-users"))
        users = sorted(rng.choice(users, size=max_users, replace=False).tolist())
    return {u: parts[u] for u in users}


def preference_request(dataset: RecDataset, history: list[str]) -> list[dict]:
    """Teacher messages asking for a user's preference summary (training items only)."""
    titles = prompts.format_titles([dataset.title(i) for i in history])
    return [
        {"role": "system", "content": "You analyse e-commerce users. Answer in plain prose."},
        {"role": "user", "content": (
            f"A user bought these items, oldest first:\n{titles}\n\n"
            "In two or three sentences, summarise this user's preferences: product types, brands, "
            "price or quality level, and needs. Do not list the items one by one."
        )},
    ]


def _preference_rows(histories: dict[str, list[str]], summaries: dict[str, str], dataset: RecDataset,
                     seed: int) -> tuple[list[dict], int]:
    users = [u for u in histories if (summaries.get(u) or "").strip()]
    family_templates = prompts.templates("preference")
    choice = prompts.choose_templates("preference", len(users), seed)
    rows = []
    for user, k in zip(users, choice, strict=True):
        history = histories[user]
        values = {"titles": prompts.format_titles([dataset.title(i) for i in history])}
        rows.append(_row(family_templates[k], values, summaries[user].strip(), user, None))
    return rows, len(histories) - len(users)


def build_alignment(dataset: RecDataset, index: ItemIndex, config: AlignConfig | None = None,
                    summaries: dict[str, str] | None = None) -> AlignResult:
    """All alignment rows for ``dataset``. ``summaries`` (user -> text) feed the preference task;
    without them that family is skipped with a warning."""
    config = config or AlignConfig()
    check_index_covers(dataset, index)
    from tqdm.auto import tqdm

    result = AlignResult(rows=[])
    train = leave_one_out(dataset.sequences, "train", max_history=config.max_history)
    items_in_train = sorted({i for s in train_items(dataset.sequences).values() for i in s},
                            key=lambda x: (not x.isdigit(), int(x) if x.isdigit() else 0, x))
    for family in tqdm(config.families, desc="alignment tasks", unit="task"):
        if family in ("seqrec", "fusedrec"):
            rng = np.random.default_rng(prompts.family_seed(config.seed, f"{family}-subsample"))
            examples = subsample_examples(train, getattr(config, f"{family}_max_per_user"),
                                          getattr(config, f"{family}_max_total"), rng)
            rows = _user_rows(family, examples, dataset, index, config.seed)
        elif family == "sequence":
            rows = _sequence_rows(dataset, index, config.max_history + 1, config.seed)
        elif family in ("item2index", "index2item"):
            rows = _item_rows(family, items_in_train, dataset, index, config.seed, config.max_description_chars)
            if not rows:
                result.skipped[family] = "no item has a title or description"
        else:
            if not summaries:
                reason = "no teacher summaries (use --teacher llm or tasks.preference.summaries_file)"
                log.warning("skipping the preference task: %s", reason)
                result.skipped[family] = reason
                continue
            histories = preference_histories(dataset, config.max_history, config.preference_max_users, config.seed)
            rows, empty = _preference_rows(histories, summaries, dataset, config.seed)
            if empty:
                log.warning("preference task: %d users have no (or an empty) summary and are left out", empty)
        result.rows.extend(rows)
        result.counts[family] = len(rows)
    result.template_counts = dict(sorted(Counter(r["template"] for r in result.rows).items()))
    return result
