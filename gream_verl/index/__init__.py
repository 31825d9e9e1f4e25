"""Semantic item index: embeddings, RQ-KMeans, collision resolution, index tokens, prefix trie."""

from gream_verl.index.tokens import ItemIndex, index_token, load_index, parse_index_tokens, save_index

__all__ = ["ItemIndex", "index_token", "load_index", "parse_index_tokens", "save_index"]
