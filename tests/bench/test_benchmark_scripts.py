"""The study scripts in benchmarks/ that compute figures of their own: the planted-route log and its
oracles (long_range.py), and the time-to-quality report (time_to_quality.py)."""

import importlib.util
import json
import math
import os

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


lr = load("long_range")
ttq = load("time_to_quality")


def transitions(log):
    same = log["user"][1:] == log["user"][:-1]
    return log["item"][:-1][same], log["item"][1:][same], log["user"][1:][same]


def test_without_jumps_every_step_follows_the_users_route():
    log = lr.make(200, 50, 4, 0.5, 0.0, 5, 12, seed=1)
    a, b, u = transitions(log)
    assert np.array_equal(log["succ"][log["route"][u], a], b)
    assert set(np.bincount(log["user"])) <= set(range(5, 13))


def test_routes_differ_only_at_branch_items():
    succ = lr.make(10, 400, 3, 0.25, 0.1, 5, 6, seed=2)["succ"]
    differs = (succ != succ[0]).any(0)
    assert 0.1 < differs.mean() < 0.3  # ~25% of items branch (a branch may draw the same successor by chance)


def test_rank_metrics_by_hand():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1], [0.0, 0.0, 1.0]])
    m = lr.rank_metrics(scores, np.array([2, 0, 0]))
    # ranks 2, 1 and (a tie of two below the top) 2 or 3
    assert m["hit@10"] == 1.0
    assert m["mrr@10"] in (pytest.approx((1 / 2 + 1 + 1 / 2) / 3), pytest.approx((1 / 2 + 1 + 1 / 3) / 3))


def test_a_deterministic_walk_is_solved_by_every_history_model():
    log = lr.make(300, 40, 3, 0.0, 0.0, 6, 10, seed=3)  # no branches, no jumps: the last item says it all
    r = lr.baselines(log)
    for name in ("last item", "last two items", "posterior oracle (whole history)", "route oracle (knows the route)"):
        assert r[name]["mrr@10"] == pytest.approx(1.0), name
    assert r["popularity"]["mrr@10"] < 0.5


def test_oracles_beat_counting_when_the_route_matters():
    r = lr.baselines(lr.make(2000, 200, 16, 0.5, 0.1, 20, 40, seed=0))
    post, route, two = (r[k]["mrr@10"] for k in ("posterior oracle (whole history)", "route oracle (knows the route)",
                                               "last two items"))
    assert route >= post - 0.01 and post > two + 0.05


def cell(ds, mode, seed, ranks, curve):
    return {"dataset": ds, "mode": mode, "seed": seed, "model": "m", "best_epoch": len(curve), "epochs": len(curve),
            "wall_s": curve[-1][0], "test_ndcg10": float(np.mean([1 / math.log2(r + 1) if r <= 10 else 0 for r in ranks])),
            "curve": [{"epoch": i + 1, "elapsed_s": t, "test": q, "valid": q} for i, (t, q) in enumerate(curve)],
            "threads": 1, "machines": ["x"], "test_ranks": ranks}


def test_time_to_quality_report(tmp_path):
    out = tmp_path / "study"
    (out / "cells").mkdir(parents=True)
    json.dump({"command": "c", "started": "s", "commit": "k", "machine": "x", "jobs": 2, "threads": 1, "model": "m",
               "patience": 10, "prefixes_per_user": 4}, open(out / "study.json", "w"))
    ranks = [1, 2, 3, 20]  # NDCG@10 = (1 + 1/log2(3) + 1/2 + 0) / 4
    ref = (1 + 1 / math.log2(3) + 0.5) / 4
    for s in (1, 2):
        c = cell("d", "prefix", s, ranks, [(100.0, 0.5 * ref), (200.0, ref), (300.0, ref)])
        json.dump(c, open(out / "cells" / f"d_prefix_seed{s}.json", "w"))
        c = cell("d", "sample", s, ranks, [(10.0, 0.9 * ref), (20.0, 0.995 * ref), (40.0, ref)])
        json.dump(c, open(out / "cells" / f"d_sample_seed{s}.json", "w"))
    assert ttq.time_to(c["curve"], 0.99 * ref) == 20.0 and ttq.time_to(c["curve"], 2 * ref) is None
    text = ttq.report(str(out))
    assert "| prefix | 2 |" in text and "| 200 | 1.00 |" in text  # the prefix mode reaches 99% at 200 s
    assert "| 20 | 0.10 |" in text  # the sample mode at 20 s: a tenth of the time
    assert "sample - prefix = +0.0000" in text


def test_best_valid_counts_samples_not_epochs():
    curve = [{"valid": v} for v in (0.1, 0.3, 0.2, 0.4)]
    assert ttq.best_valid_after(curve, 25, 50) == 0.3  # two 25-sample epochs fit in 50 samples
    assert ttq.best_valid_after(curve, 25, 100) == 0.4
    assert ttq.best_valid_after(curve, 25, 101) == 0.4  # a fifth epoch would pass 101: four count
    assert ttq.best_valid_after(curve, 25, 125) is None  # stopped before it saw 125 samples
    assert ttq.best_valid_after(curve, 200, 100) is None  # one epoch is already more than 100 samples


def test_per_sample_table():
    def c(mode, per, valids, wall):
        return {"samples_per_epoch": per, "wall_s": wall, "curve": [{"valid": v} for v in valids]}
    modes = {"prefix": {1: c("prefix", 100, [0.1] * 8, 800.0)},
             "sample16": {1: c("sample16", 50, [0.05, 0.2, 0.3, 0.1], 100.0), 2: c("sample16", 50, [0.1] * 2, 50.0)}}
    text = "\n".join(ttq.per_sample_table(modes))
    assert "| prefix | 100 | 1000.00 | 8.0 | 0.1000 | 0.1000 | 0.1000 | 0.1000 |" in text
    # sample16: half a second per sample; 1 prefix epoch = 2 of its epochs (seeds: 0.2 and 0.1); only seed 1 saw 2
    assert "| sample16 | 50 | 500.00 | 1.5 | 0.1500 | 0.3000 (1/2) | stopped | stopped |" in text
    assert ttq.per_sample_table({"sample": modes["sample16"]}) == []  # nothing to measure against


def test_long_range_table():
    rows = {"last item": {"mrr@10": 0.5, "hit@10": 0.75},
            "sasrec": {"mrr@10": 0.25, "hit@10": 0.5, "best_epoch": 3, "epochs": 8, "train_s": 12.4}}
    text = lr.table(rows, "a log")
    assert text.startswith("a log\n")
    assert "| last item | 0.5000 | 0.7500 |  |  |" in text and "| sasrec | 0.2500 | 0.5000 | 3 / 8 | 12 |" in text


def test_score_noise_names_runs_by_what_differs():
    noise = load("score_noise")
    assert noise.run_names(["s/runs/ml/a/seed42", "s/runs/ml/b+x=1/seed42"]) == ["a/seed42", "b+x=1/seed42"]
    assert noise.run_names(["r/one", "r/two"]) == ["one", "two"] and noise.run_names(["r/one"]) == ["one"]
