"""``gream model tiny`` (a tiny CPU Qwen3) and ``gream vocab extend`` (index tokens into a model)."""

from __future__ import annotations

import argparse


def _tiny(args: argparse.Namespace) -> dict:
    from gream_verl.model.tiny import save_tiny_model, texts_from_data

    texts = texts_from_data(args.texts_from) if args.texts_from else None
    try:
        return save_tiny_model(
            args.out,
            texts,
            vocab_size=args.vocab_size,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            heads=args.heads,
            kv_heads=args.kv_heads,
            intermediate=args.intermediate,
            tie_word_embeddings=not args.untied,
            pad_vocab_to_multiple_of=args.pad_vocab_to_multiple_of,
            seed=args.seed,
        )
    except FileExistsError as e:
        raise ValueError(str(e)) from None


def _extend(args: argparse.Namespace) -> dict:
    from gream_verl.model.vocab import extend_checkpoint

    try:
        return extend_checkpoint(
            args.model,
            args.index,
            args.out,
            seed=args.seed,
            noise_scale=args.noise_scale,
            pad_to_multiple_of=args.pad_vocab_to_multiple_of,
        )
    except FileExistsError as e:
        raise ValueError(str(e)) from None


def add_commands(subparsers) -> None:
    model = subparsers.add_parser("model", help="tiny CPU Qwen3 for tests and smoke runs")
    model_sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    tiny = model_sub.add_parser(
        "tiny", help="train a small BPE tokenizer and build a random tiny Qwen3 (padded embedding)"
    )
    tiny.add_argument("--out", required=True, help="output folder (absent or empty)")
    tiny.add_argument("--texts-from", help="LC-Rec dataset folder or .item.json whose item texts train the tokenizer")
    tiny.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (at most)")
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--num-layers", type=int, default=2)
    tiny.add_argument("--heads", type=int, default=4)
    tiny.add_argument("--kv-heads", type=int, default=2)
    tiny.add_argument("--intermediate", type=int, default=128)
    tiny.add_argument("--untied", action="store_true", help="separate lm_head (default: tied, as Qwen3-4B)")
    tiny.add_argument("--pad-vocab-to-multiple-of", type=int, default=64)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--json", action="store_true", help="print JSON")
    tiny.set_defaults(func=_tiny)

    vocab = subparsers.add_parser("vocab", help="vocabulary extension with item index tokens")
    vocab_sub = vocab.add_subparsers(dest="vocab_command", metavar="SUBCOMMAND", required=True)
    extend = vocab_sub.add_parser(
        "extend", help="add every index token as one ordinary token, resize and initialise embeddings"
    )
    extend.add_argument("--model", required=True, help="Hugging Face model folder (e.g. Qwen3-4B-Instruct-2507)")
    extend.add_argument("--index", required=True, help="item index file X.index.json")
    extend.add_argument("--out", required=True, help="output folder for the extended model (absent or empty)")
    extend.add_argument("--seed", type=int, default=0, help="seed of the noise added to new rows")
    extend.add_argument(
        "--noise-scale", type=float, default=0.1, help="noise std as a fraction of the old rows' std"
    )
    extend.add_argument(
        "--pad-vocab-to-multiple-of", type=int, default=64, help="row multiple when the matrix must grow"
    )
    extend.add_argument("--json", action="store_true", help="print JSON")
    extend.set_defaults(func=_extend)
