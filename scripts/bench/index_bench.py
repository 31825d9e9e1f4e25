"""Benchmark: build a 4 x 256 RQ-KMeans item index for Office, 10k and 1M synthetic items.

Each row runs in its own subprocess so its peak RSS is its own. The baseline, measured in the
same run, is scikit-learn ``KMeans`` (Lloyd, k-means++, one init, same iteration cap) on every
level's residual, for rows up to ``--baseline-max-items``; ``ratio`` = our seconds / baseline
seconds (< 1 is faster) and ``mse_ratio`` = our final residual MSE / the baseline's (quality).
Children run with ``OMP_WAIT_POLICY=PASSIVE``, and sklearn with one BLAS thread inside its own
OpenMP loop, so neither method thrashes on a busy machine.
Goal: 1M items x 384 dims x 4 levels x 256 codes in under 10 minutes on 2 CPU cores.

    # Office embeddings come from the cache of a real build, else random 2420 x 384:
    .venv/bin/gream index build --data ../shared/data/Office --out runs/index/Office.index.json
    .venv/bin/python scripts/bench/index_bench.py                    # all rows, up to 1M
    .venv/bin/python scripts/bench/index_bench.py --max-items 10000  # skip the 1M row
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OFFICE_EMB = REPO / "runs" / "index" / "Office.all-MiniLM-L6-v2.title+description.mean.emb.npy"


def load_data(spec: dict):
    import numpy as np

    if spec.get("embeddings") and Path(spec["embeddings"]).is_file():
        return np.load(spec["embeddings"]).astype(np.float32), "cached embeddings"
    rng = np.random.default_rng(0)
    return rng.standard_normal((spec["items"], spec["dim"]), dtype=np.float32), "random"


def run_child(spec: dict) -> dict:
    """One measurement inside this (child) process; prints nothing but the JSON result."""
    import numpy as np

    X, source = load_data(spec)
    started = time.perf_counter()
    if spec["method"] == "sklearn":
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        residual, codes = X.copy(), []
        for level in range(spec["levels"]):
            with threadpool_limits(1, user_api="blas"):  # its OpenMP uses the cores; nested BLAS threads thrash
                km = KMeans(spec["codebook_size"], n_init=1, max_iter=spec["iters"], random_state=level).fit(residual)
            codes.append(km.labels_)
            residual -= km.cluster_centers_[km.labels_].astype(np.float32)
        codes = np.stack(codes, 1)
        mse = float(np.mean(np.sum(residual.astype(np.float64) ** 2, axis=1)))
    else:
        from gream_verl.index.rqkmeans import fit_rq_kmeans

        result = fit_rq_kmeans(X, spec["levels"], spec["codebook_size"], balanced=spec["balanced"],
                               iters=spec["iters"], progress=False)
        codes, mse = result.codes, result.residual_mse[-1]
    seconds = time.perf_counter() - started
    unique = len(np.unique(codes, axis=0))
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "unique_frac": unique / len(codes),
        "mse": mse,
        "data": source,
    }


def measure(spec: dict) -> dict:
    # idle OpenMP workers sleep instead of spinning: on a shared 2-core machine spinning threads
    # steal the cores the other workers need (applies to both methods alike)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark row {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-items", type=int, default=1_000_000, help="skip synthetic rows larger than this")
    parser.add_argument("--baseline-max-items", type=int, default=10_000, help="run sklearn only up to this size")
    parser.add_argument("--balanced-max-items", type=int, default=10_000, help="balanced rows only up to this size")
    parser.add_argument("--office-embeddings", default=str(DEFAULT_OFFICE_EMB),
                        help="Office item embeddings .npy (random 2420 x 384 if missing)")
    parser.add_argument("--iters", type=int, default=25, help="Lloyd iterations per level (both methods)")
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return

    from tqdm.auto import tqdm

    from gream_verl.io import write_json
    from gream_verl.tables import format_table

    common = {"levels": args.levels, "codebook_size": args.codebook_size, "iters": args.iters, "dim": 384}
    cases = [("office", 2420, args.office_embeddings), ("synthetic 10k", 10_000, None),
             ("synthetic 1M", 1_000_000, None)]
    plan = []
    for name, items, emb in cases:
        if items > args.max_items and name != "office":
            continue
        base = {**common, "items": items, "embeddings": emb}
        plan.append((name, {**base, "method": "ours", "balanced": False},
                     {**base, "method": "sklearn"} if items <= args.baseline_max_items else None))
        if items <= args.balanced_max_items:
            plan.append((name, {**base, "method": "ours", "balanced": True}, None))
    rows = []
    for name, spec, baseline_spec in tqdm(plan, desc="index benchmark"):
        ours = measure(spec)
        row = {
            "case": name, "items": spec["items"], "levels x K": f"{args.levels} x {args.codebook_size}",
            "balanced": spec["balanced"], "data": ours["data"], "seconds": round(ours["seconds"], 2),
            "peak_rss_mb": round(ours["peak_rss_mb"]), "unique_frac": round(ours["unique_frac"], 4),
            "baseline": None, "baseline_s": None, "baseline_rss_mb": None, "ratio": None, "mse_ratio": None,
        }
        if baseline_spec is not None:
            base = measure(baseline_spec)
            row.update(baseline="sklearn KMeans/level", baseline_s=round(base["seconds"], 2),
                       baseline_rss_mb=round(base["peak_rss_mb"]), ratio=round(ours["seconds"] / base["seconds"], 3),
                       mse_ratio=round(ours["mse"] / base["mse"], 4))
        rows.append(row)
        tqdm.write(json.dumps(row))
    print(format_table(rows))
    goal = [r for r in rows if r["items"] >= 1_000_000 and not r["balanced"]]
    if goal:
        verdict = "meets" if goal[0]["seconds"] < 600 else "MISSES"
        print(f"\n1M items: {goal[0]['seconds']:.0f} s ({verdict} the < 600 s goal), peak RSS {goal[0]['peak_rss_mb']} MB")
    if args.json:
        write_json(args.json, {"rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
