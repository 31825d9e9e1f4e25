"""Reference recommenders measured beside GREAM on the same split: MostPop and SASRec.

Both use the leave-one-out protocol of :mod:`gream_verl.data.split` (train on ``s[:-2]``, valid
``s[-2]``, test ``s[-1]``, history capped at ``max_history``) and rank *all* items for every
example, without removing items already in the history. Ties are broken by item order, so a
result never depends on chance.

SASRec (Kang & McAuley, ICDM 2018) is written here from the paper's description: item plus
position embeddings, causal self-attention blocks, scores = hidden state . item embedding, and
trained with full-softmax cross-entropy over all items (the stronger setting, as in later
re-evaluations).

It is trained *to convergence* by default, because a baseline stopped early makes any model
look good: valid NDCG@10 is measured after every epoch, training stops only when it has not
improved for ``patience`` (20) epochs, the best epoch's weights are kept, and the dropout rate is
chosen on the validation split from ``dropouts`` (0.2, 0.5), one full training each. The result
says how each candidate stopped (``patience``, ``max_epochs`` or ``time cap``, the optional
``max_minutes``), so a report can tell a converged baseline from a cut-short one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from gream_verl.data.split import leave_one_out, train_items
from gream_verl.metrics import ndcg_at_k, recall_at_k

KS = (1, 5, 10)


# --- metrics -----------------------------------------------------------------------------------


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all items (higher score first; ties: lower item first).

    ``scores`` is (batch, items), ``targets`` (batch,) item positions.
    """
    target_score = scores.gather(1, targets[:, None])
    items = torch.arange(scores.shape[1], device=scores.device)[None, :]
    ahead = (scores > target_score) | ((scores == target_score) & (items < targets[:, None]))
    return ahead.sum(dim=1)


