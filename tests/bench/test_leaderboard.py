"""The leaderboard plan: settings precedence, the paired per-user test and the mode rule against hand
computations, plan errors, and a whole small plan run twice (the second run trains nothing), reused records,
a changed plan refused, and the tables rebuilt from the records alone."""

import json
import math
import os
import shutil
import statistics

import pytest
import torch

from echorec.bench import leaderboard as lb
from echorec.bench import plan as lp
from echorec.bench import records as lr
from echorec.bench.leaderboard_report import write_report
from echorec.errors import EchorecError
from echorec.eval.metrics import metrics_from_ranks

PLAN = """
protocol: {{train.epochs: 3, train.patience: 2, data.max_len: 10, train.batch_size: 32, train.amp: "off"}}
datasets:
  tiny: {{path: {data}, settings: {{eval.exclude_history: true}}}}
  plain: {{path: {data}, settings: {{eval.exclude_history: false}}}}
seeds: [1, 2]
third_seed: {{seed: 3, top: 1}}
modes: {{dataset: tiny, seeds: [1, 2], candidate: {{data.train_mode: all, train.batch_size: 8}}}}
tuning: {{dataset: tiny, trials: 2, seed: 1, prune_warmup: 1}}
models:
  sasrec:
    modes: true
    recipe: {{model_cfg.hidden: 8, model_cfg.inner: 16, train.lr: {lr}}}
    sources: {{"*": "a test"}}
  fmlprec:
    recipe: {{model_cfg.hidden: 8, train.lr: 0.003}}
    per_dataset: {{plain: {{train.lr: 0.01}}}}
"""


def _plan(tmp_path, seq_file, lr=0.003, name="plan.yaml"):
    path = tmp_path / name
    path.write_text(PLAN.format(data=seq_file, lr=lr))
    return str(path)


def test_settings_precedence(tmp_path, seq_file):
    plan = lp.load_plan(_plan(tmp_path, seq_file))
    tuned = {"train.lr": 0.05, "model_cfg.dropout": 0.1}
    # tiny: protocol, dataset (history excluded), recipe, then tuned over the recipe, then the mode
    s = lp.cell_settings(plan, "tiny", "sasrec", tuned, "candidate")
    assert s["train.epochs"] == 3 and s["eval.exclude_history"] is True and s["model_cfg.hidden"] == 8
    assert s["train.lr"] == 0.05 and s["model_cfg.dropout"] == 0.1
    assert s["data.train_mode"] == "all" and s["train.batch_size"] == 8
    assert lp.cell_settings(plan, "tiny", "sasrec", tuned, "prefix")["train.batch_size"] == 32
    # plain has fmlprec settings of its own: no tuned settings there
    s = lp.cell_settings(plan, "plain", "fmlprec", tuned, "prefix")
    assert s["train.lr"] == 0.01 and "model_cfg.dropout" not in s and s["eval.exclude_history"] is False
    rc = lp.cell_config(plan, "plain", "fmlprec", 7, tuned, "prefix", threads=1)
    assert (rc.train.seed, rc.train.threads, rc.model_cfg.dropout) == (7, 1, 0.5)  # fmlprec's own default


def test_paired_is_the_per_user_mean_difference_and_its_standard_error():
    # Two seeds of A, one of B, three users; ranks beyond 10 score 0.
    a = [[1, 3, 20], [2, 3, 11]]
    b = [[2, 1, 20]]
    nd = lambda r: 1 / math.log2(r + 1) if r <= 10 else 0.0  # noqa: E731
    ua = [(nd(1) + nd(2)) / 2, (nd(3) + nd(3)) / 2, 0.0]
    ub = [nd(2), nd(1), 0.0]
    d = [x - y for x, y in zip(ua, ub)]
    ma, mb, se, n = lr.paired(a, b)
    assert n == 3
    assert ma == pytest.approx(sum(ua) / 3) and mb == pytest.approx(sum(ub) / 3)
    assert se == pytest.approx(statistics.stdev(d) / math.sqrt(3))
    hit = lr.paired(a, b, "hit@10")
    assert hit[:2] == pytest.approx((2 / 3, 2 / 3))  # rank 11 (A, second seed, user 3) is a miss like 20
    with pytest.raises(EchorecError, match="different numbers of users"):
        lr.paired([[1, 2]], [[1, 2, 3]])


def _fake(out, plan, model, mode, seed, ranks):
    path = lr.mode_record_path(out, plan, model, mode, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"test_ranks": ranks}, f)


