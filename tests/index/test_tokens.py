import pytest

from gream_verl.index import ItemIndex, load_index, parse_index_tokens, save_index


def test_roundtrip_and_lookup(tmp_path):
    idx = ItemIndex({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<b_3>", "<c_0>"]})
    save_index(idx, tmp_path / "X.index.json")
    back = load_index(tmp_path / "X.index.json")
    assert back.tokens == idx.tokens and back.num_levels == 3
    assert back.item_of("junk <a_1> more <b_3><c_0>") == "1"
    assert back.item_of("<a_1><b_9>") is None
    assert back.vocabulary() == ["<a_1>", "<b_2>", "<b_3>", "<c_0>"]


def test_reference_index_loads(office_dir):
    idx = load_index(office_dir / "Office.index.reference.json")
    assert len(idx) == 2420 and idx.num_levels == 4 and idx.num_collisions == 5
    with pytest.raises(ValueError, match="5 items share"):
        idx.require_unique()


def test_collision_and_malformed(tmp_path):
    assert ItemIndex({"0": ["<a_1>"], "1": ["<a_1>"]}).num_collisions == 1
    p = tmp_path / "bad.index.json"
    p.write_text('{"0": ["a_1"]}')
    with pytest.raises(ValueError, match="bad.index.json"):
        load_index(p)
    assert parse_index_tokens("<think>x</think><answer><a_3><b_10></answer>") == ["<a_3>", "<b_10>"]
