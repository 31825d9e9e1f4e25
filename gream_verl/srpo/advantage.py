"""Bonus-calibrated group advantage (GREAM paper, eq. 15-21). Pure torch/numpy, no verl import.

For a group of ``G`` rollouts of one prompt with dense rewards ``r_i`` and exact-hit flags
``v_i`` (``c`` = number of exact hits):

* GRPO part: ``(r_i - mean(r)) / (std(r) + eps)`` (unbiased std, as verl's ``grpo``; without the
  division when ``norm_adv_by_std_in_grpo`` is False; a single-member group keeps ``r_i``, as
  verl's ``grpo`` does).
* pass@k bonus of the group (the analytic pass@k advantage): ``rho = 1 - C(G-c, k) / C(G, k)``
  is the chance that ``k`` rollouts drawn without replacement contain an exact hit,
  ``sigma = sqrt(rho (1 - rho))``; a hit gets ``(1 - rho) / sigma``, a miss
  ``((1 - rho) - delta) / sigma`` with ``delta = C(G-c-1, k-1) / C(G-1, k-1)``.
* ``A_i = grpo_i + bonus_weight * bonus_i``.

Edge cases, all finite: ``k`` larger than the group is clamped to ``G`` (pass@G) before anything
is allocated, so ``k = 10**9`` costs what ``k = G`` costs; ``sigma = 0`` (no hit, or every
``k``-subset holds a hit, or a single-member group) gives bonus 0. Binomials are products of ``k``
ratios ``(a - j) / (b - j)`` in float64 (exact integers up to rounding), vectorised over groups
(``[groups, largest group]`` arrays), so large groups never overflow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger("gream_verl.srpo")
DEFAULT_K = 4  # the authors' reference value


@dataclass(frozen=True)
class SrpoConfig:
    """``+algorithm.srpo.*`` settings (see :func:`srpo_config`)."""

    k: int = DEFAULT_K  # pass@k of the bonus
    bonus_weight: float = 1.0  # weight of the pass@k bonus added to the GRPO advantage
    threshold: float = 1.0  # a rollout is a hit (v_i = 1) when its reward >= threshold
    epsilon: float = 1e-6  # GRPO std guard, as verl: > 0, or a flat group divides 0 by 0

    def __post_init__(self):
        try:
            k_ok = float(self.k).is_integer() and self.k >= 1
        except (TypeError, ValueError):
            k_ok = False
        if not k_ok:
            raise ValueError(f"algorithm.srpo.k must be an integer >= 1, got {self.k!r}")
        if not np.isfinite(self.bonus_weight) or not np.isfinite(self.threshold):
            raise ValueError(f"algorithm.srpo.bonus_weight / threshold must be finite, got {self}")
        if not (np.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(
                f"algorithm.srpo.epsilon must be a finite number > 0 (the GRPO std guard; 0 gives NaN on a "
                f"group with equal rewards, a negative one flips signs), got {self.epsilon!r}"
            )


def group_ids(index) -> tuple[np.ndarray, int]:
    """Map verl's ``uid`` array (any hashable values) to dense ``0..n_groups-1`` ids (int64 numpy)."""
    values = np.asarray(index)
    if values.ndim != 1:
        raise ValueError(f"group index must be one-dimensional, got shape {values.shape}")
    import pandas as pd

    codes, uniques = pd.factorize(values)  # hashing: ~6x faster than np.unique's sort on uuid strings
    if (codes < 0).any():
        raise ValueError("group index contains missing values (None/NaN)")
    return codes.astype(np.int64, copy=False), len(uniques)


def _group_sum(values: np.ndarray, ids: np.ndarray, num_groups: int) -> np.ndarray:
    """Per-group sums (float64): a scatter-add."""
    return np.bincount(ids, weights=values, minlength=num_groups)


