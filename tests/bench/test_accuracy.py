"""The study tables (mean/std, bold, best vs runner-up, paired tests) on fixed rows, and resuming."""

import csv
import json
import os
import random

import pytest

from echorec.bench.accuracy import (
    METRICS,
    aggregate,
    collect,
    dataset_label,
    parse_model_spec,
    parse_seeds,
    protocol,
    read_csv,
    run_study,
)
from echorec.errors import EchorecError


def _rows():
    # Model A beats B on NDCG@10 in every seed; B beats A on HR@5. C is last everywhere.
    vals = {"A": {"ndcg@10": [0.30, 0.32, 0.34], "hit@5": [0.50, 0.50, 0.50]},
            "B": {"ndcg@10": [0.20, 0.25, 0.27], "hit@5": [0.60, 0.62, 0.64]},
            "C": {"ndcg@10": [0.10, 0.10, 0.10], "hit@5": [0.10, 0.10, 0.10]}}
    rows = []
    for m, v in vals.items():
        for i, seed in enumerate((1, 2, 3)):
            r = {"dataset": "toy", "model": m, "seed": seed}
            r.update({f"test_{k}": v.get(k, [0.05, 0.05, 0.05])[i] for k in METRICS})
            r.update({"valid_ndcg@10": 0.0, "best_epoch": 2, "epochs_run": 3, "seconds_per_epoch": 1.5,
                      "train_seconds": 4.5})
            rows.append(r)
    return rows


def _line(md, model):
    return next(x for x in md.splitlines() if x.startswith(f"| {model} |"))


SMALL = os.path.join(os.path.dirname(__file__), "data", "results_small.csv")  # the rows of _rows(), as a file


def test_fixed_results_file_reads_back_as_the_rows():
    assert read_csv(SMALL) == _rows()


def test_aggregate_mean_std_bold_improvement_and_test():
    md = aggregate(read_csv(SMALL))
    cells = [c.strip() for c in _line(md, "A").split("|")[1:-1]]
    head = [c.strip() for c in next(x for x in md.splitlines() if x.startswith("| model")).split("|")[1:-1]]
    a = dict(zip(head, cells))
    assert a["runs"] == "3"
    assert a["NDCG@10"] == "**0.3200 ± 0.0200**"  # mean 0.32, sample std 0.02, best -> bold
    assert a["HR@5"] == "0.5000 ± 0.0000"  # not the best on this column
    b = dict(zip(head, [c.strip() for c in _line(md, "B").split("|")[1:-1]]))
    assert b["HR@5"] == "**0.6200 ± 0.0200**" and b["NDCG@10"] == "0.2400 ± 0.0361"
    imp = dict(zip(head, [c.strip() for c in _line(md, "best vs runner-up").split("|")[1:-1]]))
    assert imp["NDCG@10"] == f"{(0.32 - 0.24) / 0.24 * 100:+.1f}%"  # A over B
    assert imp["HR@5"] == f"{(0.62 - 0.50) / 0.50 * 100:+.1f}%"  # B over A
    # Paired test of A vs B on NDCG@10: differences .10, .07, .07 -> t = 8, p = 1 - 8/sqrt(66).
    assert "A vs B: ndcg@10: t = +8.00, p = 0.015 (n = 3)" in md


def test_aggregate_single_seed_has_no_std_and_no_test():
    rows = [r for r in _rows() if r["seed"] == 1]
    md = aggregate(rows)
    assert "| A | 1 | " in md and "±" not in _line(md, "A")
    assert "n/a (1 common seed)" in md


def test_echomamba_is_tested_against_the_best_other_model():
    rows = _rows()
    for r in rows:
        r["model"] = {"A": "sasrec", "B": "gru4rec", "C": "echomamba4rec"}[r["model"]]
    md = aggregate(rows)
    assert "sasrec vs gru4rec" in md and "echomamba4rec vs sasrec" in md


