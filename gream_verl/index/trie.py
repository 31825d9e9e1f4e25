"""A prefix trie over every valid item index, stored as flat tensors for constrained decoding.

Nodes are numbered level by level (root 0, then every distinct length-1 prefix, then every
distinct length-2 prefix, ...), and within a level sorted by (parent, token). Hence the edge
list, keyed ``parent * key_base + token``, is globally sorted, and

* finding the child of many (node, token) pairs at once is one ``torch.searchsorted``;
* the children of a node are the contiguous slice ``child_start[node]:child_start[node + 1]``
  of ``child_token`` (CSR), so the allowed tokens of many beams are one padded gather.

An index may have a different length per item (a collision level for some items only); a node
where an item ends is *terminal* and also allows the end-of-sequence token. Items that share
a whole index map to one node: the first item in index order wins, as in ``ItemIndex.item_of``.

Memory is about 28 bytes per node; 1,000,000 four-level items take well under 100 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gream_verl.index.tokens import ItemIndex

DEAD = -1  # node id of a path that left the trie


@dataclass
class IndexTrie:
    """Tensors of the trie. ``N`` nodes, ``E = N - 1`` edges.

    child_start  (N + 1,) int64  CSR offsets into the edge arrays, per parent node
    child_token  (E,) int32      token id of each edge (sorted by parent, then token)
    child_node   (E,) int32      node each edge leads to
    edge_key     (E,) int64      ``parent * key_base + token``, sorted, for vectorised lookups
    node_item    (N,) int32      row in ``items`` of the item ending at a node, else -1
    items        list[str]       item ids, in the order of the index they were built from
    """

    child_start: torch.Tensor
    child_token: torch.Tensor
    child_node: torch.Tensor
    edge_key: torch.Tensor
    node_item: torch.Tensor
    items: list[str]
    key_base: int
    max_depth: int

    @property
    def num_nodes(self) -> int:
        return int(self.node_item.shape[0])

    @property
    def num_items(self) -> int:
        return int((self.node_item >= 0).sum())

    def nbytes(self) -> int:
        """Bytes held by the tensors (the item id list is not counted)."""
        tensors = (self.child_start, self.child_token, self.child_node, self.edge_key, self.node_item)
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device) -> IndexTrie:
        """This trie on ``device`` (the copy is cached, so per-batch calls cost nothing)."""
        device = torch.device(device)
        if self.edge_key.device == device:
            return self
        cache = self.__dict__.setdefault("_copies", {})
        if str(device) in cache:
            return cache[str(device)]
        move = lambda t: t.to(device)  # noqa: E731
        cache[str(device)] = IndexTrie(
            move(self.child_start), move(self.child_token), move(self.child_node), move(self.edge_key),
            move(self.node_item), self.items, self.key_base, self.max_depth,
        )  # fmt: skip
        return cache[str(device)]

    def step(self, node: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """Child of each ``node`` along ``token`` (same shapes), or ``DEAD`` where there is none
        (``DEAD`` stays ``DEAD``)."""
        if self.edge_key.numel() == 0:
            return torch.full_like(node, DEAD)
        key = node.long() * self.key_base + token.long()
        pos = torch.searchsorted(self.edge_key, key).clamp_(max=self.edge_key.numel() - 1)
        found = (self.edge_key[pos] == key) & (node >= 0) & (token >= 0) & (token < self.key_base)
        return torch.where(found, self.child_node[pos].long(), torch.full_like(pos, DEAD))

    def walk(self, tokens: torch.Tensor) -> torch.Tensor:
        """Node reached by each row of ``tokens`` (``(rows, length)``) from the root."""
        node = torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        for j in range(tokens.shape[1]):
            node = self.step(node, tokens[:, j])
        return node

    def is_terminal(self, node: torch.Tensor) -> torch.Tensor:
        safe = node.clamp(min=0)
        return (node >= 0) & (self.node_item[safe] >= 0)

    def children(self, node: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded children token ids ``(rows, width)`` of each node, and a validity mask.
        ``width`` is the largest fan-out among these nodes (0 if all are leaves or DEAD)."""
        safe = node.clamp(min=0)
        start = self.child_start[safe]
        count = torch.where(node >= 0, self.child_start[safe + 1] - start, torch.zeros_like(start))
        width = int(count.max()) if count.numel() else 0
        offsets = torch.arange(width, device=node.device)
        valid = offsets[None, :] < count[:, None]
        pos = (start[:, None] + offsets[None, :]).clamp_(max=max(self.child_token.numel() - 1, 0))
        tokens = self.child_token[pos].long() if width else torch.zeros((node.shape[0], 0), dtype=torch.long)
        return tokens, valid

    def item_at(self, node: torch.Tensor) -> list[str | None]:
        """Item id ending at each node, else None."""
        rows = torch.where(node >= 0, self.node_item[node.clamp(min=0)], torch.full_like(node, -1))
        return [self.items[r] if r >= 0 else None for r in rows.tolist()]

    def lookup(self, token_rows: list[list[int]]) -> list[str | None]:
        """Item of each exact token sequence (no trailing tokens allowed), else None."""
        if not token_rows:
            return []
        width = max(len(r) for r in token_rows)
        padded = torch.full((len(token_rows), width), -1, dtype=torch.long)
        for i, r in enumerate(token_rows):
            padded[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        node = torch.zeros(len(token_rows), dtype=torch.long)
        for j in range(width):
            col = padded[:, j]
            node = torch.where(col >= 0, self.step(node, col), node)
        return self.item_at(node)


def build_trie_from_codes(codes: np.ndarray, items: list[str], key_base: int) -> IndexTrie:
    """Trie from a ``(num_items, max_depth)`` integer matrix of token ids, ``-1`` padding the
    end of shorter indices. ``key_base`` must exceed every token id (the vocabulary size)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[0] != len(items):
        raise ValueError(f"codes must be (num_items={len(items)}, depth), got shape {codes.shape}")
    if codes.shape[0] == 0:
        raise ValueError("cannot build a trie over zero items")
    lengths = (codes >= 0).sum(axis=1)
    prefix_shaped = (codes >= 0) == (np.arange(codes.shape[1])[None, :] < lengths[:, None])
    if (lengths == 0).any() or not prefix_shaped.all():
        raise ValueError("every item needs a non-empty index with -1 padding only at its end")
    if codes.max() >= key_base:
        raise ValueError(f"token id {int(codes.max())} >= key_base {key_base}")
    n_items, depth = codes.shape
    parent = np.zeros(n_items, dtype=np.int64)  # node of each item's prefix so far
    edge_parent, edge_token, edge_child = [], [], []
    next_node = 1
    node_item = [np.array([-1], dtype=np.int32)]
    for level in range(depth):
        live = np.flatnonzero(lengths > level)
        keys = parent[live] * key_base + codes[live, level]
        uniq, inverse = np.unique(keys, return_inverse=True)
        new_ids = next_node + np.arange(uniq.size, dtype=np.int64)
        edge_parent.append(uniq // key_base)
        edge_token.append(uniq % key_base)
        edge_child.append(new_ids)
        parent[live] = new_ids[inverse]
        ends = live[lengths[live] == level + 1]
        level_items = np.full(uniq.size, -1, dtype=np.int32)
        # the first item (in index order) wins a node that several items end at
        ended_nodes, first = np.unique(parent[ends], return_index=True)
        level_items[ended_nodes - next_node] = ends[first].astype(np.int32)
        node_item.append(level_items)
        next_node += uniq.size
    edge_parent = np.concatenate(edge_parent)
    counts = np.bincount(edge_parent, minlength=next_node)
    child_start = np.zeros(next_node + 1, dtype=np.int64)
    np.cumsum(counts, out=child_start[1:])
    return IndexTrie(
        child_start=torch.from_numpy(child_start),
        child_token=torch.from_numpy(np.concatenate(edge_token).astype(np.int32)),
        child_node=torch.from_numpy(np.concatenate(edge_child).astype(np.int32)),
        edge_key=torch.from_numpy(edge_parent * key_base + np.concatenate(edge_token)),
        node_item=torch.from_numpy(np.concatenate(node_item)),
        items=list(items),
        key_base=int(key_base),
        max_depth=int(depth),
    )


def index_token_ids(index: ItemIndex, tokenizer) -> tuple[np.ndarray, list[str]]:
    """``(num_items, max_depth)`` token ids of every item's index (``-1`` padded), and the item
    order. Every index token must be a single token of ``tokenizer`` (vocabulary extended)."""
    vocab = index.vocabulary()
    ids = tokenizer.convert_tokens_to_ids(vocab)
    unk = getattr(tokenizer, "unk_token_id", None)
    missing = [t for t, i in zip(vocab, ids, strict=True) if i is None or (unk is not None and i == unk)]
    if missing:
        raise ValueError(
            f"{len(missing)} index tokens are not in the tokenizer (e.g. {missing[:5]}); "
            "extend the vocabulary with the index first (gream model extend)"
        )
    token_id = dict(zip(vocab, ids, strict=True))
    items = list(index.tokens)
    codes = np.full((len(items), index.num_levels), -1, dtype=np.int64)
    for row, item in enumerate(items):
        toks = index.tokens[item]
        codes[row, : len(toks)] = [token_id[t] for t in toks]
    return codes, items


def build_trie(index: ItemIndex, tokenizer, vocab_size: int | None = None) -> IndexTrie:
    """Trie over ``index`` in ``tokenizer``'s ids. ``vocab_size`` (the model's logits width)
    defaults to ``len(tokenizer)``."""
    codes, items = index_token_ids(index, tokenizer)
    key_base = max(int(vocab_size or 0), len(tokenizer), int(codes.max()) + 1)
    return build_trie_from_codes(codes, items, key_base)
