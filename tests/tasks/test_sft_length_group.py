import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.tasks.length_group import GROUPED_DATASET, length_grouped_order, prepare_grouped_dataset


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 500), max_size=300), batch=st.integers(1, 16), epochs=st.integers(1, 3),
       megabatch=st.integers(1, 4), seed=st.integers(0, 3))
def test_each_epoch_is_a_drop_last_permutation_in_sorted_batches(lengths, batch, epochs, megabatch, seed):
    lengths = np.array(lengths, dtype=np.int64)
    n = len(lengths)
    order = length_grouped_order(lengths, batch, epochs, seed, megabatch)
    kept = n - n % batch if n >= batch else n
    assert len(order) == kept * epochs
    width = batch if n >= batch else max(n, 1)
    for epoch in order.reshape(epochs, kept) if kept else []:
        assert len(set(epoch.tolist())) == kept  # no row twice within an epoch
        for group in epoch.reshape(-1, width):
            assert (np.diff(lengths[group]) <= 0).all()  # one sorted slice of a mega-batch
    np.testing.assert_array_equal(order, length_grouped_order(lengths, batch, epochs, seed, megabatch))


def test_grouping_removes_most_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 160, size=3200)
    batch = 32

    def padded(order):
        groups = lengths[order].reshape(-1, batch)
        return (groups.max(axis=1) * batch).sum() / groups.sum()

    assert padded(rng.permutation(len(lengths))) > 1.5
    assert padded(length_grouped_order(lengths, batch, 1)) < 1.05


def test_epochs_differ_and_batches_are_shuffled():
    lengths = np.arange(400)
    order = length_grouped_order(lengths, 10, 2, seed=1).reshape(2, -1)
    assert not np.array_equal(order[0], order[1])
    firsts = lengths[order[0].reshape(-1, 10)[:, 0]]
    assert not (np.diff(firsts) <= 0).all()  # batch order is not simply longest first


@pytest.mark.parametrize(("bad", "message"), [
    ({"dataset": "gream_curriculum"}, "would reorder the curriculum dataset"),
    ({"packing": True}, r"cannot be combined with \['packing'\]"),
    ({"val_size": 0.1}, r"cannot be combined with \['val_size'\]"),
    ({"max_samples": 10}, r"cannot be combined with \['max_samples'\]"),
    ({"num_train_epochs": 0}, "num_train_epochs must be > 0 with group_by_length, got 0.0"),
])  # fmt: skip
def test_refuses_what_would_undo_the_grouping(bad, message, tmp_path):
    args = {"dataset": "gream_align", "dataset_dir": str(tmp_path), "model_name_or_path": "x", **bad}
    with pytest.raises(ValueError, match=message):
        prepare_grouped_dataset(args, tmp_path / "out")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from gream_verl.model.tiny import train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(vocab_size=300).save_pretrained(out)
    return out


def _write_dataset(folder, name, rows, **entry):
    (folder / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
    info = {name: {"file_name": f"{name}.json", **entry}}
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def test_writes_an_unrolled_grouped_copy(tokenizer_dir, tmp_path):
    rows = [{"instruction": f"row {k}", "input": "word " * (k % 9), "output": "x"} for k in range(37)]
    _write_dataset(tmp_path, "gream_align", rows)
    args = {"dataset": "gream_align", "dataset_dir": str(tmp_path), "model_name_or_path": str(tokenizer_dir),
            "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "num_train_epochs": 2.5}
    out = prepare_grouped_dataset(args, tmp_path / "grouped")
    assert out == {"dataset": GROUPED_DATASET, "dataset_dir": str(tmp_path / "grouped"),
                   "num_train_epochs": 2.5 / 3, "disable_shuffling": True}
    written = json.loads((tmp_path / "grouped" / f"{GROUPED_DATASET}.json").read_text())
    assert len(written) == 3 * 32  # 3 unrolled epochs of 37 // 8 * 8 rows
    assert all(r in rows for r in written)
    info = json.loads((tmp_path / "grouped" / "dataset_info.json").read_text())
    assert info[GROUPED_DATASET]["file_name"] == f"{GROUPED_DATASET}.json"


def test_names_a_dataset_it_cannot_read(tokenizer_dir, tmp_path):
    _write_dataset(tmp_path, "chat", [{"conversations": []}], formatting="sharegpt")
    args = {"dataset": "chat", "dataset_dir": str(tmp_path), "model_name_or_path": str(tokenizer_dir)}
    with pytest.raises(ValueError, match="chat.*plain alpaca"):
        prepare_grouped_dataset(args, tmp_path / "grouped")