def test_seeds_and_labels():
    assert parse_seeds("3") == [42, 43, 44] and parse_seeds("1,7") == [1, 7]
    with pytest.raises(EchorecError):
        parse_seeds("x")
    with pytest.raises(EchorecError, match="--seeds 42,"):  # the seed 42, not 42 seeds
        parse_seeds("42")
    assert parse_seeds("42,") == [42] and len(parse_seeds("20")) == 20
    assert dataset_label("ml-100k") == "ml-100k"
    assert dataset_label(os.path.join("a", "LastFM", "LastFM.txt")) == "LastFM"


@pytest.fixture
def tiny(tmp_path):
    rnd = random.Random(0)
    path = tmp_path / "tiny.txt"
    path.write_text("".join(f"{u} " + " ".join(str(rnd.randint(1, 30)) for _ in range(rnd.randint(4, 12))) + "\n"
                            for u in range(40)))
    return str(path)


def test_study_runs_then_resumes_skipping_finished_cells(tmp_path, tiny):
    study = str(tmp_path / "study")
    proto = {"train.epochs": 1, "train.patience": 0}
    logs = []
    rows = run_study(study, ["gru4rec", "sasrec"], [tiny], [1, 2], proto, log=logs.append)
    assert len(rows) == 4 and sum("training" in x for x in logs) == 4
    mfile = os.path.join(study, "runs", "tiny", "sasrec", "seed2", "metrics.json")
    before = open(mfile).read()
    os.unlink(os.path.join(study, "runs", "tiny", "gru4rec", "seed1", "metrics.json"))  # one cell lost
    logs.clear()
    rows = run_study(study, ["gru4rec", "sasrec"], [tiny], [1, 2], proto, log=logs.append)
    assert sum("skipped" in x for x in logs) == 3
    assert sum(("training" in x or "resuming" in x) for x in logs) == 1
    assert open(mfile).read() == before and len(rows) == 4
    csv_rows = open(os.path.join(study, "results.csv")).read().splitlines()
    assert len(csv_rows) == 5 and csv_rows[0].startswith("dataset,model,seed,test_hit@5")
    md = open(os.path.join(study, "results.md")).read()
    assert "### tiny" in md and "| gru4rec | 2 |" in md and "| sasrec | 2 |" in md
    assert f"--datasets {tiny} --seeds 1,2 --epochs 1 --patience 0 --out {study}" in md  # a command that reruns it
    assert os.path.exists(os.path.join(study, "curves_tiny.png"))
    # A different protocol in the same study folder is refused, nothing is trained.
    with pytest.raises(EchorecError, match="another protocol"):
        run_study(study, ["sasrec"], [tiny], [3], {"train.epochs": 2, "train.patience": 0}, log=logs.append)
    assert not os.path.exists(os.path.join(study, "runs", "tiny", "sasrec", "seed3"))
    assert json.load(open(os.path.join(study, "study.json")))["protocol"]["train.epochs"] == 1
    assert len(collect(study)) == 4


def test_lr_decay_is_part_of_the_protocol(tmp_path, tiny):
    study = str(tmp_path / "study")
    proto = {"train.epochs": 3, "train.patience": 0, "train.lr": 0.5, "train.lr_decay": 0.5, "train.lr_patience": 1}
    run_study(study, ["sasrec"], [tiny], [1], proto, log=lambda m: None)
    run = os.path.join(study, "runs", "tiny", "sasrec", "seed1")
    cfg = json.load(open(os.path.join(run, "config.json")))["train"]
    assert (cfg["lr_decay"], cfg["lr_patience"]) == (0.5, 1)
    lrs = [float(r["lr"]) for r in csv.DictReader(open(os.path.join(run, "history.csv")))]
    assert lrs[0] == 0.5 and lrs[-1] < 0.5  # at lr 0.5 the valid score stalls at least once in 3 epochs
    assert "(times 0.5 after 1 epoch without valid NDCG@10 gain)" in open(os.path.join(study, "results.md")).read()
    with pytest.raises(EchorecError, match="lr_decay 0.5 -> 1.0"):  # a constant-lr re-run is another protocol
        run_study(study, ["sasrec"], [tiny], [1], {"train.epochs": 3, "train.patience": 0, "train.lr": 0.5}, log=lambda m: None)


