"""Tracking: train.log holds what the run printed; --logger tensorboard / mlflow receive per-epoch losses,
metrics, lr and times plus the config, read back here from what they wrote."""

import os

import pytest

from echorec.cli import main

FAST = ["--model", "sasrec", "--hidden", "16", "--inner", "32", "--max-len", "8", "--epochs", "3", "--patience", "0",
        "--progress", "false"]


def _history(out):
    import csv

    return list(csv.DictReader(open(os.path.join(out, "history.csv"))))


def test_train_log_holds_what_was_printed(tmp_path, seq_file, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--dataset", seq_file, "--out", out, *FAST]) == 0
    err = capsys.readouterr().err
    log = open(os.path.join(out, "train.log")).read()
    printed = [line for line in err.splitlines() if line.startswith(("epoch", "[echorec]"))]
    assert len(printed) >= 4
    for line in printed:
        assert line in log
    assert "done: best epoch" in log and '"ndcg@10"' in log
    # A resume appends to it; an error lands in it too.
    assert main(["train", "--resume", out, "--epochs", "4"]) == 0
    log = open(os.path.join(out, "train.log")).read()
    assert log.count("done: best epoch") == 2 and "resuming" in log


def test_tensorboard_receives_epochs_and_config(tmp_path, seq_file):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = str(tmp_path / "run")
    assert main(["train", "--dataset", seq_file, "--out", out, *FAST, "--logger", "tensorboard"]) == 0
    acc = EventAccumulator(os.path.join(out, "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/seconds", "train/eval_seconds", "valid/ndcg@10", "test/ndcg@10"} <= tags
    hist = _history(out)
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([float(r["loss"]) for r in hist], rel=1e-6)
    assert [e.value for e in acc.Scalars("valid/ndcg@10")] == pytest.approx([float(r["valid_ndcg@10"]) for r in hist],
                                                                             rel=1e-6)
    text = str(acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0])
    assert "train.lr" in text and "data.max_len = 8" in text


def test_mlflow_receives_epochs_params_and_final_metrics(tmp_path, seq_file, monkeypatch):
    pytest.importorskip("mlflow")
    import json

    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = str(tmp_path / "run")
    assert main(["train", "--dataset", seq_file, "--out", out, *FAST, "--logger", "mlflow"]) == 0
    client = MlflowClient(tracking_uri="sqlite:///" + os.path.join(out, "mlflow.db"))
    (run,) = client.search_runs([client.get_experiment_by_name("echorec").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["model"] == "sasrec" and run.data.params["data.max_len"] == "8"
    hist = _history(out)
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in loss) == [1, 2, 3]
    assert [m.value for m in sorted(loss, key=lambda m: m.step)] == pytest.approx([float(r["loss"]) for r in hist])
    assert {"lr", "seconds", "eval_seconds", "valid_ndcg_at_10", "test_ndcg_at_10"} <= set(run.data.metrics)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert run.data.metrics["test_ndcg_at_10"] == pytest.approx(metrics["test"]["ndcg@10"])


def test_missing_logger_package_is_one_line_before_anything_is_written(tmp_path, seq_file, capsys, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mlflow(name, *a, **k):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("No module named 'mlflow'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    out = tmp_path / "run"
    assert main(["train", "--dataset", seq_file, "--out", str(out), *FAST, "--logger", "mlflow"]) == 2
    assert capsys.readouterr().err.strip() == "error: --logger mlflow needs the mlflow package: pip install " \
                                              "'echorec[mlflow]'"
    assert not out.exists()