def rank_metrics(ranks: np.ndarray | torch.Tensor, ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@k for every k and NDCG@k for k >= 5, from 0-based target ranks, with the same
    functions the GREAM evaluation uses (:mod:`gream_verl.metrics`)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.size == 0:
        raise ValueError("no examples to evaluate")
    out = {f"recall@{k}": recall_at_k(ranks + 1, k) for k in ks}
    out.update({f"ndcg@{k}": ndcg_at_k(ranks + 1, k) for k in ks if k >= 5})
    return out


# --- shared data preparation -------------------------------------------------------------------


@dataclass
class EncodedSplit:
    """Examples of one split as padded tensors: item positions are 1-based (0 = padding)."""

    histories: torch.Tensor  # (n, max_history), left-padded with 0
    targets: torch.Tensor  # (n,) 0-based item positions
    users: list[str]  # (n,) user ids, in leave_one_out order


def item_vocabulary(sequences: dict[str, list[str]]) -> list[str]:
    """Every item in the data, in a stable order (integer ids numerically)."""
    ids = {i for s in sequences.values() for i in s}
    return sorted(ids, key=lambda x: (0, int(x), "") if x.isdigit() else (1, 0, x))


def encode_split(sequences, split: str, item_pos: dict[str, int], max_history: int) -> EncodedSplit:
    examples = leave_one_out(sequences, split, max_history=max_history)
    if not examples:
        raise ValueError(f"split {split!r} has no examples (every user needs at least 3 items)")
    hist = np.zeros((len(examples), max_history), dtype=np.int64)
    for row, ex in enumerate(examples):
        ids = [item_pos[i] + 1 for i in ex.history[-max_history:]]
        if ids:
            hist[row, -len(ids):] = ids
    targets = np.fromiter((item_pos[ex.target] for ex in examples), dtype=np.int64, count=len(examples))
    return EncodedSplit(torch.from_numpy(hist), torch.from_numpy(targets), [ex.user for ex in examples])


# --- MostPop -----------------------------------------------------------------------------------


def most_pop(sequences: dict[str, list[str]], split: str = "test", max_history: int = 20,
             ks: Sequence[int] = KS) -> dict:
    """Recommend the items most often interacted with in the training part, to everyone.
    ``ranks`` holds each example's 0-based target rank, in ``leave_one_out`` order."""
    start = time.perf_counter()
    items = item_vocabulary(sequences)
    item_pos = {item: i for i, item in enumerate(items)}
    counts = np.zeros(len(items), dtype=np.float64)
    for seq in train_items(sequences).values():
        np.add.at(counts, [item_pos[i] for i in seq], 1.0)
    data = encode_split(sequences, split, item_pos, max_history)
    scores = torch.from_numpy(counts)[None, :].expand(len(data.targets), -1)
    ranks = target_ranks(scores, data.targets).numpy()
    return {**rank_metrics(ranks, ks), "examples": len(data.targets), "wall_s": time.perf_counter() - start,
            "users": data.users,
            "ranks": ranks.tolist()}


# --- SASRec ------------------------------------------------------------------------------------


@dataclass
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropouts: tuple[float, ...] = (0.2, 0.5)  # candidates; the best valid NDCG@10 is kept
    max_len: int = 20  # history cap, the same as the GREAM prompts
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 400
    patience: int = 20  # epochs without a better valid NDCG@10 before stopping
    eval_every: int = 1  # epochs between validations
    max_minutes: float | None = None  # optional wall-time cap on all trainings together
    seed: int = 42
    threads: int = 0  # torch CPU threads; 0 keeps torch's default (1 avoids oversubscription)

    def __post_init__(self):
        self.dropouts = tuple(float(d) for d in self.dropouts)
        if not self.dropouts or not all(0.0 <= d < 1.0 for d in self.dropouts):
            raise ValueError(f"SASRec dropouts must be a non-empty list of rates in [0, 1), got {self.dropouts}")
        for key in ("patience", "eval_every", "max_epochs", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"SASRec {key} must be >= 1, got {getattr(self, key)}")


class SASRec(nn.Module):
    """Causal self-attention over the item history; item embeddings double as output weights."""

    def __init__(self, num_items: int, cfg: SASRecConfig, dropout: float):
        super().__init__()
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = nn.Dropout(dropout)
        self.heads = cfg.heads
        layer = nn.TransformerEncoderLayer(
            cfg.hidden, cfg.heads, dim_feedforward=cfg.hidden, dropout=dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.hidden)
        causal = torch.triu(torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def hidden_states(self, seqs: torch.Tensor) -> torch.Tensor:
        """(batch, len) left-padded item ids -> (batch, len, hidden)."""
        length = seqs.shape[1]
        pos = torch.arange(length, device=seqs.device)
        x = self.item_emb(seqs) * (self.item_emb.embedding_dim ** 0.5) + self.pos_emb(pos)[None]
        x = self.drop(x) * (seqs > 0).unsqueeze(-1)
        # causal attention that skips padding; every position may see itself, so a padded
        # position never has an empty (NaN) attention row
        pad = seqs == 0
        blocked = self.causal[:length, :length][None] | pad[:, None, :]
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=seqs.device)[None]
        blocked = blocked.repeat_interleave(self.heads, dim=0)
        x = self.encoder(x, mask=blocked)
        return self.norm(x)

    def scores(self, seqs: torch.Tensor) -> torch.Tensor:
        """Scores of every item (0-based positions) after the last history item."""
        last = self.hidden_states(seqs)[:, -1]
        return last @ self.item_emb.weight[1:].T


def _training_windows(sequences, item_pos: dict[str, int], max_len: int) -> torch.Tensor:
    """Each user's training part cut into windows of ``max_len + 1`` items (left-padded).

    Input is window[:-1], labels window[1:]; long sequences give several windows so no training
    interaction is dropped.
    """
    rows = []
    for seq in train_items(sequences).values():
        ids = [item_pos[i] + 1 for i in seq]
        if len(ids) < 2:
            continue
        end = len(ids)
        while end > 1:
            window = ids[max(0, end - max_len - 1):end]
            rows.append([0] * (max_len + 1 - len(window)) + window)
            end -= max_len
    if not rows:
        raise ValueError("no training sequences with at least 2 items")
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def _ranks(model: SASRec, data: EncodedSplit, batch_size: int = 512) -> np.ndarray:
    model.eval()
    ranks = [target_ranks(model.scores(data.histories[i:i + batch_size]), data.targets[i:i + batch_size])
             for i in range(0, len(data.targets), batch_size)]
    return torch.cat(ranks).numpy()


def _evaluate(model: SASRec, data: EncodedSplit, ks: Sequence[int]) -> dict[str, float]:
    return rank_metrics(_ranks(model, data), ks)


def _train_one(windows: torch.Tensor, valid: EncodedSplit, num_items: int, cfg: SASRecConfig, dropout: float,
               deadline: float, progress: bool) -> tuple[SASRec, dict]:
    """One SASRec training with early stopping on valid NDCG@10; returns the best epoch's model
    and ``{"dropout", "valid_ndcg@10", "best_epoch", "epochs", "stopped_by", "train_loss", "valid_curve", "wall_s"}``."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = SASRec(num_items, cfg, dropout)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    best, best_state, best_epoch, losses, curve = -1.0, None, 0, [], []
    stopped_by = "max_epochs"
    bar = tqdm(range(1, cfg.max_epochs + 1), desc=f"SASRec dropout {dropout}", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(windows), generator=generator)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            batch = windows[order[i:i + cfg.batch_size]]
            inputs, labels = batch[:, :-1], batch[:, 1:] - 1  # labels: 0-based item positions
            real = inputs > 0  # the softmax over all items is the cost: skip padded positions
            logits = model.hidden_states(inputs)[real] @ model.item_emb.weight[1:].T
            loss = loss_fn(logits, labels[real])
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.item() * len(batch)
        losses.append(total / len(windows))
        out_of_time = time.perf_counter() > deadline
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs or out_of_time:
            ndcg = _evaluate(model, valid, (10,))["ndcg@10"]
            curve.append([epoch, ndcg])
            if ndcg > best:
                best, best_state, best_epoch = ndcg, copy.deepcopy(model.state_dict()), epoch
            bar.set_postfix(loss=f"{losses[-1]:.3f}", valid_ndcg10=f"{ndcg:.4f}", best=best_epoch)
            if epoch - best_epoch >= cfg.patience:
                stopped_by = "patience"
                break
            if out_of_time:
                stopped_by = "time cap"
                break
    bar.close()
    model.load_state_dict(best_state)
    return model, {"dropout": dropout, "valid_ndcg@10": best, "best_epoch": best_epoch, "epochs": len(losses),
                   "stopped_by": stopped_by, "train_loss": losses, "valid_curve": curve,
                   "wall_s": time.perf_counter() - start}


def sasrec(sequences: dict[str, list[str]], cfg: SASRecConfig | None = None, ks: Sequence[int] = KS,
           progress: bool = True) -> dict:
    """Train SASRec once per candidate dropout (each to convergence), keep the one with the best
    valid NDCG@10, and report its valid and test metrics.

    The result holds the chosen run's ``best_epoch``, ``epochs``, ``stopped_by`` and
    ``train_loss``, every candidate under ``candidates``, ``converged`` (every candidate stopped
    by patience), the total ``wall_s``, and ``ranks``/``users``: each test user's 0-based target
    rank, in ``leave_one_out`` order.
    """
    cfg = cfg or SASRecConfig()
    start = time.perf_counter()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    items = item_vocabulary(sequences)
    item_pos = {item: i for i, item in enumerate(items)}
    windows = _training_windows(sequences, item_pos, cfg.max_len)
    valid = encode_split(sequences, "valid", item_pos, cfg.max_len)
    test = encode_split(sequences, "test", item_pos, cfg.max_len)
    deadline = start + 60.0 * cfg.max_minutes if cfg.max_minutes else float("inf")

    best_model, candidates = None, []
    for dropout in cfg.dropouts:
        model, info = _train_one(windows, valid, len(items), cfg, dropout, deadline, progress)
        if not candidates or info["valid_ndcg@10"] > max(c["valid_ndcg@10"] for c in candidates):
            best_model, chosen = model, info
        candidates.append(info)
    test_ranks = _ranks(best_model, test)
    return {
        **rank_metrics(test_ranks, ks),
        "valid": _evaluate(best_model, valid, ks),
        "examples": len(test.targets),
        "dropout": chosen["dropout"],
        "best_epoch": chosen["best_epoch"],
        "epochs": chosen["epochs"],
        "stopped_by": chosen["stopped_by"],
        "converged": all(c["stopped_by"] == "patience" for c in candidates),
        "train_loss": chosen["train_loss"],
        "candidates": [{k: v for k, v in c.items() if k != "train_loss"} for c in candidates],
        "wall_s": time.perf_counter() - start,
        "config": asdict(cfg),
        "users": test.users,
        "ranks": test_ranks.tolist(),  # 0-based rank of each test target, in leave_one_out order
    }


def run_baselines(sequences: dict[str, list[str]], sasrec_cfg: SASRecConfig | None = None,
                  ks: Sequence[int] = KS, progress: bool = True) -> dict[str, dict]:
    """Both baselines on the test split: ``{"MostPop": metrics, "SASRec": metrics}``."""
    return {
        "MostPop": most_pop(sequences, "test", (sasrec_cfg or SASRecConfig()).max_len, ks),
        "SASRec": sasrec(sequences, sasrec_cfg, ks, progress),
    }
