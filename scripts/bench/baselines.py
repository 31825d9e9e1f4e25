"""MostPop and SASRec on one leave-one-out dataset: a metrics table plus JSON.

    .venv/bin/python scripts/bench/baselines.py --data ../shared/data/Office [--epochs 200]
        [--minutes 5] [--out runs/bench/baselines.json] [--json]

Ratios are against MostPop measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys

from gream_verl.baselines import SASRecConfig, run_baselines
from gream_verl.data import load_dataset
from gream_verl.io import write_json
from gream_verl.report import format_table

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")


def table_rows(results: dict[str, dict]) -> list[dict]:
    base = results["MostPop"]
    rows = []
    for name, m in results.items():
        row = {"model": name, **{k: m[k] for k in METRICS}, "wall_s": round(m["wall_s"], 1)}
        row["recall@10 / MostPop"] = m["recall@10"] / base["recall@10"] if base["recall@10"] else None
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="LC-Rec folder or file (e.g. ../shared/data/Office)")
    p.add_argument("--epochs", type=int, default=200, help="SASRec max epochs (early stopping on valid NDCG@10)")
    p.add_argument("--minutes", type=float, default=5.0, help="SASRec wall-time cap")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--max-len", type=int, default=20, help="history cap")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)

    dataset = load_dataset(args.data)
    cfg = SASRecConfig(hidden=args.hidden, max_len=args.max_len, max_epochs=args.epochs,
                       max_minutes=args.minutes, seed=args.seed, threads=args.threads)
    results = run_baselines(dataset.sequences, cfg)
    if args.out:
        write_json(args.out, {"dataset": dataset.name, "results": results})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{dataset.name}: {results['MostPop']['examples']} test users, full ranking over all items")
        print(format_table(table_rows(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
