import math

import pytest
import torch

from echorec.eval.metrics import metrics_from_ranks, per_user_metrics, target_ranks


def test_ranks_hand_computed():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3],  # target col 2 -> one item (0.9) ahead: rank 2
                           [0.7, 0.2, 0.1, 0.0],  # target col 0 -> rank 1
                           [0.4, 0.4, 0.4, 0.4]])  # all tied -> ties count against the target: rank 4
    ranks = target_ranks(scores, torch.tensor([2, 0, 1]))
    assert ranks.tolist() == [2, 1, 4]


def test_nan_target_ranks_last():
    scores = torch.tensor([[float("nan"), 0.0, 1.0]])
    assert target_ranks(scores, torch.tensor([0])).tolist() == [3]


def test_metrics_hand_computed():
    ranks = torch.tensor([1, 2, 6, 30])
    m = metrics_from_ranks(ranks, ks=(5, 10))
    assert m["hit@5"] == pytest.approx(2 / 4)
    assert m["hit@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(2) + 1 / math.log2(3)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(7)) / 4)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 2) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 4)


def test_per_user_metrics_hand_computed():
    u = per_user_metrics(torch.tensor([1, 3, 20]), ks=(10,))
    assert u["hit@10"].tolist() == [1.0, 1.0, 0.0]
    assert u["ndcg@10"].tolist() == pytest.approx([1.0, 0.5, 0.0])  # 1 / log2(3 + 1) = 0.5
    assert u["mrr@10"].tolist() == pytest.approx([1.0, 1 / 3, 0.0])


def test_metrics_match_naive_loop():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(50, 200, generator=g)
    target = torch.randint(0, 200, (50,), generator=g)
    m = metrics_from_ranks(target_ranks(scores, target), ks=(10,))
    hit = ndcg = mrr = 0.0
    for row, t in zip(scores.tolist(), target.tolist()):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        r = order.index(t) + 1
        if r <= 10:
            hit, ndcg, mrr = hit + 1, ndcg + 1 / math.log2(r + 1), mrr + 1 / r
    assert m["hit@10"] == pytest.approx(hit / 50)
    assert m["ndcg@10"] == pytest.approx(ndcg / 50)
    assert m["mrr@10"] == pytest.approx(mrr / 50)
