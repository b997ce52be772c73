"""The GPU path's host-side rules, checked on the CPU: few batch shapes when widths are rounded up, batches
from the device-side gather equal to the host ones, and a non-finite loss reported at its own step when the
loss is read back only every N steps."""

import pytest
import torch

from echorec.cli import main
from echorec.data.preprocess import SeqData
from echorec.data.split import BatchIterator, leave_one_out
from echorec.training import loop as tl


def _split(n_users=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 90, (n_users,), generator=g)
    items = torch.randint(1, 200, (int(lengths.sum()),), generator=g).numpy()
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).numpy()
    import numpy as np

    data = SeqData(items, offsets, np.array([str(i) for i in range(1, 200)]), np.array([str(u) for u in range(n_users)]))
    return leave_one_out(data)


def test_rounded_widths_give_few_shapes_and_the_same_rows():
    split = _split()
    start, end = split.train_samples("prefix", 50)
    exact = BatchIterator(split, start, end, 50, 64, seed=1)
    rounded = BatchIterator(split, start, end, 50, 64, seed=1, multiple=8)
    shapes = {b.seq.shape[1] for _, b in rounded.epoch(1)}
    assert shapes <= {8, 16, 24, 32, 40, 48, 50} and len(shapes) <= 50 // 8 + 1
    assert len({b.seq.shape[1] for _, b in exact.epoch(1)}) > 20  # exact widths: nearly every length
    for (_, a), (_, b) in zip(exact.epoch(1), rounded.epoch(1)):
        w = a.seq.shape[1]
        assert torch.equal(b.seq[:, -w:], a.seq) and not b.seq[:, :-w].any()  # only more left padding
        assert torch.equal(a.target, b.target)


def test_epoch_batches_equal_batches_made_from_the_order():
    split = _split(seed=3)
    start, end = split.train_samples("all", 20)
    it = BatchIterator(split, start, end, 20, 32, mode="all", seed=5)
    got = list(it.epoch(2, start_step=3, shard=(1, 2)))
    want = [it.make(idx[1::2]) for idx in it.order(2)][3:]
    assert [s for s, _ in got] == list(range(3, 3 + len(want)))
    for (_, a), b in zip(got, want):
        assert torch.equal(a.seq, b.seq) and torch.equal(a.targets, b.targets)


@pytest.mark.parametrize("sync_every", [1, 7])
def test_non_finite_loss_is_reported_at_its_step(tmp_path, data, small_sasrec, monkeypatch, capsys, sync_every):
    from echorec.models.sasrec import SASRec

    monkeypatch.setitem(tl.SYNC_EVERY, "cpu", sync_every)
    real, calls = SASRec.loss, {"n": 0}

    def flaky(self, batch):
        calls["n"] += 1
        loss = real(self, batch)
        return loss * float("inf") if calls["n"] == 5 else loss  # the fifth step of epoch 1 (step 4)

    monkeypatch.setattr(SASRec, "loss", flaky)
    out = tmp_path / "r"
    assert main(["train", "--dataset", data, *small_sasrec, "--epochs", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: loss is inf at epoch 1 step 4;") or err.startswith("error: loss is nan at epoch 1 step 4;"), err
    assert not (out / "checkpoint.safetensors").exists()  # the bad steps never reached a checkpoint


@pytest.mark.parametrize("name", ["sasrec", "echomamba4rec"])
def test_training_step_traces_into_one_graph(name):
    """The prefix-mode training forward holds no branch on a tensor's value: on a GPU such a branch is a host
    round-trip every step, and under torch.compile a graph break. (The Mamba scan runs as torch ops here: the
    numba kernels are opaque to tracing, the Triton ones are traced on CUDA.)"""
    from echorec.data.split import Batch
    from echorec.models import build_model

    torch.manual_seed(0)
    model = build_model(name, 200, None, 50).train()
    model.prepare_export()  # the scan as plain torch ops
    seq = torch.randint(1, 200, (8, 24))
    seq[:3, :5] = 0  # some rows padded, as in nearly every rounded-up batch
    torch._dynamo.reset()
    ex = torch._dynamo.explain(model)(Batch(seq, target=torch.randint(1, 200, (8,))))
    assert ex.graph_break_count == 0 and ex.graph_count == 1, [str(r.reason)[:300] for r in ex.break_reasons]


def test_a_compile_mode_without_compile_is_refused(refused):
    assert "--compile-mode reduce-overhead needs --compile true" in refused("--compile-mode", "reduce-overhead")
