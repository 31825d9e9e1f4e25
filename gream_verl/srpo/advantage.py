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

Edge cases, all finite: ``k`` larger than the group is clamped to ``G`` (pass@G); ``sigma = 0``
(no hit, or every ``k``-subset holds a hit, or a single-member group) gives bonus 0. Binomials are
ratios of ``lgamma`` values in float64, so large groups neither overflow nor lose precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_K = 4  # the authors' reference value


@dataclass(frozen=True)
class SrpoConfig:
    """``+algorithm.srpo.*`` settings (see :func:`srpo_config`)."""

    k: int = DEFAULT_K  # pass@k of the bonus
    bonus_weight: float = 1.0  # weight of the pass@k bonus added to the GRPO advantage
    threshold: float = 1.0  # a rollout is a hit (v_i = 1) when its reward >= threshold
    epsilon: float = 1e-6  # GRPO std guard, as verl

    def __post_init__(self):
        if int(self.k) != self.k or self.k < 1:
            raise ValueError(f"algorithm.srpo.k must be an integer >= 1, got {self.k!r}")
        if not np.isfinite(self.bonus_weight) or not np.isfinite(self.threshold):
            raise ValueError(f"algorithm.srpo.bonus_weight / threshold must be finite, got {self}")


def group_ids(index) -> tuple[torch.Tensor, int]:
    """Map verl's ``uid`` array (any hashable values) to dense ``0..n_groups-1`` ids."""
    values = np.asarray(index)
    if values.ndim != 1:
        raise ValueError(f"group index must be one-dimensional, got shape {values.shape}")
    _, inverse = np.unique(values, return_inverse=True)
    return torch.as_tensor(inverse.reshape(-1), dtype=torch.long), int(inverse.max()) + 1 if len(values) else 0


def _group_sum(values: torch.Tensor, ids: torch.Tensor, num_groups: int) -> torch.Tensor:
    return torch.zeros(num_groups, dtype=values.dtype, device=values.device).scatter_add_(0, ids, values)


def log_binom(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``log C(n, k)`` in float64; ``-inf`` where ``k < 0`` or ``k > n`` (C = 0)."""
    n = n.to(torch.float64)
    k = k.to(torch.float64)
    valid = (k >= 0) & (k <= n)
    n_ = torch.where(valid, n, torch.zeros_like(n))
    k_ = torch.where(valid, k, torch.zeros_like(k))
    out = torch.lgamma(n_ + 1) - torch.lgamma(k_ + 1) - torch.lgamma(n_ - k_ + 1)
    return torch.where(valid, out, torch.full_like(out, -torch.inf))


def passk_bonus_terms(size: torch.Tensor, hits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group: ``rho``, ``sigma`` and ``delta`` (float64) for group sizes and hit counts."""
    size = size.to(torch.float64)
    hits = hits.to(torch.float64)
    k_eff = torch.clamp(size, max=float(k))
    rho = 1.0 - torch.exp(log_binom(size - hits, k_eff) - log_binom(size, k_eff))
    rho = rho.clamp(0.0, 1.0)
    sigma = torch.sqrt(rho * (1.0 - rho))
    delta = torch.exp(log_binom(size - hits - 1, k_eff - 1) - log_binom(size - 1, k_eff - 1))
    return rho, sigma, delta


def passk_bonus(hit: torch.Tensor, ids: torch.Tensor, num_groups: int, k: int) -> torch.Tensor:
    """Per-rollout pass@k bonus (float64); 0 wherever the group's sigma is 0."""
    hit = hit.to(torch.float64)
    size = _group_sum(torch.ones_like(hit), ids, num_groups)
    hits = _group_sum(hit, ids, num_groups)
    rho, sigma, delta = passk_bonus_terms(size, hits, k)
    ok = sigma > 1e-12
    safe_sigma = torch.where(ok, sigma, torch.ones_like(sigma))
    pos = torch.where(ok, (1.0 - rho) / safe_sigma, torch.zeros_like(rho))
    neg = torch.where(ok, ((1.0 - rho) - delta) / safe_sigma, torch.zeros_like(rho))
    return torch.where(hit > 0, pos[ids], neg[ids])


def grpo_scalar(scores: torch.Tensor, ids: torch.Tensor, num_groups: int, norm_by_std: bool = True, epsilon: float = 1e-6) -> torch.Tensor:
    """verl-``grpo``-equivalent normalised advantage per rollout (computed in float64)."""
    x = scores.to(torch.float64)
    size = _group_sum(torch.ones_like(x), ids, num_groups)
    mean = _group_sum(x, ids, num_groups) / size
    sq = _group_sum((x - mean[ids]) ** 2, ids, num_groups)
    std = torch.sqrt(sq / torch.clamp(size - 1, min=1))
    single = size < 2
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)
    centred = x - mean[ids]
    return centred / (std[ids] + epsilon) if norm_by_std else centred


