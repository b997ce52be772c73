import numpy as np
import torch

from echorec.data.preprocess import SeqData
from echorec.data.split import BatchIterator, bsarec_samples, gather, leave_one_out, prefix_samples, window_samples


def tiny():
    # user 0: 1 2 3 4 5 ; user 1: 6 7 (too short to evaluate) ; user 2: 2 4 6
    items = np.array([1, 2, 3, 4, 5, 6, 7, 2, 4, 6])
    offsets = np.array([0, 5, 7, 10])
    return SeqData(items, offsets, np.array([str(i) for i in range(1, 8)]), np.array(["a", "b", "c"]))


def test_leave_one_out():
    s = leave_one_out(tiny())
    assert s.eval_users.tolist() == [0, 2]
    vs, ve = s.eval_samples("valid")
    ts, te = s.eval_samples("test")
    assert s.items[ve].tolist() == [4, 4] and s.items[te].tolist() == [5, 6]
    assert [s.items[a:b].tolist() for a, b in zip(vs, ve)] == [[1, 2, 3], [2]]
    assert [s.items[a:b].tolist() for a, b in zip(ts, te)] == [[1, 2, 3, 4], [2, 4]]
    assert s.train_end.tolist() == [3, 7, 8]  # the short user trains on everything


def test_prefix_augmentation():
    s = leave_one_out(tiny())
    start, end = prefix_samples(s.starts, s.train_end)
    samples = [(s.items[a:b].tolist(), int(s.items[b])) for a, b in zip(start, end)]
    assert samples == [([1], 2), ([1, 2], 3), ([6], 7)]


def naive_bsarec(seqs, max_len):
    """BSARec's dataset.py, written out: the last max_len items before the valid/test pair, every prefix."""
    out = []
    for seq in seqs:
        window = seq[-(max_len + 2):-2]
        out += [(window[:i], window[i]) for i in range(len(window))]
    return out


def test_bsarec_samples_match_the_official_construction():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 50, size=n).tolist() for n in (3, 4, 5, 9, 12, 30)]
    offsets = np.concatenate([[0], np.cumsum([len(q) for q in seqs])])
    data = SeqData(np.concatenate(seqs), offsets, np.array([str(i) for i in range(1, 50)]),
                   np.array([str(u) for u in range(len(seqs))]))
    s = leave_one_out(data)
    for max_len in (4, 8, 50):
        start, end = bsarec_samples(s.starts, s.train_end, max_len)
        ours = [(s.items[a:b].tolist(), int(s.items[b])) for a, b in zip(start, end)]
        assert ours == naive_bsarec(seqs, max_len)
    assert ([], seqs[0][0]) in ours  # the empty history is a sample


def test_a_batch_of_empty_histories_is_one_wide_and_all_padding():
    s = leave_one_out(tiny())
    start, end = bsarec_samples(s.starts, s.train_end, 50)
    empty = torch.from_numpy(np.flatnonzero(end == start))
    it = BatchIterator(s, start, end, max_len=50, batch_size=8)
    b = it.make(empty)
    assert b.seq.shape == (len(empty), 1) and not b.seq.any()
    assert b.target.tolist() == [1, 6, 2]  # each user's first item


def test_window_samples_cover_every_target_once():
    items = np.arange(1, 13)  # one user, 12 items: train part = 10 items
    data = SeqData(items, np.array([0, 12]), np.array([str(i) for i in items]), np.array(["u"]))
    s = leave_one_out(data)
    start, end = window_samples(s.starts, s.train_end, max_len=4)
    targets = []
    for a, b in zip(start, end):
        targets.extend(s.items[a + 1 : b + 1].tolist())
        assert b - a <= 4
    assert sorted(targets) == list(range(2, 11))  # every training item but the first is a target once


def test_gather_left_pads_and_truncates():
    items = torch.arange(1, 11)
    out = gather(items, torch.tensor([0, 2, 5]), torch.tensor([3, 9, 6]), 4)
    assert out.tolist() == [[0, 1, 2, 3], [6, 7, 8, 9], [0, 0, 0, 6]]


def test_bucketed_batches_hold_every_sample_once():
    rng = np.random.default_rng(0)
    lens = rng.integers(3, 40, size=50)
    items = rng.integers(1, 30, size=lens.sum())
    offsets = np.concatenate([[0], np.cumsum(lens)])
    s = leave_one_out(SeqData(items, offsets, np.array([str(i) for i in range(1, 30)]), np.arange(50).astype(str)))
    start, end = prefix_samples(s.starts, s.train_end)
    it = BatchIterator(s, start, end, max_len=10, batch_size=16, bucket=True, seed=3)
    seen = torch.cat(it.order(1))
    assert sorted(seen.tolist()) == list(range(len(start)))
    assert not torch.equal(torch.cat(it.order(1)), torch.cat(it.order(2)))  # reshuffled per epoch
    b = it.make(torch.tensor([0, 1]))
    assert b.seq.shape[1] == min(10, int(max(end[0] - start[0], end[1] - start[1])))
    assert b.target.tolist() == s.items[torch.as_tensor(end[:2])].tolist()