@pytest.mark.parametrize("cand_ranks, kept", [
    ([[1, 1, 1, 2], [1, 1, 1, 2]], "candidate"),  # slightly worse than prefix, within one paired SE
    ([[1, 1, 1, 1], [1, 1, 1, 1]], "candidate"),  # the same
    ([[30, 30, 30, 30], [30, 30, 30, 30]], "prefix"),  # every user worse: far more than one SE
])
def test_mode_rule_keeps_the_candidate_within_one_paired_se(tmp_path, seq_file, cand_ranks, kept):
    plan = lp.load_plan(_plan(tmp_path, seq_file))
    out = str(tmp_path / "out")
    for s, r in zip(plan.modes_seeds, cand_ranks):
        _fake(out, plan, "sasrec", "prefix", s, [1, 1, 1, 1])
        _fake(out, plan, "sasrec", "candidate", s, r)
    d = lr.mode_decision(out, plan, "sasrec")
    assert d["mode"] == kept
    assert (d["candidate"] - d["prefix"] >= -d["paired_se"]) == (kept == "candidate")


def test_mode_rule_waits_for_every_cell(tmp_path, seq_file):
    plan = lp.load_plan(_plan(tmp_path, seq_file))
    out = str(tmp_path / "out")
    _fake(out, plan, "sasrec", "prefix", 1, [1, 2])
    assert lr.mode_decision(out, plan, "sasrec") is None
    assert lr.current_mode(out, plan, "sasrec") is None and lr.current_mode(out, plan, "fmlprec") == "prefix"


@pytest.mark.parametrize("edit, message", [
    (("models:", "colors: 1\nmodels:"), "unknown section"),
    (("per_dataset: {plain:", "per_dataset: {nowhere:"), "not a dataset of the plan"),
    (("model_cfg.hidden: 8, train.lr: 0.003", "model_cfg.hidden: 8, train.lr: 0.003, model_cfg.dropout: 2"),
     "dropout"),
    (("recipe: {model_cfg.hidden: 8, train.lr: 0.003}", "recipe: {hidden: 8}"), "section.field"),
    (("fmlprec:", "nosuchmodel:"), "nosuchmodel"),
    (("tuning: {dataset: tiny", "tuning: {dataset: other"), "not a dataset of the plan"),
    (("candidate: {data.train_mode: all, train.batch_size: 8}", "candidate: {}"), "modes.candidate"),
    (("seeds: [1, 2]\nthird", "seeds: [one]\nthird"), "integer seeds"),
])
def test_plan_mistakes_are_one_line(tmp_path, seq_file, edit, message):
    path = _plan(tmp_path, seq_file)
    text = open(path).read()
    assert edit[0] in text
    open(path, "w").write(text.replace(edit[0], edit[1], 1))
    with pytest.raises(EchorecError, match=message):
        lp.load_plan(path)


def test_a_small_plan_end_to_end(tmp_path, seq_file):
    plan_path, out = _plan(tmp_path, seq_file), str(tmp_path / "board")
    said = []
    lb.run_plan(plan_path, out, jobs=2, threads=1, log=said.append)
    plan = lp.load_plan(plan_path)
    # every side-by-side cell, every tuning trial budget, every cell and one third seed
    for mode in ("prefix", "candidate"):
        for s in (1, 2):
            assert os.path.exists(lr.mode_record_path(out, plan, "sasrec", mode, s))
    for m in ("sasrec", "fmlprec"):
        assert len(json.load(open(lr.tuned_path(out, plan, m)))["trials"]) == 2
    thirds = 0
    for label in ("tiny", "plain"):
        for m in ("sasrec", "fmlprec"):
            for s in (1, 2):
                rec = json.load(open(lr.record_path(out, label, m, s)))
                ranks = torch.tensor(rec["test_ranks"])
                assert metrics_from_ranks(ranks) == pytest.approx(rec["metrics"]["test"], abs=1e-12)
                assert rec["config"]["train"]["seed"] == s and rec["history"]
            thirds += os.path.exists(lr.record_path(out, label, m, 3))
        assert set(lb.top_models(out, plan, label)) <= {"sasrec", "fmlprec"}
    assert thirds == 2  # the best model of each dataset
    # the cell that repeats the tuning's best trial (same seed and settings) was not trained again
    rec = json.load(open(lr.record_path(out, "tiny", "fmlprec", 1)))
    assert rec["reused_from"].startswith("tuned/tiny/fmlprec/trial")
    assert not any("tiny fmlprec seed 1: training" in m for m in said)
    # the side-by-side's prefix seed-1 cell is the tuning's first trial when prefix mode stays
    t0 = json.load(open(os.path.join(out, "tuned", "tiny", "sasrec", "trial0.json")))
    if lr.current_mode(out, plan, "sasrec") == "prefix":
        assert t0["reused_from"] == "modes/sasrec/prefix/seed1.json"
    text = open(os.path.join(out, "results.md")).read()
    assert "## tiny" in text and "| sasrec |" in text and "paired SE" in text and "Source: a test" in text
    # a second run has nothing to train
    said.clear()
    lb.run_plan(plan_path, out, jobs=2, threads=1, log=said.append)
    assert not any("training" in m or "tuning" in m for m in said)
    # the committed part alone (no run folders, no job logs) rebuilds the same tables
    shutil.rmtree(os.path.join(out, "runs"))
    shutil.rmtree(os.path.join(out, "jobs"))
    assert write_report(out, plan) == text
    assert open(os.path.join(out, ".gitignore")).read() == "runs/\njobs/\n"
    # a changed recipe does not mix with the records made under the old one
    changed = _plan(tmp_path, seq_file, lr=0.002, name="changed.yaml")
    with pytest.raises(EchorecError, match="recorded with other settings.*train.lr 0.003 -> 0.002"):
        lb.run_plan(changed, out, jobs=1, threads=1, log=said.append)


