"""Time the srpo advantage estimator against verl's grpo estimators and a per-sample Python loop.

Batch: 256 prompts x 10 rollouts = 2,560 rollouts (the paper's setting), uids as verl makes them
(uuid4 strings, interleaved repeats), index-style rewards (l/H)^0.5 with sparse exact hits.
Goals: srpo at most 1.5x verl's ``grpo`` time, and at least 20x faster than the per-sample loop.

    .venv/bin/python scripts/bench/srpo_bench.py [--prompts 256] [--n 10] [--resp-len 256] [--repeats 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import uuid

import numpy as np
import torch


def make_batch(prompts: int, n: int, resp_len: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    uids = np.array([str(uuid.uuid4()) for _ in range(prompts)], dtype=object).repeat(n)
    prefix = rng.choice(5, size=prompts * n, p=[0.4, 0.25, 0.15, 0.12, 0.08])  # levels matched of H=4
    scores = torch.tensor((prefix / 4.0) ** 0.5, dtype=torch.float32)
    lengths = torch.as_tensor(rng.integers(4, resp_len + 1, size=prompts * n))
    mask = (torch.arange(resp_len)[None, :] < lengths[:, None]).float()
    rewards = torch.zeros(prompts * n, resp_len)
    rewards[torch.arange(prompts * n), lengths - 1] = scores
    return rewards, mask, uids


def per_sample_srpo(token_level_rewards, response_mask, index, k=4, weight=1.0, threshold=1.0, eps=1e-6):
    """The straightforward implementation: Python loops over rollouts, exact binomials."""
    scores = token_level_rewards.sum(-1).tolist()
    groups: dict = {}
    for i, u in enumerate(index):
        groups.setdefault(u, []).append(i)
    out = [0.0] * len(scores)
    for i, u in enumerate(index):
        members = groups[u]
        vals = [scores[j] for j in members]
        g = len(vals)
        mean = sum(vals) / g if g > 1 else 0.0
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (g - 1)) if g > 1 else 1.0
        c = sum(1 for v in vals if v >= threshold - 1e-6)
        kk = min(k, g)
        rho = 1 - math.comb(g - c, kk) / math.comb(g, kk)
        sigma = math.sqrt(rho * (1 - rho))
        bonus = 0.0
        if sigma > 1e-12:
            if scores[i] >= threshold - 1e-6:
                bonus = (1 - rho) / sigma
            else:
                bonus = ((1 - rho) - math.comb(g - c - 1, kk - 1) / math.comb(g - 1, kk - 1)) / sigma
        out[i] = (scores[i] - mean) / (std + eps) + weight * bonus
    return torch.tensor(out).unsqueeze(-1) * response_mask


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--resp-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared machine)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from omegaconf import OmegaConf
    from verl.trainer.ppo import core_algos

    from gream_verl.srpo.advantage import compute_srpo_outcome_advantage
    from gream_verl.tables import format_table

    rewards, mask, uids = make_batch(args.prompts, args.n, args.resp_len)
    algo = OmegaConf.create({"norm_adv_by_std_in_grpo": True, "use_kl_in_reward": False, "srpo": {"k": 4}})
    srpo_adv, _ = compute_srpo_outcome_advantage(rewards, mask, uids, config=algo)
    loop_adv = per_sample_srpo(rewards, mask, uids)
    max_diff = float((srpo_adv - loop_adv).abs().max())

    runs = {
        "srpo (gream, vectorised)": lambda: compute_srpo_outcome_advantage(rewards, mask, uids, config=algo),
        "grpo (verl default)": lambda: core_algos.compute_grpo_outcome_advantage(rewards, mask, uids),
        "grpo_vectorized (verl)": lambda: core_algos.compute_grpo_vectorized_outcome_advantage(rewards, mask, uids),
    }
    seconds = {name: timed(fn, args.repeats) for name, fn in runs.items()}
    seconds["srpo per-sample Python loop"] = timed(lambda: per_sample_srpo(rewards, mask, uids), max(3, args.repeats // 5))
    srpo = seconds["srpo (gream, vectorised)"]
    grpo = seconds["grpo (verl default)"]
    rows = [{"estimator": name, "ms": 1e3 * s, "x_srpo_time": s / srpo} for name, s in seconds.items()]
    result = {
        "rollouts": len(uids),
        "response_length": args.resp_len,
        "torch_threads": args.threads,
        "max_abs_diff_srpo_vs_loop": max_diff,
        "ms": {k: 1e3 * v for k, v in seconds.items()},
        "srpo_over_grpo": srpo / grpo,
        "loop_over_srpo": seconds["srpo per-sample Python loop"] / srpo,
        "goal_srpo_le_1.5x_grpo": srpo / grpo <= 1.5,
        "goal_20x_faster_than_loop": seconds["srpo per-sample Python loop"] / srpo >= 20,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{len(uids)} rollouts ({args.prompts} prompts x {args.n}), response length {args.resp_len}, "
              f"{args.threads} torch thread(s), median of {args.repeats}")
        print(format_table(rows, floatfmt=".3f"))
        print(f"srpo / grpo = {result['srpo_over_grpo']:.3f} (goal <= 1.5); loop / srpo = {result['loop_over_srpo']:.1f} "
              f"(goal >= 20); max |srpo - loop| = {max_diff:.2e}")
    return 0 if max_diff < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
