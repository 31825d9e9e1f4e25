import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sft_fixtures import held_out_items

from gream_verl.data.split import leave_one_out
from gream_verl.index.tokens import ItemIndex, parse_index_tokens
from gream_verl.tasks.alignment import AlignConfig, build_alignment, truncate


def _mentioned_items(row, index):
    """Items whose index string appears anywhere in a row's prompt or answer."""
    text = row["instruction"] + " " + row["input"] + " " + row["output"]
    toks = parse_index_tokens(text)
    levels = index.num_levels
    return {index.item_of("".join(toks[k:k + levels])) for k in range(0, len(toks), levels)} - {None}


def test_no_valid_or_test_item_anywhere(synthetic):
    dataset, index = synthetic
    result = build_alignment(dataset, index, AlignConfig(seed=3), summaries={u: "Likes pens." for u in dataset.sequences})
    held_out = held_out_items(dataset)
    assert result.counts.keys() == {"seqrec", "fusedrec", "item2index", "index2item", "preference"}
    for row in result.rows:
        assert row["target_item"] not in held_out
        assert not (_mentioned_items(row, index) & held_out), row
        assert "valid" not in row["instruction"] + row["input"] + row["output"]  # titles of held-out items


def test_direct_mode_targets_are_the_index_string_only(synthetic):
    dataset, index = synthetic
    rows = build_alignment(dataset, index, AlignConfig(families=("seqrec", "fusedrec", "item2index"))).rows
    for row in rows:
        assert row["output"] == index.string(row["target_item"])


def test_seqrec_matches_the_training_split(synthetic):
    dataset, index = synthetic
    rows = build_alignment(dataset, index, AlignConfig(families=("seqrec",), max_history=4)).rows
    expected = leave_one_out(dataset.sequences, "train", max_history=4)
    assert [(r["user"], r["target_item"]) for r in rows] == [(e.user, e.target) for e in expected]
    for row, ex in zip(rows, expected, strict=True):
        shown = parse_index_tokens(row["instruction"] + row["input"])
        assert "".join(shown) == "".join(index.string(i) for i in ex.history)


def test_subsampling_per_user_and_total(synthetic):
    dataset, index = synthetic
    rows = build_alignment(dataset, index, AlignConfig(families=("seqrec",), seqrec_max_per_user=2)).rows
    per_user = {}
    for r in rows:
        per_user[r["user"]] = per_user.get(r["user"], 0) + 1
    assert max(per_user.values()) == 2 and len(per_user) == len(dataset.sequences)
    capped = build_alignment(dataset, index, AlignConfig(families=("seqrec",), seqrec_max_per_user=2,
                                                          seqrec_max_total=7)).rows
    assert len(capped) == 7
    assert {(r["user"], r["target_item"]) for r in capped} <= {(r["user"], r["target_item"]) for r in rows}


def test_item_tasks_respect_missing_text(synthetic):
    dataset, index = synthetic
    rows = build_alignment(dataset, index, AlignConfig(families=("item2index", "index2item"),
                                                       max_description_chars=50)).rows
    for row in rows:
        meta = dataset.items[row["target_item"]]
        prompt = row["instruction"] + row["input"]
        if not meta["description"]:
            assert "fine product" not in prompt + row["output"]
        if row["task"] == "index2item":
            assert row["output"] in (meta["title"], truncate(meta["description"], 50))
            assert index.string(row["target_item"]) in prompt
    descriptions = [r for r in rows if r["template"] in ("index2item/2", "index2item/4")]
    assert descriptions and all(len(r["output"]) <= 54 for r in descriptions)


def test_preference_skipped_without_summaries(synthetic, caplog):
    dataset, index = synthetic
    with caplog.at_level(logging.WARNING):
        result = build_alignment(dataset, index, AlignConfig(families=("preference",)))
    assert result.rows == [] and "preference" in result.skipped
    assert "skipping the preference task" in caplog.text
    summaries = {"u0": "Buys pens.", "u1": "  "}
    rows = build_alignment(dataset, index, AlignConfig(families=("preference",)), summaries).rows
    assert [(r["user"], r["output"]) for r in rows] == [("u0", "Buys pens.")]


def test_index_missing_items_is_a_clear_error(synthetic):
    dataset, index = synthetic
    partial = ItemIndex({k: v for k, v in index.tokens.items() if k != "3"})
    with pytest.raises(ValueError, match=r"items of Synthetic have no index .*'3'"):
        build_alignment(dataset, partial)


def test_bad_config():
    with pytest.raises(ValueError, match="unknown alignment task families"):
        AlignConfig(families=("seqrec", "bogus"))
    with pytest.raises(ValueError, match="seqrec_max_total"):
        AlignConfig(seqrec_max_total=0)


def test_colliding_indices_get_no_index_to_text_sample(synthetic):
    dataset, index = synthetic
    tokens = dict(index.tokens)
    tokens["1"] = tokens["0"]  # items 0 and 1 now share an index
    rows = build_alignment(dataset, ItemIndex(tokens), AlignConfig(families=("item2index", "index2item"))).rows
    index2item = {r["target_item"] for r in rows if r["task"] == "index2item"}
    item2index = {r["target_item"] for r in rows if r["task"] == "item2index"}
    assert {"0", "1"} <= item2index and not {"0", "1"} & index2item and "2" in index2item


def _transitions(rows, index):
    out = []
    for row in rows:
        items = [index.item_of(s) for s in row["output"].split(", ")]
        assert None not in items, row["output"]
        out += [(row["user"], a, b) for a, b in zip(items, items[1:], strict=False)]
    return out


def test_sequence_rows_hold_every_training_transition_once(synthetic):
    dataset, index = synthetic
    rows = build_alignment(dataset, index, AlignConfig(families=("sequence",), max_history=3)).rows
    expected = [(u, a, b) for u, s in dataset.sequences.items() if len(s) >= 3
                for a, b in zip(s[:-2], s[1:-2], strict=False)]
    assert sorted(_transitions(rows, index)) == sorted(expected)
    assert all(len(r["output"].split(", ")) <= 4 for r in rows)  # windows of max_history + 1 items
    assert {r["task"] for r in rows} == {"sequence"} and all(r["target_item"] is None for r in rows)
    assert not (set().union(*(_mentioned_items(r, index) for r in rows)) & held_out_items(dataset))


@given(length=st.integers(0, 60), window=st.integers(2, 25))
def test_sequence_windows_cover_each_transition_once(length, window):
    from gream_verl.data.dataset import RecDataset
    from gream_verl.tasks.alignment import sequence_windows

    seq = [str(i) for i in range(length + 2)]  # + valid and test items
    windows = sequence_windows(RecDataset(name="x", sequences={"u": seq}, items={}), window)
    pairs = [(a, b) for _, w in windows for a, b in zip(w, w[1:], strict=False)]
    assert sorted(pairs) == sorted((str(i), str(i + 1)) for i in range(length - 1))
    assert all(2 <= len(w) <= window for _, w in windows)


def test_sequence_window_must_hold_a_transition(synthetic):
    from gream_verl.tasks.alignment import sequence_windows

    with pytest.raises(ValueError, match="at least 2 items"):
        sequence_windows(synthetic[0], 1)


def test_sequence_family_is_off_unless_asked(synthetic):
    from gream_verl.tasks.build import align_config, sft_config

    assert "sequence" not in AlignConfig().families
    assert "sequence" not in align_config(sft_config()).families
    assert "sequence" in align_config(sft_config(overrides=["tasks.sequence.enabled=true"])).families