def test_a_plan_without_tuning_or_third_seeds(tmp_path, seq_file):
    # the shipped plan drops both for time; the side-by-side's cells then are the modes dataset's cells
    text = PLAN.replace("third_seed: {{seed: 3, top: 1}}\n", "").replace(
        "tuning: {{dataset: tiny, trials: 2, seed: 1, prune_warmup: 1}}\n", "")
    path = tmp_path / "lean.yaml"
    path.write_text(text.format(data=seq_file, lr=0.003))
    out, said = str(tmp_path / "board"), []
    lb.run_plan(str(path), out, jobs=1, threads=1, log=said.append)
    plan = lp.load_plan(str(path))
    assert plan.trials == 0 and plan.third_seed is None and not os.path.exists(os.path.join(out, "tuned"))
    mode = lr.current_mode(out, plan, "sasrec")
    rec = json.load(open(lr.record_path(out, "tiny", "sasrec", 1)))
    assert rec["reused_from"] == f"modes/sasrec/{lr.mode_name(plan, mode)}/seed1.json"
    assert not any("tiny sasrec seed 1: training" in m for m in said)
    assert not any(os.path.exists(lr.record_path(out, label, m, 3)) for label in ("tiny", "plain")
                   for m in ("sasrec", "fmlprec"))
    assert "No tuning in this plan" in open(os.path.join(out, "results.md")).read()


def test_the_shipped_plan_loads():
    here = os.path.dirname(os.path.abspath(__file__))
    plan = lp.load_plan(os.path.join(here, "..", "..", "benchmarks", "leaderboard.yaml"))
    assert len(plan.models) == 8 and list(plan.datasets) == ["ml-100k", "Beauty", "LastFM"]
    assert all(mp.sources.get("*") for mp in plan.models.values())  # every recipe cites where it comes from


def test_a_record_made_before_a_setting_existed_still_counts(tmp_path, seq_file):
    # a setting added to echorec later (train.init_from here) is absent from older records: read as its default,
    # as a run folder's config.json is, so the record is neither refused nor trained again
    from echorec.config import run_config_to_dict

    plan = lp.load_plan(_plan(tmp_path, seq_file))
    out = str(tmp_path / "board")
    rc = lp.cell_config(plan, "tiny", "sasrec", 1, {}, "prefix", threads=1)
    config = run_config_to_dict(rc)
    del config["train"]["init_from"]
    path = lr.mode_record_path(out, plan, "sasrec", "prefix", 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"config": config, "test_ranks": [1, 2], "metrics": {}, "history": []}, f)
    lr.check_record(path, lr.read_record(path), rc)  # no error
    want = lp.identity(run_config_to_dict(rc))
    assert lr.same_settings(out, want)["reused_from"] == os.path.relpath(path, out)
    config["train"]["lr"] = 0.5  # a real difference still counts as one
    with open(path, "w") as f:
        json.dump({"config": config, "test_ranks": [1, 2], "metrics": {}, "history": []}, f)
    assert lr.same_settings(out, want) is None
    with pytest.raises(EchorecError, match="recorded with other settings.*train.lr 0.5 -> 0.003"):
        lr.check_record(path, lr.read_record(path), rc)


def test_run_order_is_dataset_then_seed_then_model(tmp_path, seq_file):
    # a side-by-side cell runs in its model's place among its seed's cells, so a model listed before it (the
    # flagship) need not wait for every side-by-side; without tuning nothing else waits
    text = PLAN.replace("tuning: {{dataset: tiny, trials: 2, seed: 1, prune_warmup: 1}}\n", "")
    path = tmp_path / "lean.yaml"
    path.write_text(text.format(data=seq_file, lr=0.003))
    jobs, waiting = lb.pending(str(tmp_path / "board"), lp.load_plan(str(path)), 1)
    assert [j.tag for j in jobs] == [
        "modes sasrec prefix seed 1", "modes sasrec all seed 1", "tiny fmlprec seed 1",
        "modes sasrec prefix seed 2", "modes sasrec all seed 2", "tiny fmlprec seed 2",
        "plain fmlprec seed 1", "plain fmlprec seed 2"]
    assert waiting  # sasrec's own cells wait for its side-by-side
