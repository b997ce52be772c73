"""--ema: the moving average of the weights against a naive recomputation, its exact resume, bad values."""

import json
import os

import pytest
import torch

from echorec import runfolder as rf
from echorec.cli import main
from echorec.training import checkpoint as ck
from echorec.training import loop as tl


def test_ema_update_by_hand():
    avg, model = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        avg.weight.fill_(1.0), avg.bias.fill_(0.0), model.weight.fill_(3.0), model.bias.fill_(-2.0)
    tl.ema_update(avg, model, 0.99, 0)  # warm-up: d = min(0.99, 1/10) = 0.1
    assert avg.weight.item() == pytest.approx(0.1 * 1 + 0.9 * 3) and avg.bias.item() == pytest.approx(0.9 * -2)
    tl.ema_update(avg, model, 0.5, 90)  # d = min(0.5, 91/100) = 0.5
    assert avg.weight.item() == pytest.approx(0.5 * 2.8 + 0.5 * 3)
    assert model.weight.item() == 3.0  # the model is read, never written


def test_warmup_2_is_the_running_mean_until_the_decay_binds():
    avg, model = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    seen = [0.0]
    with torch.no_grad():
        avg.weight.fill_(0.0)
        for n, w in enumerate([4.0, -2.0, 7.0, 1.0]):
            model.weight.fill_(w)
            seen.append(w)
            tl.ema_update(avg, model, 0.99, n, warmup=2.0)
            assert avg.weight.item() == pytest.approx(sum(seen) / len(seen))
        model.weight.fill_(10.0)
        tl.ema_update(avg, model, 0.5, 4, warmup=2.0)  # d = min(0.5, 5/6): the decay binds
        assert avg.weight.item() == pytest.approx(0.5 * 2.0 + 0.5 * 10.0)


@pytest.mark.parametrize("warmup", [None, 3.0])
def test_saved_weights_are_the_naive_average_and_training_is_untouched(tmp_path, data, small_sasrec, monkeypatch,
                                                                       warmup):
    raw = []  # the trained weights after every optimizer step, in float64
    real = tl.ema_update

    def record(avg, model, decay, updates, tensors=None, warmup=10.0):
        raw.append({k: v.detach().double().clone() for k, v in model.state_dict().items()})
        real(avg, model, decay, updates, tensors, warmup)

    monkeypatch.setattr(tl, "ema_update", record)
    # Rising valid scores make the last epoch the best, so model.safetensors holds the final average.
    scores = iter(range(100))
    monkeypatch.setattr(tl, "evaluate", lambda *a, **k: {"ndcg@10": float(next(scores)), "hit@10": 0.0})
    init = None

    def keep_init(*a, **k):
        nonlocal init
        m = real_build(*a, **k)
        init = {k2: v.detach().double().clone() for k2, v in m.state_dict().items()}
        return m

    real_build = tl.build_model
    monkeypatch.setattr(tl, "build_model", keep_init)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    extra = ["--ema-warmup", str(warmup)] if warmup else []
    assert main(["train", "--dataset", data, *small_sasrec, "--epochs", "2", "--ema", "0.95", *extra, "--out", a]) == 0
    saved = rf.load_weights(os.path.join(a, "model.safetensors"))
    naive = dict(init)
    for n, w in enumerate(raw):
        d = min(0.95, (1 + n) / ((warmup or 10) + n))
        naive = {k: d * naive[k] + (1 - d) * w[k] for k in naive}
    assert len(raw) > 20 and set(saved) == set(naive)
    for k in saved:
        assert torch.allclose(saved[k].double(), naive[k], atol=1e-6), k
    assert any(not torch.allclose(saved[k].double(), raw[-1][k], atol=1e-4) for k in saved)  # not the raw weights
    c = ck.load_checkpoint(os.path.join(a, "checkpoint.safetensors"))
    assert all(torch.equal(c["ema"][k], saved[k]) for k in saved)
    # The average only reads the weights: the raw weights end where a run without --ema ends.
    assert main(["train", "--dataset", data, *small_sasrec, "--epochs", "2", "--out", b]) == 0
    c0 = ck.load_checkpoint(os.path.join(b, "checkpoint.safetensors"))
    assert c0["ema"] is None
    assert all(torch.equal(c["model"][k], c0["model"][k]) for k in c0["model"])


def test_resume_keeps_the_average(tmp_path, data, monkeypatch, small_sasrec):
    # Rising valid scores make the last epoch the best, so the resumed epoch's average is what is saved.
    scores = iter(range(100))
    monkeypatch.setattr(tl, "evaluate", lambda *a, **k: {"ndcg@10": float(next(scores)), "hit@10": 0.0})
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    base = ["train", "--dataset", data, *small_sasrec, "--ema", "0.9"]
    assert main([*base, "--out", a, "--epochs", "3"]) == 0
    assert main([*base, "--out", b, "--epochs", "2"]) == 0
    assert main(["train", "--resume", b, "--epochs", "3"]) == 0
    ma, mb = (json.load(open(os.path.join(x, "metrics.json"))) for x in (a, b))
    assert ma["best_epoch"] == mb["best_epoch"] == 3
    wa, wb = (rf.load_weights(os.path.join(x, "model.safetensors")) for x in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ca, cb = (ck.load_checkpoint(os.path.join(x, "checkpoint.safetensors")) for x in (a, b))
    assert all(torch.equal(ca["ema"][k], cb["ema"][k]) for k in ca["ema"])
    assert json.load(open(os.path.join(b, "config.json")))["train"]["ema"] == 0.9


@pytest.mark.parametrize("bad", ["1", "-0.1", "1.5"])
def test_bad_ema_is_refused_before_anything_is_written(refused, bad):
    assert f"--ema {float(bad)}" in refused("--ema", bad)


@pytest.mark.parametrize("bad", ["1", "0.5", "-3"])
def test_bad_ema_warmup_is_refused_before_anything_is_written(refused, bad):
    assert f"--ema-warmup {float(bad)}" in refused("--ema", "0.9", "--ema-warmup", bad)
