"""Streaming data loaders on a synthetic Amazon Reviews 2023 file: lines/s and peak memory.

    .venv/bin/python scripts/bench/data_bench.py [--lines 10000000] [--dir /tmp/gream_data_bench]
        [--other-lines N] [--table-lines 2000000] [--baseline-lines 1000000] [--keep] [--reuse] [--json]

Writes ``<dir>/Bench.jsonl`` (2023 review lines of ~420 bytes: rating, title, a 30-word text,
variant asin, parent_asin, user_id, millisecond timestamp, ...; users = lines/5, items =
lines/50, uniform) and a CSV table of the same rows, then measures, each in a fresh process
so its peak resident memory is its own:

  review pass   ``amazon.read_reviews`` with the default 2 review snippets per item (the
                streaming pass: ids coded, snippets kept; no k-core yet)
  ids only      the same with ``reviews_per_item=0`` (on ``--other-lines`` lines if given)
  full load     ``load_dataset`` (review pass + 5-core + new ids + sequences; idem)
  table pass    ``table.read_table`` on the CSV (``--table-lines`` rows)
  line loop     baseline: ``orjson.loads`` + field lookups per line in a Python loop (the
                previous reader's approach), on the first ``--baseline-lines`` lines

Each pass reports wall-clock rows/s and rows per CPU-second (user + system time of all its
threads). On a machine shared with other jobs the wall clock measures the other jobs too; the
CPU time does not, and rows/CPU-s is a lower bound of rows/s on 2 idle cores (equal when one
thread does all the work, up to 2x higher when two do). Ratios are against the goal (500k
lines/s on 2 cores) and against the line-loop baseline, both per CPU-second and measured in
the same run. The generated files are deleted unless ``--keep``; ``--reuse`` keeps an
existing ``Bench.jsonl`` instead of writing it again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GOAL = 500_000
WORDS = "great pen works well love it quality cheap broke after a week would buy again fine".split()


def generate(path: Path, lines: int, seed: int = 0, block: int = 500_000) -> None:
    """2023-format review lines, written block by block (bounded memory)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_users, n_items = max(lines // 5, 1), max(lines // 50, 1)
    words = np.array(WORDS, dtype=object)
    with open(path, "w") as f:
        for start in range(0, lines, block):
            n = min(block, lines - start)
            users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
            ratings = rng.integers(1, 6, n)
            text = words[rng.integers(0, len(words), (n, 30))]
            rows = [
                f'{{"rating": {r}.0, "title": "{t[0]} {t[1]} {t[2]}", "text": "{" ".join(t)}", "images": [], '
                f'"asin": "B{i:09d}{j % 3}", "parent_asin": "B{i:09d}", "user_id": "AE{u:026d}", '
                f'"timestamp": {1500000000000 + (start + j) * 1000}, "helpful_vote": 0, "verified_purchase": true}}\n'
                for j, (u, i, r, t) in enumerate(zip(users.tolist(), items.tolist(), ratings.tolist(), text, strict=True))
            ]
            f.writelines(rows)


def write_table(jsonl: Path, csv_path: Path, lines: int) -> None:
    """The first ``lines`` rows as a ``user_id,item_id,timestamp`` CSV (via pyarrow, fast)."""
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json

    with open(jsonl, "rb") as f:
        head = b"".join(f.readline() for _ in range(lines))
    import io

    table = pa_json.read_json(io.BytesIO(head)).select(["user_id", "parent_asin", "timestamp"])
    pa_csv.write_csv(table.rename_columns(["user_id", "item_id", "timestamp"]), csv_path)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that over
    from the parent through fork and exec, so every child would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(mode: str, path: str, lines: int) -> dict:
    """Run one measurement in this process; returns rows, seconds, peak RSS."""
    import resource

    from gream_verl.data.amazon import read_reviews

    def cpu_seconds() -> float:  # user + system time of this process, all its threads
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    t0, cpu0 = time.perf_counter(), cpu_seconds()
    if mode == "review_pass":
        from gream_verl.data.amazon2023 import FIELDS_2023

        log_, _ = read_reviews(Path(path), FIELDS_2023, reviews_per_item=2)
        rows = len(log_)
    elif mode == "ids_only":
        from gream_verl.data.amazon2023 import FIELDS_2023

        log_, _ = read_reviews(Path(path), FIELDS_2023, reviews_per_item=0)
        rows = len(log_)
    elif mode == "full_load":
        from gream_verl.data.dataset import load_dataset

        ds = load_dataset(path, k=5, min_length=0)
        rows = lines
        extra = {"users_after_5core": len(ds.sequences), "items_after_5core": len(ds.items)}
    elif mode == "table_pass":
        from gream_verl.data.raw import InteractionLog
        from gream_verl.data.table import TableColumns, read_table

        log_ = InteractionLog()
        read_table(Path(path), TableColumns(), log_)
        rows = len(log_)
    elif mode == "line_loop":
        import orjson

        users, items, times = [], [], []
        with open(path, "rb") as f:
            for n, line in enumerate(f):
                if n >= lines:
                    break
                r = orjson.loads(line)
                users.append(r.get("user_id"))
                items.append(r.get("parent_asin"))
                times.append(r.get("timestamp"))
        rows = len(users)
    else:
        raise ValueError(mode)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    peak_mb = peak_rss_mb()
    return {"mode": mode, "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "cpu_seconds": round(cpu, 2), "rows_per_cpu_s": round(rows / cpu),
            "peak_rss_mb": round(peak_mb), **(extra if mode == "full_load" else {})}


def run_child(mode: str, path: Path, lines: int) -> dict:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, __file__, "--measure", mode, str(path), str(lines)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=10_000_000)
    p.add_argument("--table-lines", type=int, default=2_000_000)
    p.add_argument("--baseline-lines", type=int, default=1_000_000)
    p.add_argument("--dir", default="/tmp/gream_data_bench")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--reuse", action="store_true", help="use an existing <dir>/Bench.jsonl as it is")
    p.add_argument("--other-lines", type=int, default=0,
                   help="lines for ids_only and full_load (default: --lines); the review pass always reads --lines")
    p.add_argument("--skip", nargs="*", default=[], help="modes to skip, e.g. full_load")
    p.add_argument("--json", action="store_true")
    p.add_argument("--measure", nargs=3, metavar=("MODE", "PATH", "LINES"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], int(args.measure[2]))))
        return 0

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    jsonl, table = folder / "Bench.jsonl", folder / "bench_table.csv"
    t0 = time.perf_counter()
    if not (args.reuse and jsonl.exists()):
        generate(jsonl, args.lines)
    write_table(jsonl, table, min(args.table_lines, args.lines))
    size = jsonl.stat().st_size
    print(f"{args.lines:,} lines ({size / 1e9:.2f} GB, {size / args.lines:.0f} B/line) ready "
          f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    other = args.other_lines or args.lines
    if other < args.lines:  # a smaller file of the same kind (its own user and item pools)
        generate(folder / "Bench_head.jsonl", other, seed=1)
    head = folder / "Bench_head.jsonl" if other < args.lines else jsonl
    plan = [("review_pass", jsonl, args.lines), ("ids_only", head, other), ("full_load", head, other),
            ("table_pass", table, min(args.table_lines, args.lines)), ("line_loop", jsonl, args.baseline_lines)]
    results = []
    for mode, path, lines in plan:
        if mode in args.skip:
            continue
        r = run_child(mode, path, lines)
        results.append(r)
        print(f"  {mode}: {r['rows_per_s']:,} rows/s, {r['rows_per_cpu_s']:,} rows/CPU-s, peak {r['peak_rss_mb']} MB",
              file=sys.stderr)
    baseline = next((r["rows_per_cpu_s"] for r in results if r["mode"] == "line_loop"), None)
    for r in results:
        r["vs_goal"] = round(r["rows_per_cpu_s"] / GOAL, 2)
        r["vs_line_loop"] = round(r["rows_per_cpu_s"] / baseline, 2) if baseline else None
    report = {"lines": args.lines, "bytes_per_line": round(size / args.lines), "cpus": os.cpu_count(),
              "load_avg_1min": round(os.getloadavg()[0], 1), "results": results}
    if not args.keep:
        for path in (jsonl, table, folder / "Bench_head.jsonl"):
            path.unlink(missing_ok=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("| pass | rows | seconds | rows/s | vs goal (500k/s) | vs line loop | peak RSS MB |\n|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['mode']} | {r['rows']:,} | {r['seconds']} | {r['rows_per_s']:,} | {r['vs_goal']} | "
                  f"{r['vs_line_loop']} | {r['peak_rss_mb']} |")
        print(f"\n{report['cpus']} CPUs, 1-min load average at the end {report['load_avg_1min']}, "
              f"{report['bytes_per_line']} B/line")
    return 0


if __name__ == "__main__":
    sys.exit(main())
