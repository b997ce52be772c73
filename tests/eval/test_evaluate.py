"""Batched evaluation against a naive per-user loop, history masking and sampled ranking."""

import math

import numpy as np
import torch

from echorec.data.preprocess import SeqData
from echorec.data.split import leave_one_out
from echorec.eval.evaluate import evaluate, sample_negatives


class FixedScores(torch.nn.Module):
    """Scores item j as score_table[last item of the sequence, j] (no parameters to learn)."""

    def __init__(self, n_items, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(n_items + 1, n_items, generator=g)

    def predict(self, seq):
        return self.table[seq[:, -1]]


def data(n_users=30, n_items=25, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(3, 15, size=n_users)
    items = rng.integers(1, n_items + 1, size=lens.sum())
    offsets = np.concatenate([[0], np.cumsum(lens)])
    return SeqData(items, offsets, np.array([str(i) for i in range(1, n_items + 1)]), np.arange(n_users).astype(str))


def naive(model, split, which, exclude_history=False, k=10):
    hits = ndcgs = 0.0
    s, e = split.eval_samples(which)
    for a, b in zip(s, e):
        hist = split.items[a:b]
        target = int(split.items[b])
        scores = model.predict(hist[None])[0].clone()
        if exclude_history:
            for i in set(hist.tolist()) - {target}:
                scores[i - 1] = -math.inf
        rank = 1 + int((scores >= scores[target - 1]).sum()) - 1
        if rank <= k:
            hits, ndcgs = hits + 1, ndcgs + 1 / math.log2(rank + 1)
    return hits / len(s), ndcgs / len(s)


def test_batched_full_ranking_matches_naive_loop():
    split = leave_one_out(data())
    m = FixedScores(25)
    for which in ("valid", "test"):
        for excl in (False, True):
            got = evaluate(m, split, which, max_len=5, batch_size=7, ks=(10,), exclude_history=excl)
            hit, ndcg = naive(m, split, which, excl)
            assert abs(got["hit@10"] - hit) < 1e-9 and abs(got["ndcg@10"] - ndcg) < 1e-9


def test_exclude_history_only_improves_ranks_and_never_masks_target():
    split = leave_one_out(data(seed=3))
    m = FixedScores(25, seed=3)
    _, plain = evaluate(m, split, "test", 5, ks=(10,), return_ranks=True)
    _, masked = evaluate(m, split, "test", 5, ks=(10,), exclude_history=True, return_ranks=True)
    assert (masked <= plain).all() and (masked < plain).any()


def test_sampled_negatives_are_unseen_and_labelled():
    d = data(n_items=200)
    split = leave_one_out(d)
    neg = sample_negatives(split, "test", 20)
    for row, u in enumerate(split.eval_users):
        assert not set(neg[row].tolist()) & set(d.sequence(u).tolist())
    m = evaluate(FixedScores(200), split, "test", 5, ks=(10,), sampled=20)
    assert set(m) == {"sampled20_hit@10", "sampled20_ndcg@10", "sampled20_mrr@10"}
    assert torch.equal(neg, sample_negatives(split, "test", 20))  # fixed seed: the same negatives every time
