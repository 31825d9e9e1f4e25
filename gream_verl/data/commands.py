"""``gream data stats | convert | enrich``."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMAT_NAMES = ("lcrec", "amazon2018", "amazon2023", "amazon2023-csv", "table")  # = detect.FORMATS


def add_commands(sub) -> None:
    data = sub.add_parser("data", help="datasets: statistics, conversion of Amazon releases and tables, text enrichment")
    cmds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML overriding gream_verl/configs/data.yaml")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. raw.k=10")

    stats = cmds.add_parser("stats", help="users, items, interactions, sparsity, lengths, text coverage, splits")
    stats.add_argument("path", help="dataset folder or file in any format (LC-Rec, Amazon 2014/2018/2023, table)")
    stats.add_argument("--format", choices=["auto", *FORMAT_NAMES], help="input format (default: detected by content)")
    stats.add_argument("--meta", help="item text file: Amazon meta_*.json[l][.gz] or an item table")
    common(stats)
    stats.set_defaults(func=run_stats)

    convert = cmds.add_parser("convert", help="Amazon release or interaction table -> k-cored LC-Rec X.inter.json + X.item.json")
    convert.add_argument("raw", help="folder or file: Amazon 2014/2018/2023 reviews or benchmark CSVs, a CSV/TSV/Parquet "
                         "table (LC-Rec input is rewritten as is)")
    convert.add_argument("out", help="output folder")
    convert.add_argument("--name", help="dataset name for the file names (default: the category or table name)")
    convert.add_argument("--format", choices=["auto", *FORMAT_NAMES], help="input format (default: detected by content)")
    convert.add_argument("--meta", help="item text file, if not beside the reviews: Amazon meta_*.json[l][.gz] or an item table")
    common(convert)
    convert.set_defaults(func=run_convert)

    enrich = cmds.add_parser("enrich", help="teacher-LLM rewrite of item text into an `enriched` field")
    enrich.add_argument("path", help="X.item.json, LC-Rec folder or raw Amazon dump")
    enrich.add_argument("--out", required=True, help="the new X.item.json (originals kept, `enriched` added)")
    enrich.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 ($OPENAI_BASE_URL)")
    enrich.add_argument("--model", help="teacher model name ($GREAM_TEACHER_MODEL)")
    enrich.add_argument("--api-key", help="bearer key ($OPENAI_API_KEY)")
    enrich.add_argument("--cache-dir", help="teacher cache (default: .teacher_cache beside --out)")
    enrich.add_argument("--limit", type=int, help="enrich only the first N items with text (to try it out)")
    enrich.add_argument("--max-concurrency", type=int, help="parallel requests")
    common(enrich)
    enrich.set_defaults(func=run_enrich)


def _config(args, **flags):
    from gream_verl.config import load_config

    return load_config("data", args.config, args.overrides, **flags)


def _load(path: str, cfg, meta: str | None = None):
    """load_dataset with the config's options for the (detected) format."""
    from omegaconf import OmegaConf

    from gream_verl.data.dataset import OPTIONS, detect_format, load_dataset

    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    if fmt not in OPTIONS:
        raise ValueError(f"unknown format {fmt!r}; formats: auto, {', '.join(OPTIONS)}")
    options = {k: v for k, v in {**cfg.raw, **({"meta": meta} if meta else {})}.items() if k in OPTIONS[fmt]}
    table = OmegaConf.to_container(cfg.table, resolve=True)
    table["item_text"] = {f: c for f, c in (table.get("item_text") or {}).items() if c} or None
    return load_dataset(path, min_length=cfg.min_length, format=fmt, repeated_items=cfg.repeated_items,
                        table=table if fmt == "table" else None, **options)


def run_stats(args) -> dict:
    from gream_verl.data.stats import dataset_stats

    cfg = _config(args, format=args.format)
    return dataset_stats(_load(args.path, cfg, args.meta), max_history=cfg.max_history)


def run_convert(args) -> dict:
    from gream_verl.data.lcrec import save_lcrec

    cfg = _config(args, format=args.format)
    dataset = _load(args.raw, cfg, args.meta)
    paths = save_lcrec(dataset, args.out, name=args.name)
    return {
        "name": args.name or dataset.name,
        "users": len(dataset.sequences),
        "items": len(dataset.item_ids),
        "interactions": dataset.num_interactions,
        "inter_file": str(paths["inter"]),
        "item_file": str(paths["item"]),
        "problems": dict(dataset.problems),
    }


def _read_items(path: str, cfg) -> dict[str, dict]:
    """Every field of every item (an LC-Rec item.json is read as is, unknown fields kept)."""
    from gream_verl.data.lcrec import is_lcrec
    from gream_verl.io import read_json

    p = Path(path)
    if p.is_file() and p.name.endswith(".item.json"):
        item_file = p
    elif p.exists() and is_lcrec(p):
        folder = p if p.is_dir() else p.parent
        hits = sorted(folder.glob("*.item.json"))
        if len(hits) != 1:
            raise FileNotFoundError(f"{folder}: expected one *.item.json to enrich, found {len(hits)}")
        item_file = hits[0]
    else:
        return {i: dict(meta) for i, meta in _load(path, cfg).items.items()}
    raw = read_json(item_file)
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ValueError(f"{item_file}: expected an object of item id -> fields")
    return {str(k): v for k, v in raw.items()}


def run_enrich(args) -> dict:
    from gream_verl.data.enrich import enrich_items
    from gream_verl.io import write_json
    from gream_verl.teacher import TeacherClient, TeacherConfig

    flags = {"base_url": args.base_url, "model": args.model, "api_key": args.api_key,
             "cache_dir": args.cache_dir, "max_concurrency": args.max_concurrency}
    cfg = _config(args, enrich={k: v for k, v in flags.items() if v is not None})
    e = cfg.enrich
    out = Path(args.out)
    teacher = TeacherConfig.from_env(
        base_url=e.base_url, model=e.model, api_key=e.api_key,
        cache_dir=e.cache_dir or str(out.parent / ".teacher_cache"),
        max_concurrency=e.max_concurrency, max_retries=e.max_retries, timeout=e.timeout,
        temperature=e.temperature, max_tokens=e.max_tokens, backoff=e.backoff,
    )
    items = _read_items(args.path, cfg)
    client = TeacherClient(teacher)
    enriched, report = enrich_items(
        items, client, fields=list(e.fields), max_words=e.max_words,
        max_field_chars=e.max_field_chars, limit=args.limit,
    )
    write_json(out, enriched, indent=1)
    return {**report, "out": str(out), "teacher": client.url, "model": teacher.model, **client.stats}
