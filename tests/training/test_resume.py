"""Exact resume after kill -9, atomic checkpoint writes, config checks on resume, NaN stop."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from echorec import fsio
from echorec import runfolder as rf
from echorec.cli import main
from echorec.training import checkpoint as ck

ARGS = ["--model", "sasrec", "--hidden", "16", "--inner", "32", "--max-len", "10", "--batch-size", "8",
        "--epochs", "3", "--threads", "2", "--progress", "false", "--checkpoint-every", "5", "--patience", "0"]
# Checkpoints by time alone (every 30 ms here; 10 minutes by default), so the kill can land in the first epoch.
BY_TIME = [a for a in ARGS if a not in ("--checkpoint-every", "5")] + ["--checkpoint-minutes", "0.0005"]


def run(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "echorec", "train", *args], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)


def loop_position(path):
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return json.loads(f.metadata()["loop"])
    except Exception:
        return None


@pytest.mark.parametrize("args,kill_epoch", [(ARGS, 2), (BY_TIME, 1)], ids=["every-5-steps", "by-time-first-epoch"])
def test_kill_9_mid_epoch_then_resume_equals_uninterrupted(tmp_path, data, args, kill_epoch):
    env = {**os.environ, "ECHOREC_CACHE": str(tmp_path / "cache")}
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    p = run(["--dataset", data, "--out", a, *args], env)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    p = run(["--dataset", data, "--out", b, *args], env)
    ckpt = os.path.join(b, "checkpoint.safetensors")
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        pos = loop_position(ckpt) if os.path.exists(ckpt) else None
        if pos and pos["epoch"] == kill_epoch and pos["step"] > 0:
            p.send_signal(signal.SIGKILL)
            killed_at = pos
            break
        time.sleep(0.01)
    p.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    assert not os.path.exists(os.path.join(b, "metrics.json"))
    p = subprocess.run([sys.executable, "-m", "echorec", "train", "--resume", b], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "resuming" in p.stderr
    ma, mb = (json.load(open(os.path.join(x, "metrics.json"))) for x in (a, b))
    assert ma["test"] == mb["test"] and ma["valid"] == mb["valid"] and ma["best_epoch"] == mb["best_epoch"]
    wa, wb = (rf.load_weights(os.path.join(x, "model.safetensors")) for x in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_with_more_epochs_equals_the_longer_run(tmp_path, data, capsys):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    base = ["train", "--dataset", data, *ARGS[:-6]]  # ARGS less --epochs 3 ... --patience 0
    assert main([*base, "--out", a, "--epochs", "3", "--patience", "0"]) == 0
    assert main([*base, "--out", b, "--epochs", "2", "--patience", "0"]) == 0
    assert json.load(open(os.path.join(b, "metrics.json")))["epochs_run"] == 2
    assert main(["train", "--resume", b, "--epochs", "3", "--threads", "1"]) == 0  # threads: how, not what
    assert "resuming" in capsys.readouterr().err
    ma, mb = (json.load(open(os.path.join(x, "metrics.json"))) for x in (a, b))
    assert mb["epochs_run"] == 3 and ma["test"] == mb["test"] and ma["best_epoch"] == mb["best_epoch"]
    wa, wb = (rf.load_weights(os.path.join(x, "model.safetensors")) for x in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.load(open(os.path.join(b, "config.json")))["train"]["epochs"] == 3  # the folder rebuilds the run
    before = open(os.path.join(b, "config.json")).read()
    assert main(["train", "--resume", b, "--epochs", "2"]) == 2  # fewer than already trained: refused
    assert "already trained 3 epochs" in capsys.readouterr().err
    assert open(os.path.join(b, "config.json")).read() == before  # and nothing rewritten


def test_resume_with_higher_patience_trains_on_after_an_early_stop(tmp_path, data, monkeypatch, capsys):
    from echorec.training import loop as tl

    out = str(tmp_path / "p")
    # Valid scores in call order: epochs 1-3, the final evaluations of the first two invocations
    # (0.0), then epochs 4-6: best at epoch 1, then at 4.
    scores = iter([0.5, 0.4, 0.3, 0.0, 0.0, 0.6, 0.2, 0.1])

    def fake_eval(model, split, which, *a, **k):
        return {"ndcg@10": next(scores, 0.0) if which == "valid" else 0.0, "hit@10": 0.0}

    monkeypatch.setattr(tl, "evaluate", fake_eval)
    base = ["train", "--dataset", data, *ARGS[:-6], "--epochs", "6", "--valid-metric", "ndcg@10"]
    assert main([*base, "--out", out, "--patience", "2"]) == 0
    assert json.load(open(os.path.join(out, "metrics.json")))["epochs_run"] == 3  # stopped: 2 epochs without gain
    assert main(["train", "--resume", out, "--patience", "2"]) == 0  # same patience: still stopped
    assert json.load(open(os.path.join(out, "metrics.json")))["epochs_run"] == 3
    assert main(["train", "--resume", out, "--patience", "3"]) == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["epochs_run"] == 6 and m["best_epoch"] == 4


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "w.safetensors")
    rf.save_weights(path, {"x": torch.ones(3)})

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsio.os, "fsync", disk_full)
    with pytest.raises(OSError):
        rf.save_weights(path, {"x": torch.zeros(3)})
    assert torch.equal(rf.load_weights(path)["x"], torch.ones(3))
    assert os.listdir(tmp_path) == ["w.safetensors"]  # no temp file left behind


def test_resume_with_other_config_is_refused(tmp_path, data, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "--dataset", data, "--out", out, *ARGS[:-4], "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", out, "--lr", "0.5", "--max-len", "12"]) == 2
    err = capsys.readouterr().err
    assert "differs in" in err and "train.lr" in err and "data.max_len" in err


def test_nan_loss_stops_and_keeps_best_weights(tmp_path, data, monkeypatch, capsys):
    from echorec.models.sasrec import SASRec

    real = SASRec.loss
    calls = {"n": 0}

    def flaky(self, batch):
        calls["n"] += 1
        loss = real(self, batch)
        return loss * float("nan") if calls["n"] > 300 else loss  # NaN in the second epoch

    monkeypatch.setattr(SASRec, "loss", flaky)
    out = str(tmp_path / "n")
    assert main(["train", "--dataset", data, "--out", out, *ARGS]) == 2
    assert "loss is nan" in capsys.readouterr().err
    kept = rf.load_weights(os.path.join(out, "model.safetensors"))  # epoch 1's best weights, loadable
    assert all(torch.isfinite(v).all() for v in kept.values())


def test_lr_decays_on_plateau_and_a_resume_keeps_the_decayed_lr(tmp_path, data, monkeypatch, capsys, refused):
    import csv

    from echorec.training import loop as tl

    scores = []  # valid scores in call order; the final valid/test evaluations of a run take one each

    def fake_eval(model, split, which, *a, **k):
        return {"ndcg@10": (scores.pop(0) if scores else 0.0) if which == "valid" else 0.0, "hit@10": 0.0}

    monkeypatch.setattr(tl, "evaluate", fake_eval)
    base = ["train", "--dataset", data, *ARGS[:-6], "--patience", "0", "--valid-metric", "ndcg@10",
            "--lr", "0.001", "--lr-decay", "0.5", "--lr-patience", "2"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    # Best at 1; epochs 2-3 without gain -> decay; a new best at 4; 5-6 without gain -> decay again.
    scores[:] = [0.5, 0.4, 0.3, 0.6, 0.2, 0.1]
    assert main([*base, "--out", a, "--epochs", "6"]) == 0
    assert capsys.readouterr().err.count("lr -> ") == 2
    lrs = [float(r["lr"]) for r in csv.DictReader(open(os.path.join(a, "history.csv")))]
    assert lrs == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4]  # the lr each epoch trained with
    assert ck.load_checkpoint(os.path.join(a, "checkpoint.safetensors"))["optimizer"]["param_groups"][0]["lr"] == 2.5e-4
    scores[:] = [0.5, 0.4, 0.3, 0.0, 0.6, 0.2, 0.1]  # the same, split 3 + 3 by a resume
    assert main([*base, "--out", b, "--epochs", "3"]) == 0
    # Make it a checkpoint from before --lr-decay existed (no lr_bad in its loop): still resumes.
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = os.path.join(b, "checkpoint.safetensors")
    with safe_open(path, framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    old_loop = json.loads(meta["loop"])
    assert old_loop.pop("lr_bad") == 0  # epoch 3 ended with a decay
    save_file(tensors, path, metadata={**meta, "loop": json.dumps(old_loop)})
    assert main(["train", "--resume", b, "--epochs", "6"]) == 0
    assert [float(r["lr"]) for r in csv.DictReader(open(os.path.join(b, "history.csv")))] == lrs
    wa, wb = (rf.load_weights(os.path.join(x, "model.safetensors")) for x in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # epoch 4's weights, trained at the decayed lr
    assert "--lr-decay 0.0" in refused("--lr-decay", "0")  # refused before the run folder is made
