"""`bench speed` on one small cell and the CLI; `tune` resumes and feeds `bench accuracy`."""

import json
import os
import random

import pytest

from echorec.bench.speed import measure
from echorec.cli import main


def test_measure_one_cell():
    r = measure("gru4rec", 12, 50, 8, 5, "cpu", "off", b1_calls=5)
    assert r["params"] > 0 and r["length"] == 12
    assert r["train_ms_per_1000"] > 0 and r["b1_p50_ms"] <= r["b1_p99_ms"]
    assert r["b256_p50_ms_per_user"] <= r["b256_p99_ms_per_user"]


def test_speed_cli_writes_tables_and_plots(tmp_path, capsys):
    out = str(tmp_path / "sp")
    assert main(["bench", "speed", "--models", "sasrec", "--lengths", "8,16", "--out", out, "--n-items", "40",
                 "--batch-size", "4", "--amp", "off"]) == 0
    md = open(os.path.join(out, "speed.md")).read()
    assert "| sasrec | 8 |" in md and "| sasrec | 16 |" in md
    assert len(open(os.path.join(out, "speed.csv")).read().splitlines()) == 3
    assert os.path.exists(os.path.join(out, "speed_time.png"))
    assert main(["bench", "speed", "--models", "nope", "--out", out]) == 2
    assert main(["bench", "speed", "--models", "sasrec", "--lengths", "8", "--repeats", "2", "--out", out]) == 2
    assert main(["bench", "nope"]) == 2


def test_tune_resumes_and_bench_uses_best(tmp_path, capsys):
    pytest.importorskip("optuna")
    rnd = random.Random(1)
    data = tmp_path / "tiny.txt"
    data.write_text("".join(f"{u} " + " ".join(str(rnd.randint(1, 25)) for _ in range(rnd.randint(4, 10))) + "\n"
                            for u in range(30)))
    out = str(tmp_path / "study")
    base = ["--models", "gru4rec", "--datasets", str(data), "--out", out, "--epochs", "1", "--patience", "0"]
    assert main(["tune", *base, "--trials", "2"]) == 0
    tuned = os.path.join(out, "tuned", "tiny", "gru4rec.json")
    first = json.load(open(tuned))
    assert len(first["trials"]) == 2 and set(first["best"]) >= {"train.lr", "model_cfg.dropout"}
    assert main(["tune", *base, "--trials", "3"]) == 0  # resumes: two replayed, one new
    again = json.load(open(tuned))
    assert again["trials"][:2] == first["trials"] and len(again["trials"]) == 3
    assert main(["bench", "accuracy", *base, "--seeds", "1"]) == 0
    cfg = json.load(open(os.path.join(out, "runs", "tiny", "gru4rec", "seed42", "config.json")))
    assert cfg["train"]["lr"] == pytest.approx(again["best"]["train.lr"])
    assert cfg["model_cfg"]["dropout"] == pytest.approx(again["best"]["model_cfg.dropout"])
