"""``gream verl-check`` and ``gream rl build``."""

from __future__ import annotations

import argparse
import sys


def add_commands(sub) -> None:
    check = sub.add_parser("verl-check", help="import verl in a fresh process and show what gream registered")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.set_defaults(func=run_verl_check)

    rl = sub.add_parser("rl", help="SRPO reinforcement learning data for verl")
    cmds = rl.add_subparsers(dest="rl_command", metavar="SUBCOMMAND", required=True)
    build = cmds.add_parser("build", help="leave-one-out data + item index -> verl train.parquet / val.parquet")
    build.add_argument("--data", required=True, help="LC-Rec folder/file or raw Amazon dump")
    build.add_argument("--index", required=True, help="X.index.json (item id -> index tokens)")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--mode", choices=("direct", "reason"), help="direct (index only) or reason (think + answer)")
    build.add_argument("--max-history", type=int, help="most recent items kept in a history (default 20)")
    build.add_argument("--max-train", type=int, help="subsample train rows")
    build.add_argument("--max-val", type=int, help="subsample val rows")
    build.add_argument("--config", help="YAML overriding gream_verl/configs/rl_data.yaml")
    build.add_argument("--json", action="store_true", help="print JSON instead of a table")
    build.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. seed=1")
    build.set_defaults(func=run_rl_build)


def run_verl_check(args: argparse.Namespace):
    from gream_verl.srpo.check import probe, problems
    from gream_verl.tables import emit

    found = probe()
    issues = problems(found)
    found["ok"] = not issues
    found["problems"] = issues
    emit(found, as_json=args.json)
    if issues:
        print("gream verl-check: FAILED: verl does not see gream's SRPO:\n  - " + "\n  - ".join(issues), file=sys.stderr)
        return 1
    return 0


def run_rl_build(args: argparse.Namespace) -> dict:
    from gream_verl.config import load_config
    from gream_verl.data.dataset import load_dataset
    from gream_verl.index.tokens import load_index
    from gream_verl.srpo.rl_data import build_rl_data

    cfg = load_config("rl_data", args.config, args.overrides, mode=args.mode, max_history=args.max_history,
                      max_train=args.max_train, max_val=args.max_val)
    dataset = load_dataset(args.data)
    index = load_index(args.index)
    return build_rl_data(dataset, index, args.out, mode=cfg.mode, max_history=int(cfg.max_history),
                         max_train=cfg.max_train, max_val=cfg.max_val, seed=int(cfg.seed), ability=str(cfg.ability))
