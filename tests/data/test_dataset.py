import json

import pytest

from gream_verl.data import leave_one_out, load_dataset
from gream_verl.data.split import train_items


def test_office_counts(office_dir):
    ds = load_dataset(office_dir)
    assert (len(ds.sequences), len(ds.item_ids), ds.num_interactions) == (4905, 2420, 53258)
    assert ds.items["2"]["title"].startswith("AT&T 210")  # HTML entity decoded


def test_leave_one_out_positions():
    seqs = {"u": [str(i) for i in range(30)], "short": ["1", "2"]}
    train = leave_one_out(seqs, "train", max_history=20)
    assert [e.target for e in train] == [str(i) for i in range(1, 28)]
    assert train[-1].history == tuple(str(i) for i in range(7, 27))
    (valid,) = leave_one_out(seqs, "valid")
    (test,) = leave_one_out(seqs, "test")
    assert (valid.target, test.target) == ("28", "29")
    assert test.history[-1] == "28" and len(test.history) == 20
    assert train_items(seqs) == {"u": [str(i) for i in range(28)]}


def test_no_target_leaks_into_train(office_dir):
    ds = load_dataset(office_dir)
    held_out = {(e.user, e.target) for s in ("valid", "test") for e in leave_one_out(ds.sequences, s)}
    seen = {(e.user, i) for e in leave_one_out(ds.sequences, "train") for i in (*e.history, e.target)}
    # an item can repeat in a sequence, so only check positions: train never reaches s[-2:]
    assert all(len(e.history) < len(ds.sequences[e.user]) - 1 for e in leave_one_out(ds.sequences, "train"))
    assert held_out and seen


def test_malformed_files_name_the_file(tmp_path):
    bad = tmp_path / "X.inter.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="X.inter.json"):
        load_dataset(tmp_path)
    bad.write_bytes(b'{"1": [1, 2, 3]}\xff')
    with pytest.raises(ValueError, match="UTF-8"):
        load_dataset(tmp_path)
    bad.write_text(json.dumps({"1": 5}))
    with pytest.raises(ValueError, match="user '1'"):
        load_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset(tmp_path / "nowhere")
