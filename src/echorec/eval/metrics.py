"""Ranking metrics from the rank of the single held-out item (leave-one-out).

rank r is 1-based. HR@K = [r <= K]; NDCG@K = [r <= K] / log2(r + 1) (one relevant item, so the
ideal DCG is 1); MRR@K = [r <= K] / r. Ties count against the target (rank = 1 + #items with a
score >= the target's, the target excluded), so a constant scorer never looks good.
"""

from __future__ import annotations

import torch


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, C) scores, (B,) column of the target -> (B,) 1-based ranks. NaN target scores rank last."""
    scores = scores.float()
    t = scores.gather(1, target[:, None])  # (B, 1)
    ahead = (scores >= t).sum(1) - 1  # the target itself is >= itself
    ranks = ahead + 1
    return torch.where(torch.isnan(t[:, 0]), torch.full_like(ranks, scores.shape[1]), ranks)


def per_user_metrics(ranks: torch.Tensor, ks=(5, 10, 20)) -> dict[str, torch.Tensor]:
    """(N,) ranks -> {"hit@K" | "ndcg@K" | "mrr@K": (N,) float64 value of each user}."""
    r = ranks.double()
    out = {}
    for k in ks:
        hit = r <= k
        out[f"hit@{k}"] = hit.double()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(r + 1), 0.0)
        out[f"mrr@{k}"] = torch.where(hit, 1.0 / r, 0.0)
    return out


def metrics_from_ranks(ranks: torch.Tensor, ks=(5, 10, 20)) -> dict[str, float]:
    return {name: v.mean().item() for name, v in per_user_metrics(ranks, ks).items()}
