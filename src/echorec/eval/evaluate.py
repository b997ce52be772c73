"""Batched evaluation of a model on the valid or test items of a leave-one-out split.

Full ranking scores every item (never the padding id); sampled ranking (N negatives drawn once,
with a fixed seed, from items the user never interacted with) is offered for comparison with
papers that use it, and its metric names carry a `sampled{N}_` prefix so the two are never confused.
"""

from __future__ import annotations

import numpy as np
import torch

from echorec.data.split import Split, gather
from echorec.eval.metrics import metrics_from_ranks, target_ranks


def sample_negatives(split: Split, which: str, n_neg: int, seed: int = 0) -> torch.Tensor:
    """(E, n_neg) item ids (1-based) not in each eval user's full sequence."""
    rng = np.random.default_rng(seed + (0 if which == "valid" else 1))
    data = split.data
    out = np.empty((len(split.eval_users), n_neg), dtype=np.int64)
    n = data.n_items
    for row, u in enumerate(split.eval_users):
        seen = set(data.sequence(u).tolist())
        if n - len(seen) < n_neg:
            raise ValueError(f"user {data.user_raw[u]} has fewer than {n_neg} unseen items to sample")
        got: list[int] = []
        while len(got) < n_neg:
            cand = rng.integers(1, n + 1, size=2 * n_neg)
            got.extend(c for c in cand.tolist() if c not in seen and c not in got)
        out[row] = got[:n_neg]
    return torch.from_numpy(out)


@torch.no_grad()
def evaluate(model, split: Split, which: str = "test", max_len: int = 50, batch_size: int = 1024,
             ks=(5, 10, 20), exclude_history: bool = False, sampled: int = 0, device="cpu",
             autocast_dtype=None, return_ranks: bool = False):
    """Metrics of `model` on the 'valid' or 'test' item of every eval user."""
    was_training = model.training
    model.eval()
    start, end = split.eval_samples(which)
    start_t, end_t = torch.from_numpy(start), torch.from_numpy(end)
    negatives = sample_negatives(split, which, sampled) if sampled else None
    ranks = []
    for b in torch.arange(len(start)).split(batch_size):
        s, e = start_t[b], end_t[b]
        width = int(torch.clamp(e - s, max=max_len).max())
        seq = gather(split.items, s, e, width).to(device)
        target = split.items[e].to(device) - 1  # score column of the target
        with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype or torch.bfloat16,
                            enabled=autocast_dtype is not None):
            scores = model.predict(seq).float()  # (B, n_items)
        if exclude_history:
            # Mask everything the user consumed before the target (the whole history, not only the
            # max_len window), but never the target itself.
            hist_w = int((e - s).max())
            hist = gather(split.items, s, e, hist_w).to(device)  # (B, H)
            mask = torch.zeros_like(scores, dtype=torch.bool)
            mask.scatter_(1, (hist - 1).clamp(min=0), hist > 0)
            mask.scatter_(1, target[:, None], False)
            scores = scores.masked_fill(mask, float("-inf"))
        if negatives is not None:
            cand = torch.cat([target[:, None], negatives[b].to(device) - 1], 1)  # (B, 1 + N)
            scores = scores.gather(1, cand)
            target = torch.zeros_like(target)
        ranks.append(target_ranks(scores, target).cpu())
    model.train(was_training)
    r = torch.cat(ranks)
    m = metrics_from_ranks(r, ks)
    if sampled:
        m = {f"sampled{sampled}_{k}": v for k, v in m.items()}
    return (m, r) if return_ranks else m
