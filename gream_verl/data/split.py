"""Leave-one-out split, as in the generative-recommendation literature (TIGER, LC-Rec, GREAM).

Per user with sequence ``s``: train targets are every position of ``s[:-2]`` (from the second
item on), valid target ``s[-2]``, test target ``s[-1]``; each history is the at most
``max_history`` most recent items before the target.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Example:
    user: str
    history: tuple[str, ...]
    target: str


def leave_one_out(
    sequences: dict[str, list[str]], split: str, max_history: int = 20, min_length: int = 3
) -> list[Example]:
    """Examples of one split. Users with fewer than ``min_length`` items are skipped (they have
    no training item); ``max_history <= 0`` keeps the whole history."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if min_length < 3:
        raise ValueError(f"min_length must be >= 3 for a leave-one-out split, got {min_length}")

    def cap(h: list[str]) -> tuple[str, ...]:
        return tuple(h[-max_history:] if max_history > 0 else h)

    out: list[Example] = []
    for user, seq in sequences.items():
        if len(seq) < min_length:
            continue
        if split == "train":
            train = seq[:-2]
            out.extend(Example(user, cap(train[:i]), train[i]) for i in range(1, len(train)))
        elif split == "valid":
            out.append(Example(user, cap(seq[:-2]), seq[-2]))
        else:
            out.append(Example(user, cap(seq[:-1]), seq[-1]))
    return out


def train_items(sequences: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each user's training part ``s[:-2]``: the only interactions SFT/RL data may use."""
    return {u: s[:-2] for u, s in sequences.items() if len(s) >= 3}