def test_ema_is_part_of_the_protocol(tmp_path, tiny):
    study = str(tmp_path / "study")
    run_study(study, ["sasrec"], [tiny], [1], {"train.epochs": 1, "train.patience": 0, "train.ema": 0.9, "train.ema_warmup": 3.0},
              log=lambda m: None)
    run = os.path.join(study, "runs", "tiny", "sasrec", "seed1")
    train = json.load(open(os.path.join(run, "config.json")))["train"]
    assert train["ema"] == 0.9 and train["ema_warmup"] == 3.0
    assert "weights averaged (EMA, decay min(0.9, (1 + n) / (3 + n)) at step n)" in open(
        os.path.join(study, "results.md")).read()
    from echorec.training.checkpoint import load_checkpoint

    assert load_checkpoint(os.path.join(run, "checkpoint.safetensors"))["ema"] is not None  # it really averaged
    with pytest.raises(EchorecError, match="ema 0.9 -> 0.0"):
        run_study(study, ["sasrec"], [tiny], [1], {"train.epochs": 1, "train.patience": 0}, log=lambda m: None)
    with pytest.raises(EchorecError, match="ema_warmup 3.0 -> 10.0"):
        run_study(study, ["sasrec"], [tiny], [1], {"train.epochs": 1, "train.patience": 0, "train.ema": 0.9}, log=lambda m: None)


def test_same_seed_same_metrics(tmp_path, tiny):
    proto = {"train.epochs": 1, "train.patience": 0}
    a = run_study(str(tmp_path / "a"), ["sasrec"], [tiny], [5], proto, log=lambda m: None)
    b = run_study(str(tmp_path / "b"), ["sasrec"], [tiny], [5], proto, log=lambda m: None)
    assert [r["test_ndcg@10"] for r in a] == [r["test_ndcg@10"] for r in b]


def test_user_mistakes_fail_before_the_study_folder_exists(tmp_path, tiny):
    for models, datasets, proto, msg in [
            (["nope"], [tiny], {"train.epochs": 1}, "unknown model"),
            (["sasrec"], [str(tmp_path / "missing.txt")], {"train.epochs": 1}, "neither a file"),
            (["sasrec"], [tiny], {"train.epochs": 1, "eval.valid_metric": "ndcg10"}, "valid-metric"),
            (["echomamba4rec"], [tiny], {"train.epochs": 1, "data.train_mode": "all"}, "needs a causal model"),
            (["sasrec"], [tiny], {"train.epochs": 1, "train.lr_decay": 0.0}, "lr-decay"),
            (["sasrec"], [tiny], {"train.epochs": 1, "train.ema": 1.0}, "--ema 1.0"),
            (["sasrec"], [tiny], {"train.epochs": 1, "train.ema": 0.9, "train.ema_warmup": 1.0}, "--ema-warmup 1.0")]:
        study = str(tmp_path / "s")
        with pytest.raises(EchorecError, match=msg):
            run_study(study, models, datasets, [1], proto, log=lambda m: None)
        assert not os.path.exists(study)


def test_protocol_is_derived_from_the_config_and_typed():
    p = protocol()
    assert p["train.epochs"] == 200 and p["eval.exclude_history"] is True  # the study's one own default
    assert "train.label_smoothing" in p and "train.weight_decay" in p  # every training setting, no list kept here
    assert not any(k in p for k in ("data.dataset", "train.seed", "train.threads"))  # set per cell
    assert protocol({"train.epochs": "3", "train.lr": "0.01"}) == protocol({"train.epochs": 3, "train.lr": 0.01})
    with pytest.raises(EchorecError, match="not a study setting"):
        protocol({"train.seed": 1})


