"""``gream sft build`` (SFT datasets for LLaMA-Factory) and ``gream sft train`` (run the SFT)."""

from __future__ import annotations

import argparse


def _build(args: argparse.Namespace) -> dict:
    from gream_verl.tasks.build import build_sft_data, sft_config

    cfg = sft_config(args.config, args.overrides, teacher=args.teacher)
    return build_sft_data(args.data, args.index, args.out, cfg)


def _train(args: argparse.Namespace) -> dict:
    from gream_verl.tasks.sft_train import run_sft

    return run_sft(args.config, list(args.overrides))


def add_commands(subparsers) -> None:
    sft = subparsers.add_parser("sft", help="SFT data (alignment, reasoning, curriculum) and SFT training")
    sft_sub = sft.add_subparsers(dest="sft_command", metavar="SUBCOMMAND", required=True)

    build = sft_sub.add_parser(
        "build",
        help="write gream_align / gream_reason / gream_curriculum datasets plus dataset_info.json",
        description="Build the LLaMA-Factory SFT datasets from training interactions only. The output "
        "folder is a ready dataset_dir; gream_curriculum must be trained with disable_shuffling: true "
        "and num_train_epochs: 1 (its epochs are unrolled). Settings: gream_verl/configs/sft_data.yaml.",
    )
    build.add_argument("--data", required=True, help="dataset folder or file (LC-Rec X.inter.json + X.item.json)")
    build.add_argument("--index", required=True, help="item index file X.index.json")
    build.add_argument("--out", required=True, help="output folder (LLaMA-Factory dataset_dir)")
    build.add_argument("--teacher", choices=("template", "llm"), default=None,
                       help="reasoning teacher: template = offline structural stand-in (default), "
                       "llm = OpenAI-compatible endpoint (teacher.base_url / OPENAI_BASE_URL, "
                       "teacher.model / GREAM_TEACHER_MODEL, OPENAI_API_KEY)")
    build.add_argument("--config", help="YAML merged over the packaged sft_data.yaml")
    build.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. tasks.seqrec.max_per_user=5")
    build.add_argument("--json", action="store_true", help="print JSON")
    build.set_defaults(func=_build)

    train = sft_sub.add_parser("train", help="run LLaMA-Factory SFT from a config YAML")
    train.add_argument("config", help="SFT config YAML")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    train.add_argument("--json", action="store_true", help="print JSON")
    train.set_defaults(func=_train)
