"""Batched evaluation against a naive per-user loop, history masking and sampled ranking."""

import math

import numpy as np
import torch

from echorec.config import EvalConfig
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
            got = evaluate(m, split, which, EvalConfig(eval_batch_size=7, ks=[10], exclude_history=excl), max_len=5)
            hit, ndcg = naive(m, split, which, excl)
            assert abs(got["hit@10"] - hit) < 1e-9 and abs(got["ndcg@10"] - ndcg) < 1e-9


def test_exclude_history_only_improves_ranks_and_never_masks_target():
    split = leave_one_out(data(seed=3))
    m = FixedScores(25, seed=3)
    _, plain = evaluate(m, split, "test", EvalConfig(ks=[10]), 5, return_ranks=True)
    _, masked = evaluate(m, split, "test", EvalConfig(ks=[10], exclude_history=True), 5, return_ranks=True)
    assert (masked <= plain).all() and (masked < plain).any()


def test_sampled_negatives_are_unseen_and_labelled():
    d = data(n_items=200)
    split = leave_one_out(d)
    neg = sample_negatives(split, "test", 20)
    for row, u in enumerate(split.eval_users):
        assert not set(neg[row].tolist()) & set(d.sequence(u).tolist())
    m = evaluate(FixedScores(200), split, "test", EvalConfig(ks=[10], sampled=20), 5)
    assert set(m) == {"sampled20_hit@10", "sampled20_ndcg@10", "sampled20_mrr@10"}
    assert torch.equal(neg, sample_negatives(split, "test", 20))  # fixed seed: the same negatives every time


class TiedModel(torch.nn.Module):
    """A minimal contract model: h = embedding of the last item; tied scores."""

    def __init__(self, n_items, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.item_emb = torch.nn.Embedding(n_items + 1, 8)
        with torch.no_grad():
            self.item_emb.weight.copy_(torch.randn(n_items + 1, 8, generator=g))

    def encode_last(self, seq):
        return self.item_emb(seq[:, -1])

    def score_items(self, h, lo, hi):
        return h @ self.item_emb.weight[lo + 1 : hi + 1].t()

    def predict(self, seq):
        return self.score_items(self.encode_last(seq), 0, self.item_emb.num_embeddings - 1)


def test_chunked_evaluation_equals_unchunked():
    split = leave_one_out(data(n_users=40, n_items=50, seed=5))
    m = TiedModel(50)
    s, e = split.eval_samples("test")
    with torch.no_grad():
        scores = m.predict(split.items[torch.as_tensor(e - 1)][:, None])  # (U, n_items) full matmul
    target = split.items[torch.as_tensor(e)] - 1
    t = scores.gather(1, target[:, None])
    # Distance from the target's score to the nearest other score: below 1e-5 is a tie at float precision,
    # where a matmul over a slice may round differently from the full one (BLAS promises no bitwise match).
    gap = (scores - t).abs().scatter(1, target[:, None], float("inf")).min(1).values
    for excl in (False, True):
        _, full = evaluate(m, split, "test", EvalConfig(ks=[10], exclude_history=excl), 6, return_ranks=True)
        for chunk in (7, 16, 50):
            _, part = evaluate(m, split, "test", EvalConfig(ks=[10], exclude_history=excl, item_chunk=chunk), 6,
                               return_ranks=True)
            differ = full != part
            assert ((full - part).abs() <= 1).all() and (gap[differ] < 1e-5).all(), (excl, chunk)
            assert differ.float().mean() < 0.1


def test_history_mask_with_item_one_and_padding():
    # Item 1 (column 0) in the history must be masked even though padding also points at column 0.
    split = leave_one_out(SeqData(np.array([1, 2, 3, 4, 5]), np.array([0, 5]), np.array(list("abcde")),
                                  np.array(["u"])))
    m = FixedScores(5)
    m.table[:] = torch.tensor([10.0, 0.0, 0.0, 0.0, 1.0])  # item 1 scores highest, the target (5) second
    assert evaluate(m, split, "test", EvalConfig(ks=[1], exclude_history=True), 4)["hit@1"] == 1.0
    assert evaluate(m, split, "test", EvalConfig(ks=[1]), 4)["hit@1"] == 0.0
