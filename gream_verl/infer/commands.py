"""``gream eval direct|reason`` and ``gream recommend``."""

from __future__ import annotations

import argparse


def _eval_direct(args: argparse.Namespace) -> dict:
    from gream_verl.infer.cli_args import direct_config_from_args
    from gream_verl.infer.direct import evaluate_direct

    return evaluate_direct(direct_config_from_args(args))


def _eval_reason(args: argparse.Namespace) -> dict:
    from gream_verl.infer.cli_args import reason_config_from_args
    from gream_verl.infer.reason import evaluate_reason

    return evaluate_reason(reason_config_from_args(args))


def parse_history(text: str) -> list[str]:
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        raise ValueError("--history is empty; give item ids separated by commas, e.g. --history 12,40,7")
    return items


def recommend(args: argparse.Namespace) -> dict:
    """Top-k items for one history, with titles (and the reasoning text in reason mode)."""
    from gream_verl.config import load_config
    from gream_verl.data.dataset import load_dataset
    from gream_verl.data.split import Example
    from gream_verl.index.tokens import load_index
    from gream_verl.index.trie import build_trie
    from gream_verl.infer import common
    from gream_verl.infer.constrained import constrained_beam_search
    from gream_verl.infer.reason import reason_for_history

    if args.k < 1:
        raise ValueError(f"-k must be >= 1, got {args.k}")
    cfg = load_config("eval", args.config, args.overrides, model=args.model, data=args.data, index=args.index,
                      device=args.device)  # fmt: skip
    index = load_index(cfg.index)
    dataset = load_dataset(cfg.data)
    history = parse_history(args.history)
    unknown = [i for i in history if i not in index]
    if unknown:
        raise ValueError(f"unknown item ids (not in {cfg.index}): {', '.join(unknown)}")
    history = history[-int(cfg.max_history) :] if int(cfg.max_history) > 0 else history
    model, tokenizer = common.load_model(cfg.model, cfg.device, cfg.dtype)
    trie = build_trie(index, tokenizer, model.config.get_text_config().vocab_size)
    result: dict = {"mode": args.mode, "history": [{"item": i, "title": dataset.title(i)} for i in history]}
    if args.mode == "direct":
        example = Example(user="", history=tuple(history), target="")
        text = common.chat_text(tokenizer, common.seqrec_messages(example, dataset, index, int(cfg.prompt_template)),
                                dict(cfg.chat_template_kwargs or {}))  # fmt: skip
        (row,) = constrained_beam_search(model, tokenizer, trie, [text], num_beams=args.k,
                                         engine=str(cfg.engine))  # fmt: skip
        items, scores = [c.item for c in row], [c.score for c in row]
    else:
        reasoning, items = reason_for_history(model, tokenizer, trie, dataset, index, history, args.k, cfg)
        scores = [None] * len(items)
        result["reasoning"] = reasoning
    result["recommendations"] = [
        {"rank": r, "item": i, "index": index.string(i), "title": dataset.title(i), "score": s}
        for r, (i, s) in enumerate(zip(items[: args.k], scores, strict=False), 1)
    ]
    if not args.json:
        from gream_verl.tables import format_table

        if "reasoning" in result:
            print(result["reasoning"], end="\n\n")
        print(format_table(result["recommendations"]))
        return 0
    return result


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML merged over gream_verl/configs/eval.yaml")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. reason.temperature=1.0")


def add_commands(subparsers) -> None:
    from gream_verl.infer.cli_args import add_direct_arguments, add_reason_arguments

    ev = subparsers.add_parser("eval", help="evaluate a model: direct (Recall/NDCG) or reasoning (Pass@k)")
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="MODE", required=True)
    direct = ev_sub.add_parser("direct", help="trie-constrained beam search; Recall@1/5/10, NDCG@5/10")
    add_direct_arguments(direct)
    direct.set_defaults(func=_eval_direct)

    reason = ev_sub.add_parser("reason", help="sample chains of thought, constrained answer; Pass@1/5/10")
    add_reason_arguments(reason)
    reason.set_defaults(func=_eval_reason)

    rec = subparsers.add_parser("recommend", help="top-k items for one history, with titles")
    rec.add_argument("--model", required=True, help="HF model folder")
    rec.add_argument("--index", required=True, help="X.index.json")
    rec.add_argument("--data", required=True, help="LC-Rec dataset (for titles)")
    rec.add_argument("--history", required=True, help="item ids, oldest first, comma-separated")
    rec.add_argument("--mode", choices=["direct", "reason"], default="direct")
    rec.add_argument("-k", type=int, default=10, help="number of items")
    rec.add_argument("--device", default=None)
    _add_common(rec)
    rec.set_defaults(func=recommend)