def test_model_specs_are_ablation_columns(tmp_path, tiny):
    assert parse_model_spec("echomamba4rec+filter=false+glu=none") == (
        "echomamba4rec", {"model_cfg.filter": "false", "model_cfg.glu": "none"})
    study = str(tmp_path / "study")
    rows = run_study(study, ["sasrec", "sasrec+layers=1"], [tiny], [1], {"train.epochs": 1}, log=lambda m: None)
    assert {r["model"] for r in rows} == {"sasrec", "sasrec+layers=1"}
    assert "--seeds 1, " in open(os.path.join(study, "results.md")).read()  # the seed 1, not a count of 1 (= 42)
    cfg = json.load(open(os.path.join(study, "runs", "tiny", "sasrec+layers=1", "seed1", "config.json")))
    assert cfg["model"] == "sasrec" and cfg["model_cfg"]["layers"] == 1
    with pytest.raises(EchorecError, match="--glu 'max'"):
        run_study(str(tmp_path / "s2"), ["echomamba4rec+glu=max"], [tiny], [1], {}, log=lambda m: None)
    assert not os.path.exists(tmp_path / "s2")


def test_older_study_json_keeps_its_protocol(tmp_path, tiny):
    """study.json written before the protocol was the whole config named 12 keys; the others had their defaults."""
    study = tmp_path / "old"
    study.mkdir()
    old = {"epochs": 1, "patience": 0, "max_len": 50, "batch_size": 256, "lr": 0.001, "exclude_history": True,
           "train_mode": "prefix", "valid_metric": "ndcg@10"}  # before lr_decay and ema joined it
    (study / "study.json").write_text(json.dumps({"protocol": old, "created": "2026-11-01 10:00:00",
                                                  "commit": "abc1234", "machine": "x"}))
    rows = run_study(str(study), ["sasrec"], [tiny], [1], {"train.epochs": 1, "train.patience": 0},
                     log=lambda m: None)
    assert len(rows) == 1
    assert "Protocol: leave-one-out, prefix training samples, max_len 50" in open(study / "results.md").read()
    with pytest.raises(EchorecError, match="train.weight_decay 0.0 -> 0.1"):
        run_study(str(study), ["sasrec"], [tiny], [1], {"train.epochs": 1, "train.patience": 0,
                                                        "train.weight_decay": 0.1}, log=lambda m: None)


def test_parallel_jobs_train_the_same_cells_as_one_process(tmp_path, tiny):
    """--jobs 2: every cell as its own `echorec train` process, two at a time; the metrics are the in-process
    study's, a crashed cell is named with its log and does not stop the others."""
    proto = {"train.epochs": 2, "train.patience": 0}
    seq = run_study(str(tmp_path / "one"), ["gru4rec", "sasrec"], [tiny], [1, 2], proto, threads=1, log=lambda m: None)
    logs = []
    par = run_study(str(tmp_path / "two"), ["gru4rec", "sasrec"], [tiny], [1, 2], proto, threads=1, log=logs.append,
                    jobs=2)
    key = lambda r: (r["model"], r["seed"])  # noqa: E731
    for a, b in zip(sorted(seq, key=key), sorted(par, key=key)):
        assert key(a) == key(b) and a["test_ndcg@10"] == pytest.approx(b["test_ndcg@10"], rel=1e-6)
    assert sum("(log " in x for x in logs) == 4 and os.path.exists(tmp_path / "two" / "results.md")
    assert os.path.exists(tmp_path / "two" / "jobs" / "tiny__sasrec__seed2.log")
    # Cells on a log too short to train on fail; the cells beside them finish and fill the tables.
    broken = tmp_path / "broken.txt"
    broken.write_text("1 2\n")
    study = str(tmp_path / "three")
    with pytest.raises(EchorecError, match=r"1 cell\(s\) failed.*broken gru4rec seed 1 \(see .*broken__gru4rec"):
        run_study(study, ["gru4rec"], [str(broken), tiny], [1], proto, threads=1, log=lambda m: None, jobs=2)
    assert [(r["dataset"], r["model"]) for r in collect(study)] == [("tiny", "gru4rec")]
    assert "nothing can be evaluated" in open(os.path.join(study, "jobs", "broken__gru4rec__seed1.log")).read()
