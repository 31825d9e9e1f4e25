"""Time the index reward on hostile rollouts: long loops of think/answer tags cut at the maximum
response length, where the old backtracking regex took 36 s on 26 KB.

Goal: every response up to 64 KB scores in under 10 ms. The ratio column compares each case with a
plain ``str.count`` pass over the same text, measured in the same run.

    .venv/bin/python scripts/bench/reward_bench.py [--kb 64] [--repeats 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit

TARGET = "<a_1><b_2><c_3><d_4>"


def hostile(size: int) -> dict[str, str]:
    unit = "<think>hmm</think>\n<answer><a_1><b_2><c_3><d_4></answer>\n"
    good = "<think>" + "the user buys pens. " * (size // 20) + "</think>\n<answer>" + TARGET + "</answer>"
    return {
        "well-formed, long think": good[:size],
        "repeated blocks, cut inside <think>": (unit * (size // len(unit) + 1) + "<think>hm")[-size:],
        "</think><answer> repeated": ("</think><answer>" * size)[:size],
        "<think> repeated": ("<think>" * size)[:size],
        "index tokens only (over-long)": ("<a_1>" * size)[: size - size % 5],
        "index tokens then garbage": ("<a_1>" * size)[: size - 1] + "x",
        "digits without a closing >": "<a_" + "1" * (size - 3),
    }


def timed(fn, repeats: int) -> float:
    """Median seconds of one call (after a warm-up call)."""
    fn()
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", type=int, default=64, help="response size in KB")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from gream_verl.srpo.reward import index_reward
    from gream_verl.tables import format_table

    rows = []
    for name, text in hostile(args.kb * 1024).items():
        for mode in ("direct", "reason"):
            seconds = timed(lambda text=text, mode=mode: index_reward(text, TARGET, mode=mode), args.repeats)
            scan = timed(lambda text=text: text.count("<"), args.repeats)
            rows.append({"response": name, "mode": mode, "bytes": len(text), "ms": 1e3 * seconds,
                         "x_str_count": seconds / scan})
    worst = max(r["ms"] for r in rows)
    result = {"rows": rows, "worst_ms": worst, "goal_under_10_ms": worst < 10.0}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"index_reward on {args.kb} KB responses, median of {args.repeats}")
        print(format_table(rows, floatfmt=".3f"))
        print(f"worst {worst:.3f} ms (goal < 10 ms)")
    return 0 if result["goal_under_10_ms"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
