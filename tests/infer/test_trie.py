import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.index.tokens import ItemIndex
from gream_verl.index.trie import DEAD, build_trie, build_trie_from_codes


def reference_children(codes: np.ndarray) -> dict[tuple, set]:
    """prefix -> set of next tokens (-2 marks 'an item ends here'), by brute force."""
    out: dict[tuple, set] = {}
    for row in codes.tolist():
        path = [c for c in row if c >= 0]
        for j in range(len(path)):
            out.setdefault(tuple(path[:j]), set()).add(path[j])
        out.setdefault(tuple(path), set()).add(-2)
    return out


def ragged_codes(draw_rows):
    width = max(len(r) for r in draw_rows)
    codes = np.full((len(draw_rows), width), -1, dtype=np.int64)
    for i, r in enumerate(draw_rows):
        codes[i, : len(r)] = r
    return codes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=4), min_size=1, max_size=40))
def test_children_and_terminals_match_brute_force(rows):
    codes = ragged_codes(rows)
    trie = build_trie_from_codes(codes, [str(i) for i in range(len(rows))], key_base=5)
    ref = reference_children(codes)
    prefixes = list(ref)
    width = max(len(p) for p in prefixes)
    padded = torch.full((len(prefixes), width), -1, dtype=torch.long)
    for i, p in enumerate(prefixes):
        padded[i, : len(p)] = torch.tensor(p, dtype=torch.long)
    node = torch.zeros(len(prefixes), dtype=torch.long)
    for j in range(width):
        node = torch.where(padded[:, j] >= 0, trie.step(node, padded[:, j]), node)
    assert (node >= 0).all()
    tokens, valid = trie.children(node)
    terminal = trie.is_terminal(node)
    for i, p in enumerate(prefixes):
        got = set(tokens[i][valid[i]].tolist()) | ({-2} if terminal[i] else set())
        assert got == ref[p], p
    # the first item with a given index owns its node
    first = {}
    for i, r in enumerate(rows):
        first.setdefault(tuple(r), str(i))
    assert trie.lookup([list(k) for k in first]) == list(first.values())
    assert trie.num_items == len(first)


def test_lookup_dead_paths_and_prefixes():
    codes = ragged_codes([[1, 2, 3], [1, 2], [1, 4, 0, 2]])
    trie = build_trie_from_codes(codes, ["x", "y", "z"], key_base=10)
    assert trie.lookup([[1, 2, 3], [1, 2], [1, 4, 0, 2], [1], [1, 9], [1, 2, 3, 3], [11]]) == [
        "x", "y", "z", None, None, None, None,
    ]  # fmt: skip
    assert trie.walk(torch.tensor([[1, 9, 2]])).tolist() == [DEAD]
    assert trie.max_depth == 4


def test_build_from_index_and_tokenizer(tiny_index, tiny_lm):
    model, tokenizer = tiny_lm
    trie = build_trie(tiny_index, tokenizer, model.config.vocab_size)
    assert trie.key_base == model.config.vocab_size
    rows = [tokenizer.convert_tokens_to_ids(t) for t in tiny_index.tokens.values()]
    assert trie.lookup(rows) == list(tiny_index.tokens)
    first_level = {tokenizer.convert_tokens_to_ids(t[0]) for t in tiny_index.tokens.values()}
    tokens, valid = trie.children(torch.zeros(1, dtype=torch.long))
    assert set(tokens[0][valid[0]].tolist()) == first_level


def test_collisions_keep_the_first_item(tiny_lm):
    _, tokenizer = tiny_lm
    index = ItemIndex({"p": ["<a_1>", "<b_2>"], "q": ["<a_1>", "<b_2>"], "r": ["<a_0>", "<b_2>"]})
    trie = build_trie(index, tokenizer)
    ids = tokenizer.convert_tokens_to_ids(["<a_1>", "<b_2>"])
    assert trie.lookup([ids]) == ["p"]
    assert trie.num_items == 2


def test_tokens_missing_from_the_tokenizer_are_named(tiny_lm):
    _, tokenizer = tiny_lm
    with pytest.raises(ValueError, match=r"not in the tokenizer.*<z_99>"):
        build_trie(ItemIndex({"1": ["<a_1>", "<z_99>"]}), tokenizer)


def test_malformed_codes_are_rejected():
    with pytest.raises(ValueError, match="padding only at its end"):
        build_trie_from_codes(np.array([[1, -1, 2]]), ["a"], key_base=5)
    with pytest.raises(ValueError, match="key_base"):
        build_trie_from_codes(np.array([[7]]), ["a"], key_base=5)


def test_memory_is_small_for_many_items():
    rng = np.random.default_rng(0)
    n = 200_000
    codes = rng.integers(0, 256, size=(n, 4)) + np.array([0, 256, 512, 768])
    trie = build_trie_from_codes(codes, [str(i) for i in range(n)], key_base=152_000)
    assert trie.num_nodes <= 1 + 256 + 3 * n
    assert trie.nbytes() / trie.num_nodes < 32  # bytes per node; ~1M items -> < 200 MB
