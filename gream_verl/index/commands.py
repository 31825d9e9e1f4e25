"""``gream index build | stats``."""

from __future__ import annotations

from pathlib import Path


def add_commands(sub) -> None:
    index = sub.add_parser("index", help="semantic item index: embeddings, RQ-KMeans, collision level")
    cmds = index.add_subparsers(dest="index_command", metavar="SUBCOMMAND", required=True)

    build = cmds.add_parser("build", help="dataset -> unique RQ-KMeans item index (LC-Rec X.index.json)")
    build.add_argument("--data", required=True, help="LC-Rec folder/file (or raw Amazon dump) with item text")
    build.add_argument("--out", required=True, help="output X.index.json; the report goes to X.index.report.json")
    build.add_argument("--config", help="YAML overriding gream_verl/configs/index.yaml")
    build.add_argument("--embeddings", help="precomputed [items, dim] .npy in item order (skips the model)")
    build.add_argument("--reference", help="an existing X.index.json to compare collisions with")
    build.add_argument("--json", action="store_true", help="print JSON instead of a table")
    build.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. rqkmeans.levels=3 embedding.fields=[title]")
    build.set_defaults(func=run_build)

    stats = cmds.add_parser("stats", help="items, levels, vocabulary and collisions of an X.index.json")
    stats.add_argument("path", help="X.index.json")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=run_stats)


def report_path(out: Path) -> Path:
    """``X.index.json`` -> ``X.index.report.json`` (beside it)."""
    name = out.name[: -len(".json")] if out.name.endswith(".json") else out.name
    return out.with_name(f"{name}.report.json")


def run_build(args) -> dict:
    from gream_verl.config import load_config
    from gream_verl.data.dataset import load_dataset
    from gream_verl.index.build import build_index, index_collision_stats
    from gream_verl.index.tokens import load_index, save_index
    from gream_verl.io import write_json

    overrides = list(args.overrides or [])
    if args.embeddings:
        overrides.append(f"embedding.path={args.embeddings}")
    cfg = load_config("index", args.config, overrides)
    out = Path(args.out)
    dataset = load_dataset(args.data)
    index, report = build_index(dataset, cfg, out_dir=out.parent)
    if args.reference:
        ref = index_collision_stats(load_index(args.reference))
        report["reference"] = {"path": str(args.reference), **ref}
    save_index(index, out)
    report["index_path"] = str(out)
    report["report_path"] = str(report_path(out))
    write_json(report_path(out), report)
    if not args.json:
        report.pop("config")
    return report


def run_stats(args) -> dict:
    from gream_verl.index.build import index_collision_stats
    from gream_verl.index.tokens import load_index

    index = load_index(args.path)
    lengths = sorted({len(t) for t in index.tokens.values()})
    return {
        "path": str(args.path),
        "items": len(index),
        "levels": index.num_levels,
        "index_lengths": lengths,
        "vocabulary": len(index.vocabulary()),
        **index_collision_stats(index),
    }