def srpo_scalar(
    scores: torch.Tensor,
    index,
    hit: torch.Tensor | None = None,
    cfg: SrpoConfig = SrpoConfig(),
    norm_by_std: bool = True,
) -> torch.Tensor:
    """One SRPO advantage per rollout: GRPO part plus ``bonus_weight`` times the pass@k bonus.

    ``hit`` defaults to ``scores >= cfg.threshold`` (with 1e-6 slack for float rounding).
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be one per rollout (1-D), got shape {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError("SRPO got a non-finite reward; check the reward function")
    ids, num_groups = group_ids(index)
    if ids.numel() != scores.numel():
        raise ValueError(f"{scores.numel()} rewards but {ids.numel()} group ids")
    ids = ids.to(scores.device)
    if hit is None:
        hit = scores >= cfg.threshold - 1e-6
    adv = grpo_scalar(scores, ids, num_groups, norm_by_std, cfg.epsilon)
    if cfg.bonus_weight != 0:
        adv = adv + cfg.bonus_weight * passk_bonus(hit.to(scores.device), ids, num_groups, int(cfg.k))
    return adv.to(scores.dtype if scores.is_floating_point() else torch.float32)


def zero_variance_group_mask(scores, group_ids_, tol: float = 0.0) -> np.ndarray:
    """Variance-guided dynamic sampling (eq. 22): True for rollouts whose group keeps a learning
    signal, i.e. group reward std (population) > ``tol``. Single-member groups have std 0 and are
    dropped. ``group_ids_`` may be verl's ``uid`` strings or integers."""
    x = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    ids, num_groups = group_ids(group_ids_)
    if ids.numel() != x.numel():
        raise ValueError(f"{x.numel()} scores but {ids.numel()} group ids")
    if x.numel() == 0:
        return np.zeros(0, dtype=bool)
    size = _group_sum(torch.ones_like(x), ids, num_groups)
    mean = _group_sum(x, ids, num_groups) / size
    var = _group_sum((x - mean[ids]) ** 2, ids, num_groups) / size
    keep = torch.sqrt(var) > tol
    return keep[ids].numpy()


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


LAST_DYNAMIC_SAMPLING: dict[str, float] = {}


def mask_zero_variance_groups(scores: torch.Tensor, index, response_mask: torch.Tensor, tol: float = 1e-9) -> dict:
    """Legacy-trainer dynamic sampling: zero ``response_mask`` (in place) of groups without reward
    variance, so the policy loss averages over informative groups only, as if they were dropped.

    verl's legacy trainer has no group filter and gives an estimator no metrics channel, so the
    counts go to the ``gream_verl.srpo`` logger and :data:`LAST_DYNAMIC_SAMPLING`. When every group
    would go, nothing is masked (their advantage is 0 anyway) to keep the loss well defined.
    """
    import logging

    keep = torch.as_tensor(zero_variance_group_mask(scores.detach().cpu().numpy(), index, tol), device=response_mask.device)
    ids, num_groups = group_ids(index)
    kept_groups = int(torch.unique(ids[torch.as_tensor(keep).cpu()]).numel()) if keep.any() else 0
    stats = {
        "srpo/dynamic_sampling/groups_kept": kept_groups,
        "srpo/dynamic_sampling/groups_dropped": num_groups - kept_groups,
        "srpo/dynamic_sampling/kept_fraction": kept_groups / num_groups if num_groups else 0.0,
    }
    if kept_groups:
        response_mask.mul_(keep.to(response_mask.dtype).unsqueeze(-1))
    LAST_DYNAMIC_SAMPLING.clear()
    LAST_DYNAMIC_SAMPLING.update(stats)
    logging.getLogger("gream_verl.srpo").info("dynamic sampling: %s", stats)
    return stats
