"""MostPop and SASRec on one leave-one-out dataset: a metrics table plus JSON.

    .venv/bin/python scripts/bench/baselines.py --data ../shared/data/Office [--epochs 400]
        [--patience 20] [--dropouts 0.2 0.5] [--seeds 42 43 44] [--minutes M]
        [--out runs/bench/baselines.json] [--json]

SASRec is trained to convergence (early stopping on valid NDCG@10 with --patience epochs, dropout
chosen on valid among --dropouts), once per seed; the table gives each seed's test metrics on
all test users, its epochs and time, and the mean over seeds. Ratios are against MostPop
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys

from gream_verl.baselines import SASRecConfig, most_pop, sasrec
from gream_verl.data import load_dataset
from gream_verl.io import write_json
from gream_verl.tables import format_table

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")


def table_rows(results: dict[str, dict]) -> list[dict]:
    base = results["MostPop"]
    rows = []
    for name, m in results.items():
        row = {"model": name, **{k: m[k] for k in METRICS}, "users": m["examples"], "wall_s": round(m["wall_s"], 1)}
        if "dropout" in m:
            row.update(dropout=m["dropout"], best_epoch=m["best_epoch"], epochs=m["epochs"], stopped_by=m["stopped_by"])
        row["recall@10 / MostPop"] = m["recall@10"] / base["recall@10"] if base["recall@10"] else None
        rows.append(row)
    sasrec = [m for name, m in results.items() if name.startswith("SASRec")]
    if len(sasrec) > 1:
        rows.append({"model": f"SASRec mean of {len(sasrec)} seeds",
                     **{k: sum(m[k] for m in sasrec) / len(sasrec) for k in METRICS}})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="LC-Rec folder or file (e.g. ../shared/data/Office)")
    p.add_argument("--epochs", type=int, default=400, help="SASRec max epochs (early stopping on valid NDCG@10)")
    p.add_argument("--patience", type=int, default=20, help="epochs without a better valid NDCG@10 before stopping")
    p.add_argument("--eval-every", type=int, default=1, help="epochs between validations")
    p.add_argument("--dropouts", type=float, nargs="+", default=[0.2, 0.5], help="dropout candidates (chosen on valid)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--minutes", type=float, default=None, help="optional SASRec wall-time cap per seed")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--max-len", type=int, default=20, help="history cap")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)

    dataset = load_dataset(args.data)
    results = {"MostPop": most_pop(dataset.sequences, "test", args.max_len)}
    for seed in args.seeds:
        cfg = SASRecConfig(hidden=args.hidden, max_len=args.max_len, max_epochs=args.epochs, patience=args.patience,
                           eval_every=args.eval_every, dropouts=tuple(args.dropouts), batch_size=args.batch_size,
                           lr=args.lr, max_minutes=args.minutes, seed=seed, threads=args.threads)
        results["SASRec" if len(args.seeds) == 1 else f"SASRec seed {seed}"] = sasrec(dataset.sequences, cfg)
    if args.out:
        write_json(args.out, {"dataset": dataset.name, "results": results})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{dataset.name}: {results['MostPop']['examples']} test users, full ranking over all items")
        rows = table_rows(results)
        columns = list(dict.fromkeys(k for row in rows for k in row))  # every row's keys, first seen first
        print(format_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
