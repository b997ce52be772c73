"""--train-mode sample: K cut points per user and epoch, uniform over the user's positions, all of them for a
short history; a function of (seed, epoch) only, so runs repeat and a resume is exact."""

import json
import os

import numpy as np
import torch

from echorec.cli import main
from echorec.data.preprocess import SeqData
from echorec.data.split import SampledPrefixes, leave_one_out


def _split(lengths):
    items = np.arange(1, sum(lengths) + 1) % 50 + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return leave_one_out(SeqData(items, offsets, np.array([str(i) for i in range(1, 51)]),
                                 np.array([str(u) for u in range(len(lengths))])))


def test_cut_points_are_uniform_and_short_histories_give_all_prefixes():
    split = _split([4, 5, 200])  # 1, 2 and 197 training prefixes (two items held out per user)
    it = SampledPrefixes(split, 3, 50, 64, seed=0)
    counts = np.zeros(197)
    for epoch in range(1, 2001):
        it.order(epoch)
        s, e = it.start.numpy(), it.end.numpy()
        per_user = np.bincount(np.searchsorted(split.starts, s, side="right") - 1, minlength=3)
        assert per_user.tolist() == [1, 2, 3] and it.n_samples == 6
        assert sorted(e[s == split.starts[0]] - split.starts[0]) == [1]  # the short users: every prefix
        assert sorted(e[s == split.starts[1]] - split.starts[1]) == [1, 2]
        long = e[s == split.starts[2]] - split.starts[2] - 1  # 0 .. 196
        assert ((long >= 0) & (long < 197)).all()
        np.add.at(counts, long, 1)
    # 6000 draws over 197 positions: each bin ~30.5; a chi-square test at a generous level
    expected = counts.sum() / 197
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 197 + 5 * np.sqrt(2 * 197), chi2
    assert 0.45 < counts[:98].sum() / counts.sum() < 0.55  # no lean toward recent (or early) positions


def test_same_seed_same_draw_other_seed_other_draw():
    split = _split([30] * 20)
    a, b, c = (SampledPrefixes(split, 4, 50, 16, seed=s) for s in (1, 1, 2))
    for epoch in (1, 2):
        oa, ob = a.order(epoch), b.order(epoch)
        assert all(torch.equal(x, y) for x, y in zip(oa, ob)) and torch.equal(a.end, b.end)
    c.order(2)
    assert not torch.equal(a.end, c.end)
    a.order(3)
    assert not torch.equal(a.end, b.end)  # redrawn each epoch


def test_trains_a_bidirectional_model_and_resumes_exactly(tmp_path, data, capsys):
    args = ["--model", "echomamba4rec", "--hidden", "16", "--d-state", "8", "--max-len", "10", "--batch-size", "32",
            "--threads", "2", "--progress", "false", "--patience", "0", "--train-mode", "sample",
            "--prefixes-per-user", "2", "--dataset", data]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(["train", *args, "--epochs", "3", "--out", a]) == 0
    assert "600 sample samples/epoch" in capsys.readouterr().err  # 300 users x 2
    assert main(["train", *args, "--epochs", "2", "--out", b]) == 0
    assert main(["train", "--resume", b, "--epochs", "3"]) == 0
    ma, mb = (json.load(open(os.path.join(x, "metrics.json"))) for x in (a, b))
    assert ma["test"] == mb["test"] and ma["valid"] == mb["valid"]


def test_uniform_draw_weighs_users_by_their_prefixes():
    split = _split([4, 3, 22, 102])  # 1, 0, 19 and 99 training prefixes
    it = SampledPrefixes(split, 5, 50, 64, draw="uniform", seed=0)
    per_user = np.zeros(4)
    counts = np.zeros(99)
    for epoch in range(1, 1001):
        it.order(epoch)
        s, e = it.start.numpy(), it.end.numpy()
        assert it.n_samples == 1 + 0 + 5 + 5  # as many as the per-user draw takes
        user = np.searchsorted(split.starts, s, side="right") - 1
        assert np.array_equal(s, split.starts[user])
        offset = e - s - 1  # 0 .. n_prefixes - 1
        assert ((offset >= 0) & (offset < np.array([1, 0, 19, 99])[user])).all()
        np.add.at(per_user, user, 1)
        np.add.at(counts, offset[user == 3], 1)
    share = per_user / per_user.sum()
    np.testing.assert_allclose(share, [1 / 119, 0, 19 / 119, 99 / 119], atol=0.01)
    expected = counts.sum() / 99
    assert ((counts - expected) ** 2 / expected).sum() < 99 + 5 * np.sqrt(2 * 99)
    a, b = (SampledPrefixes(split, 5, 50, 64, draw="uniform", seed=3) for _ in range(2))
    a.order(2), b.order(2)
    assert torch.equal(a.end, b.end)


def test_train_result_counts_the_samples_of_an_epoch():
    from echorec.api import make_config
    from echorec.training.loop import train_model

    split = _split([6, 9, 12])  # leave-one-out: 4, 7 and 10 training items, so 3 + 6 + 9 prefixes
    for mode, k, want in (("prefix", 4, 18), ("sample", 4, 3 + 4 + 4), ("sample", 1, 3)):
        rc = make_config(model="gru4rec", train_mode=mode, prefixes_per_user=k, epochs=1, patience=0, hidden=8,
                         progress=False, threads=1)
        assert train_model(rc, split, quiet=True).samples_per_epoch == want, (mode, k)