def comb_ratio(a: np.ndarray, b: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``C(a, k) / C(b, k)`` for integer arrays ``[groups]`` with ``0 <= k <= b`` and ``a <= b``, as
    the product ``prod_{j<k} (a - j) / (b - j)`` (exact up to float64 rounding; 0 when ``a < k``).
    ``k = 0`` gives 1. Works on ``[groups, max(k)]`` arrays: clamp ``k`` to the group size first."""
    k = np.asarray(k, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if (k > b).any():
        raise ValueError(f"comb_ratio needs k <= b, got k up to {k.max():g} for b = {b[k > b].min():g}")
    width = int(k.max()) if k.size else 0
    j = np.arange(max(width, 1), dtype=np.float64)[None, :]
    a = np.asarray(a, dtype=np.float64)[:, None]
    b = b[:, None]
    active = j < k[:, None]
    den = np.where(active, b - j, 1.0)
    num = np.where(active, np.maximum(a - j, 0.0), 1.0)
    return np.prod(num / den, axis=1)


def passk_bonus_terms(size, hits, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: ``rho``, ``sigma`` and ``delta`` (float64) from group sizes and hit counts."""
    size = np.asarray(size, dtype=np.float64)
    hits = np.asarray(hits, dtype=np.float64)
    k_eff = np.minimum(size, float(k))  # pass@G when k > G: nothing below is wider than the largest group
    rho = np.clip(1.0 - comb_ratio(size - hits, size, k_eff), 0.0, 1.0)
    sigma = np.sqrt(rho * (1.0 - rho))
    delta = comb_ratio(np.maximum(size - hits - 1, 0), np.maximum(size - 1, 0), np.maximum(k_eff - 1, 0))
    return rho, sigma, delta


def _passk_bonus(hit: np.ndarray, ids: np.ndarray, num_groups: int, k: int, size: np.ndarray) -> np.ndarray:
    rho, sigma, delta = passk_bonus_terms(size, _group_sum(hit, ids, num_groups), k)
    ok = sigma > 1e-12
    safe_sigma = np.where(ok, sigma, 1.0)
    pos = np.where(ok, (1.0 - rho) / safe_sigma, 0.0)
    neg = np.where(ok, ((1.0 - rho) - delta) / safe_sigma, 0.0)
    return np.where(hit > 0, pos[ids], neg[ids])


def _grpo(x: np.ndarray, ids: np.ndarray, num_groups: int, norm_by_std: bool, epsilon: float, size: np.ndarray) -> np.ndarray:
    mean = _group_sum(x, ids, num_groups) / size
    centred = x - mean[ids]
    std = np.sqrt(_group_sum(centred * centred, ids, num_groups) / np.maximum(size - 1, 1))
    single = size < 2  # as verl's grpo: mean 0, std 1
    mean = np.where(single, 0.0, mean)
    std = np.where(single, 1.0, std)
    centred = x - mean[ids]
    return centred / (std[ids] + epsilon) if norm_by_std else centred


def _as_ids(ids, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
    ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    return ids.astype(np.int64, copy=False), np.bincount(ids, minlength=num_groups).astype(np.float64)


def passk_bonus(hit, ids, num_groups: int, k: int) -> torch.Tensor:
    """Per-rollout pass@k bonus (float64 tensor); 0 wherever the group's sigma is 0."""
    ids, size = _as_ids(ids, num_groups)
    hit = np.asarray(hit.cpu() if isinstance(hit, torch.Tensor) else hit, dtype=np.float64)
    return torch.from_numpy(_passk_bonus(hit, ids, num_groups, k, size))


def grpo_scalar(scores, ids, num_groups: int, norm_by_std: bool = True, epsilon: float = 1e-6) -> torch.Tensor:
    """verl-``grpo``-equivalent normalised advantage per rollout (float64 tensor)."""
    ids, size = _as_ids(ids, num_groups)
    x = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    return torch.from_numpy(_grpo(x, ids, num_groups, norm_by_std, epsilon, size))


def srpo_scalar(
    scores: torch.Tensor,
    index,
    hit: torch.Tensor | None = None,
    cfg: SrpoConfig = SrpoConfig(),
    norm_by_std: bool = True,
) -> torch.Tensor:
    """One SRPO advantage per rollout: GRPO part plus ``bonus_weight`` times the pass@k bonus.

    ``hit`` defaults to ``scores >= cfg.threshold`` (with 1e-6 slack for float rounding). Group
    maths runs in float64 numpy on the CPU (a few hundred groups: per-op overhead dominates, and
    verl computes advantages on the driver); the result has ``scores``' device and float dtype.
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be one per rollout (1-D), got shape {tuple(scores.shape)}")
    x = scores.detach().cpu().numpy().astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("SRPO got a non-finite reward; check the reward function")
    ids, num_groups = group_ids(index)
    if len(ids) != len(x):
        raise ValueError(f"{len(x)} rewards but {len(ids)} group ids")
    size = np.bincount(ids, minlength=num_groups).astype(np.float64)
    adv = _grpo(x, ids, num_groups, norm_by_std, cfg.epsilon, size)
    if cfg.bonus_weight != 0:
        v = x >= cfg.threshold - 1e-6 if hit is None else np.asarray(hit.cpu() if isinstance(hit, torch.Tensor) else hit)
        adv = adv + cfg.bonus_weight * _passk_bonus(v.astype(np.float64), ids, num_groups, int(cfg.k), size)
    dtype = scores.dtype if scores.is_floating_point() else torch.float32
    return torch.from_numpy(adv).to(device=scores.device, dtype=dtype)


def zero_variance_group_mask(scores, group_ids_, tol: float = 0.0) -> np.ndarray:
    """Variance-guided dynamic sampling (eq. 22): True for rollouts whose group keeps a learning
    signal, i.e. group reward std (population) > ``tol``. Single-member groups have std 0 and are
    dropped. ``group_ids_`` may be verl's ``uid`` strings or integers."""
    x = np.asarray(scores, dtype=np.float64).reshape(-1)
    ids, num_groups = group_ids(group_ids_)
    if len(ids) != len(x):
        raise ValueError(f"{len(x)} scores but {len(ids)} group ids")
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    size = np.bincount(ids, minlength=num_groups).astype(np.float64)
    centred = x - (_group_sum(x, ids, num_groups) / size)[ids]
    std = np.sqrt(_group_sum(centred * centred, ids, num_groups) / size)
    return (std > tol)[ids]


def srpo_config(config) -> SrpoConfig:
    """Read ``algorithm.srpo`` from verl's algorithm config (DictConfig, AlgoConfig or dict).

    Set with ``+algorithm.srpo.k=4 +algorithm.srpo.bonus_weight=1.0 +algorithm.srpo.threshold=1.0``;
    missing keys keep the defaults of :class:`SrpoConfig`.
    """
    section = config.get("srpo", None) if config is not None else None
    if section is None:
        return SrpoConfig()
    values = dict(section.items()) if hasattr(section, "items") else dict(section)
    known = {"k", "bonus_weight", "threshold", "epsilon", "drop_zero_variance_groups", "beta"}  # beta: reward
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown algorithm.srpo keys {sorted(unknown)}; known: {sorted(known)}")
    values.pop("drop_zero_variance_groups", None)
    values.pop("beta", None)
    return SrpoConfig(**values)


def compute_srpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool | None = None,
    config=None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl advantage-estimator signature (registered as ``algorithm.adv_estimator=srpo``).

    verl's ``compute_advantage`` passes custom estimators only ``token_level_rewards``,
    ``response_mask``, ``index`` (the ``uid`` array) and ``config`` (``algorithm``): not
    ``norm_adv_by_std_in_grpo`` and not the reward's ``exact`` flag. So the std switch is read from
    ``config.norm_adv_by_std_in_grpo`` and a hit is ``reward >= algorithm.srpo.threshold``; for the
    index reward ``r = 1`` exactly when the whole index matches, so threshold 1.0 is ``exact``.
    """
    if index is None:
        raise ValueError("the srpo advantage estimator needs verl's 'uid' group index (rollout.n > 1)")
    if config is not None and config.get("use_kl_in_reward", False):
        raise ValueError(
            "algorithm.adv_estimator=srpo needs the raw reward to decide hits; set algorithm.use_kl_in_reward=False "
            "and use actor_rollout_ref.actor.use_kl_loss=True (as the paper does)"
        )
    cfg = srpo_config(config)
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = bool(config.get("norm_adv_by_std_in_grpo", True)) if config is not None else True
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        scalar = srpo_scalar(scores, index, cfg=cfg, norm_by_std=norm_adv_by_std_in_grpo)
        advantages = scalar.to(token_level_rewards.dtype).unsqueeze(-1) * response_mask
        if config is not None and _section_get(config, "drop_zero_variance_groups", False):
            mask_zero_variance_groups(scores, index, response_mask)
    return advantages, advantages


def _section_get(config, key, default):
    section = config.get("srpo", None)
    return section.get(key, default) if section is not None else default


def mask_zero_variance_groups(scores: torch.Tensor, index, response_mask: torch.Tensor, tol: float = 1e-9) -> dict:
    """Legacy-trainer dynamic sampling: zero ``response_mask`` (in place) of groups without reward
    variance, so the policy loss averages over informative groups only, as if they were dropped.

    Returns the counts (``srpo/dynamic_sampling/*``). verl's legacy trainer has no group filter and
    gives an estimator no metrics channel, so they also go to the ``gream_verl.srpo`` logger (INFO),
    the record carrying them as ``record.metrics`` for a handler that forwards metrics. When every
    group would go, nothing is masked (their advantage is 0 anyway) to keep the loss well defined.
    """
    keep_np = zero_variance_group_mask(scores.detach().cpu().numpy(), index, tol)
    keep = torch.as_tensor(keep_np, device=response_mask.device)
    ids, num_groups = group_ids(index)
    kept_groups = len(np.unique(ids[keep_np]))
    stats = {
        "srpo/dynamic_sampling/groups_kept": kept_groups,
        "srpo/dynamic_sampling/groups_dropped": num_groups - kept_groups,
        "srpo/dynamic_sampling/kept_fraction": kept_groups / num_groups if num_groups else 0.0,
    }
    if kept_groups:
        response_mask.mul_(keep.to(response_mask.dtype).unsqueeze(-1))
    log.info("dynamic sampling: %s", stats, extra={"metrics": stats})
    return stats
