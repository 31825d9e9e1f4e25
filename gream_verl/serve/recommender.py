"""What the service knows and does, without HTTP: the model, tokenizer, item index, trie and
catalogue loaded once; request histories checked against the catalogue; prompts built exactly
as ``gream recommend`` and ``gream eval direct`` build them; decoding through the project's
constrained decoder.

Direct mode decodes a *batch* of histories in one call (the batcher gathers them). The beam
width is the server's ``beams`` setting for every request, and ``k`` only cuts the ranking, so
a request's items do not depend on which other requests share its batch (left padding leaves
each prompt's log-probabilities unchanged up to float rounding).

Reasoning mode samples one chain of thought and constrains the answer after it
(:func:`gream_verl.infer.reason.reason_for_history`), one request per call: the sampling seed
then fixes the answer whatever else the server is doing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from gream_verl.data.dataset import RecDataset
from gream_verl.data.split import Example
from gream_verl.index.tokens import ItemIndex
from gream_verl.infer.constrained import ENGINES


class HistoryError(ValueError):
    """A request history the service cannot use; ``unknown`` lists ids not in the catalogue."""

    def __init__(self, message: str, unknown: Sequence[str] = ()):
        super().__init__(message)
        self.unknown = list(unknown)


@dataclass(frozen=True)
class History:
    items: tuple[str, ...]  # catalogue item ids, oldest first, at most max_history
    received: int  # how many the request sent

    @property
    def truncated(self) -> bool:
        return len(self.items) < self.received


class Recommender:
    """Loaded model + index + catalogue; ``cfg`` is an ``eval`` config with a ``serve`` section."""

    def __init__(self, cfg: DictConfig, model, tokenizer, index: ItemIndex, dataset: RecDataset, trie):
        self.cfg = cfg
        self.model, self.tokenizer = model, tokenizer
        self.index, self.dataset, self.trie = index, dataset, trie
        self.beams = int(cfg.beams)
        self.max_history = int(cfg.max_history)
        if self.beams < 1:
            raise ValueError(f"beams must be >= 1, got {self.beams}")
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1 for serving, got {self.max_history}")
        self.engine = str(cfg.engine)  # auto (the item decoder) | hf (generate(), for comparison)
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {' | '.join(ENGINES)}, got {self.engine!r}")
        # Requests may name items by ASIN where the catalogue has them.
        self.by_asin = {m["asin"]: i for i, m in dataset.items.items() if m.get("asin") and i in index}
        self.chat_kwargs = dict(cfg.chat_template_kwargs or {})

    @classmethod
    def load(cls, cfg: DictConfig) -> Recommender:
        from gream_verl.data.dataset import load_dataset
        from gream_verl.index.tokens import load_index
        from gream_verl.index.trie import build_trie
        from gream_verl.infer import common

        for key in ("model", "index", "data"):
            if cfg.get(key) is None:
                raise ValueError(f"gream serve needs --{key}")
        index = load_index(cfg.index)
        dataset = load_dataset(cfg.data)
        model, tokenizer = common.load_model(cfg.model, cfg.device, cfg.dtype)
        trie = build_trie(index, tokenizer, model.config.get_text_config().vocab_size)
        return cls(cfg, model, tokenizer, index, dataset, trie)

    # --- requests -------------------------------------------------------------------------------

    def resolve_history(self, raw: Sequence[str | int]) -> History:
        """Catalogue ids for the request's ids or ASINs, cut to the most recent ``max_history``."""
        if not raw:
            raise HistoryError("history is empty: send at least one item id, oldest first")
        items, unknown = [], []
        for value in raw:
            key = str(value).strip()
            item = key if key in self.index else self.by_asin.get(key)
            if item is None:
                unknown.append(key)
            else:
                items.append(item)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise HistoryError(f"{len(unknown)} unknown item id(s) in history (not in the index "
                               f"{self.cfg.index}): {shown}", unknown)  # fmt: skip
        return History(tuple(items[-self.max_history :]), len(items))

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.beams:
            raise ValueError(f"k={k} is out of range: it must be between 1 and the beam width {self.beams} "
                             "(the server's beams setting)")  # fmt: skip

    def direct_prompt(self, history: Sequence[str]) -> str:
        from gream_verl.infer import common

        example = Example(user="", history=tuple(history), target="")
        messages = common.seqrec_messages(example, self.dataset, self.index, int(self.cfg.prompt_template))
        return common.chat_text(self.tokenizer, messages, self.chat_kwargs)

    def direct_batch(self, histories: list[tuple[str, ...]]) -> list[list[tuple[str, float]]]:
        """Ranked ``(item, log-probability)`` lists, ``beams`` long at most, one per history."""
        from gream_verl.infer.constrained import constrained_beam_search

        prompts = [self.direct_prompt(h) for h in histories]
        ranked = constrained_beam_search(self.model, self.tokenizer, self.trie, prompts, num_beams=self.beams,
                                         engine=self.engine)  # fmt: skip
        return [[(c.item, c.score) for c in row] for row in ranked]

    def reason(self, history: tuple[str, ...], k: int, sampling: dict) -> tuple[str, list[str]]:
        """One sampled chain of thought and the top-``k`` items after it; ``sampling`` overrides
        ``reason.temperature``, ``top_p``, ``max_new_tokens`` and ``seed`` of the config."""
        from gream_verl.infer.reason import reason_for_history

        cfg = OmegaConf.merge(self.cfg, {"reason": {k_: v for k_, v in sampling.items() if v is not None}})
        return reason_for_history(self.model, self.tokenizer, self.trie, self.dataset, self.index, history, k, cfg)

    def describe(self, item: str) -> dict:
        meta = self.dataset.items.get(item, {})
        return {"item": item, "asin": meta.get("asin") or None, "title": self.dataset.title(item),
                "index": self.index.string(item)}  # fmt: skip

    def reason_defaults(self) -> dict:
        r = self.cfg.reason
        return {"temperature": float(r.temperature), "top_p": float(r.top_p),
                "max_new_tokens": int(r.max_new_tokens), "seed": int(r.seed)}  # fmt: skip

    def info(self) -> dict:
        import torch

        return {
            "model": str(self.cfg.model),
            "index": str(self.cfg.index),
            "data": str(self.cfg.data),
            "index_levels": self.index.num_levels,
            "catalogue_size": len(self.index),
            "items_with_asin": len(self.by_asin),
            "device": str(next(self.model.parameters()).device),
            "threads": torch.get_num_threads(),
            "engine": self.engine,
            "beams": self.beams,
            "max_history": self.max_history,
            "prompt_template": int(self.cfg.prompt_template),
            "reason_defaults": self.reason_defaults(),
        }
