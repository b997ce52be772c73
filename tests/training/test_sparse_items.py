"""--sparse-items: row-sparse item-table gradients and the lazy Adam, checked against torch's own Adam (dense
parameters), SparseAdam (sparse ones) and clip_grad_norm_; rows a step does not touch stay as they were;
training and exact resume through the CLI; the settings it refuses."""

import json
import os

import pytest
import torch

from echorec.cli import main
from echorec.training.optim import RowSparseAdam, clip_grad_norm


def test_dense_parameters_follow_torch_adam():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(7, 3))
    b = torch.nn.Parameter(a.detach().clone())
    oa, ob = torch.optim.Adam([a], lr=0.01), RowSparseAdam([b], lr=0.01)
    for _ in range(6):
        g = torch.randn(7, 3)
        a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    assert torch.equal(a, b)


def test_sparse_rows_follow_sparse_adam_and_untouched_rows_stay():
    torch.manual_seed(0)
    e1, e2 = torch.nn.Embedding(20, 4, sparse=True), torch.nn.Embedding(20, 4, sparse=True)
    e2.load_state_dict(e1.state_dict())
    o1, o2 = torch.optim.SparseAdam(e1.parameters(), lr=0.01), RowSparseAdam(e2.parameters(), lr=0.01)
    before = e2.weight.detach().clone()
    for _ in range(5):
        idx = torch.tensor([1, 3, 3, 7])  # a repeated row sums its gradients
        for e, o in ((e1, o1), (e2, o2)):
            o.zero_grad()
            (e(idx) ** 2).sum().backward()
            o.step()
    torch.testing.assert_close(e1.weight, e2.weight, rtol=1e-6, atol=1e-7)
    untouched = [i for i in range(20) if i not in (1, 3, 7)]
    assert torch.equal(e2.weight[untouched], before[untouched])
    assert not torch.equal(e2.weight[[1, 3, 7]], before[[1, 3, 7]])
    state = o2.state[e2.weight]
    assert state["exp_avg"][untouched].abs().sum() == 0  # lazy: moments exist only for rows that were used


def test_clipping_equals_torch_on_the_dense_equivalent():
    torch.manual_seed(0)
    e, lin = torch.nn.Embedding(10, 4, sparse=True), torch.nn.Linear(4, 4)
    (lin(e(torch.tensor([1, 2, 2, 5]))).sum() * 10).backward()
    grads = (e.weight.grad.to_dense(), lin.weight.grad, lin.bias.grad)
    dense = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(dense, grads):
        p.grad = g.clone()
    want = torch.nn.utils.clip_grad_norm_(dense, 0.5)
    got = clip_grad_norm(list(e.parameters()) + list(lin.parameters()), 0.5)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    torch.testing.assert_close(e.weight.grad.to_dense(), dense[0].grad)
    torch.testing.assert_close(lin.weight.grad, dense[1].grad)


ARGS = ["--model", "sasrec", "--hidden", "16", "--inner", "32", "--max-len", "8", "--loss", "sampled",
        "--negatives", "20", "--sparse-items", "true", "--patience", "0", "--progress", "false",
        "--checkpoint-every", "3"]


def test_trains_and_resumes_exactly(tmp_path, seq_file):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(["train", "--dataset", seq_file, "--out", a, "--epochs", "3", *ARGS]) == 0
    assert main(["train", "--dataset", seq_file, "--out", b, "--epochs", "2", *ARGS]) == 0
    assert main(["train", "--resume", b, "--epochs", "3"]) == 0
    ma, mb = (json.load(open(os.path.join(x, "metrics.json"))) for x in (a, b))
    assert ma["test"] == mb["test"] and ma["valid"] == mb["valid"]
    assert ma["test"]["hit@10"] > 0.3  # it learned (chance is 10/40)


@pytest.mark.parametrize("extra,words", [
    (["--loss", "full"], "--loss sampled"),
    (["--weight-decay", "0.01"], "--weight-decay 0"),
    (["--ema", "0.99"], "--ema 0"),
])
def test_refused_combinations(tmp_path, seq_file, capsys, extra, words):
    out = tmp_path / "run"
    assert main(["train", "--dataset", seq_file, "--out", str(out), "--epochs", "1", *ARGS, *extra]) == 2
    assert words in capsys.readouterr().err and not out.exists()
