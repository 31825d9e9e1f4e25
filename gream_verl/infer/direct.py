"""Direct sequence recommendation: history -> trie-constrained beam search -> ranked items.

``gream eval direct --model DIR --data PATH --index X.index.json --beams 20 --split test``
ranks the leave-one-out target of every user by beam order and reports Recall@1/5/10 and
NDCG@5/10 (one target per user). Data-parallel with
``torchrun --nproc_per_node N -m gream_verl.infer.direct ...`` (users sharded by rank,
gathered, rank 0 writes).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from omegaconf import DictConfig

from gream_verl.data.dataset import RecDataset
from gream_verl.data.split import Example
from gream_verl.index.tokens import ItemIndex
from gream_verl.infer import common
from gream_verl.infer.cli_args import add_direct_arguments, direct_config_from_args
from gream_verl.infer.constrained import Candidate, constrained_beam_search
from gream_verl.metrics import ranking_metrics

log = logging.getLogger(__name__)


def rank_examples(
    model,
    tokenizer,
    trie,
    examples: Sequence[Example],
    dataset: RecDataset,
    index: ItemIndex,
    beams: int = 20,
    batch_size: int = 16,
    prompt_fn: common.PromptFn | None = None,
    chat_template_kwargs: dict | None = None,
    progress: bool = True,
    engine: str = "auto",
) -> list[list[Candidate]]:
    """Top-``beams`` candidates for each example, best first, in left-padded batches.

    Prompts are batched in order of token length (less padding; a prompt's result does not
    depend on its batch) and returned in the order of ``examples``. ``engine``: ``auto`` (the
    item decoder of :mod:`gream_verl.infer.engine`) or ``hf`` (``generate()``)."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prompt_fn = prompt_fn or common.seqrec_messages
    texts = [common.chat_text(tokenizer, prompt_fn(e, dataset, index), chat_template_kwargs) for e in examples]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out: list[list[Candidate] | None] = [None] * len(texts)
    bar = tqdm(total=len(texts), desc="direct eval", unit="user", disable=not progress)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ranked = constrained_beam_search(model, tokenizer, trie, [texts[i] for i in rows], num_beams=beams,
                                         engine=engine, names=[examples[i].user for i in rows])  # fmt: skip
        for i, row in zip(rows, ranked, strict=True):
            out[i] = row
        bar.update(len(rows))
    bar.close()
    return out


def evaluate_direct(cfg: DictConfig, model=None, tokenizer=None, prompt_fn: common.PromptFn | None = None) -> dict:
    """Run the evaluation described by an ``eval`` config; returns the results dict (on
    every rank; only rank 0 writes files)."""
    from gream_verl.index.trie import build_trie

    for key in ("model", "data", "index"):
        if cfg.get(key) is None and not (key == "model" and model is not None):
            raise ValueError(f"eval direct needs --{key}")
    if int(cfg.beams) < 1:
        raise ValueError(f"beams must be >= 1, got {cfg.beams}")
    timer = common.Timer()
    with common.Shards() as shards:
        dataset, index, examples = common.load_eval_inputs(cfg)
        if model is None:
            model, tokenizer = common.load_model(cfg.model, cfg.device, cfg.dtype)
        trie = build_trie(index, tokenizer, model.config.get_text_config().vocab_size)
        local = shards.take(examples)
        ranked_local = rank_examples(
            model, tokenizer, trie, local, dataset, index,
            beams=int(cfg.beams), batch_size=int(cfg.batch_size), prompt_fn=prompt_fn,
            chat_template_kwargs=dict(cfg.chat_template_kwargs or {}),
            progress=bool(cfg.progress) and shards.is_main, engine=str(cfg.engine),
        )  # fmt: skip
        ranked = shards.gather([[(c.item, c.score) for c in row] for row in ranked_local])
        rankings = [[item for item, _ in row] for row in ranked]
        targets = [e.target for e in examples]
        metrics = ranking_metrics(rankings, targets, list(cfg.recall_ks), list(cfg.ndcg_ks))
        result = {
            "mode": "direct",
            "dataset": dataset.name,
            "num_users": len(examples),
            "metrics": metrics,
            "settings": {
                "model": str(cfg.model), "data": str(cfg.data), "index": str(cfg.index), "split": cfg.split,
                "beams": int(cfg.beams), "batch_size": int(cfg.batch_size), "limit": cfg.limit,
                "max_history": int(cfg.max_history), "prompt_template": int(cfg.prompt_template),
                "world_size": shards.world, "engine": str(cfg.get("engine", "auto")),
                "decoding": "trie-constrained beam search, do_sample=False, length_penalty=0",
            },  # fmt: skip
            "index_collisions": index.num_collisions,
            "trie": {"nodes": trie.num_nodes, "items": trie.num_items, "mb": round(trie.nbytes() / 2**20, 3)},
            "mean_candidates": sum(len(r) for r in rankings) / len(rankings),
            "seconds": timer.seconds(),
        }
        if shards.is_main:
            predictions = None
            if cfg.save_predictions:
                predictions = [
                    {"user": e.user, "history": list(e.history), "target": e.target,
                     "predictions": [i for i, _ in row], "scores": [round(s, 6) for _, s in row]}
                    for e, row in zip(examples, ranked, strict=True)
                ]  # fmt: skip
            out = cfg.out or common.default_out(dataset, "direct", cfg.split)
            common.write_results(result, out, predictions, cfg.save_predictions)
        return result


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m`` / ``torchrun -m gream_verl.infer.direct``."""
    parser = argparse.ArgumentParser(prog="gream_verl.infer.direct", description=__doc__.split("\n\n")[0])
    add_direct_arguments(parser)
    args = parser.parse_args(argv)
    return common.run_entry_point("eval direct", lambda: evaluate_direct(direct_config_from_args(args)), args.json)


if __name__ == "__main__":
    sys.exit(main())
