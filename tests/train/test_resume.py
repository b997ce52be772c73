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

from echorec.cli import main
from echorec.errors import EchorecError
from echorec.train import checkpoint as ck

ARGS = ["--model", "sasrec", "--hidden", "16", "--inner", "32", "--max-len", "10", "--batch-size", "8",
        "--epochs", "3", "--threads", "2", "--progress", "false", "--checkpoint-every", "5", "--patience", "0"]


@pytest.fixture
def data(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "log.txt"
    with open(path, "w") as f:
        for u in range(1, 301):
            f.write(f"{u} " + " ".join(str(int(x)) for x in rng.integers(1, 60, size=rng.integers(5, 15))) + "\n")
    return str(path)


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


def test_kill_9_mid_epoch_then_resume_equals_uninterrupted(tmp_path, data):
    env = {**os.environ, "ECHOREC_CACHE": str(tmp_path / "cache")}
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    p = run(["--dataset", data, "--out", a, *ARGS], env)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    p = run(["--dataset", data, "--out", b, *ARGS], env)
    ckpt = os.path.join(b, "checkpoint.safetensors")
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        pos = loop_position(ckpt) if os.path.exists(ckpt) else None
        if pos and pos["epoch"] == 2 and pos["step"] > 0:
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
    wa, wb = (ck.load_weights(os.path.join(x, "model.safetensors")) for x in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "w.safetensors")
    ck.save_weights(path, {"x": torch.ones(3)})

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "fsync", disk_full)
    with pytest.raises(OSError):
        ck.save_weights(path, {"x": torch.zeros(3)})
    assert torch.equal(ck.load_weights(path)["x"], torch.ones(3))
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
    kept = ck.load_weights(os.path.join(out, "model.safetensors"))  # epoch 1's best weights, loadable
    assert all(torch.isfinite(v).all() for v in kept.values())
