"""A leaderboard's committed records: where each lives, how one is made from a finished run folder and checked
against the settings it stands for, the per-user paired comparison of two models, and the verdicts read off the
records (the modes side-by-side, the tuning's best settings)."""

from __future__ import annotations

import math
import os
import time

from echorec.bench.plan import KEY, Plan, identity
from echorec.errors import EchorecError
from echorec.fsio import read_json


def record_path(out: str, label: str, model: str, seed: int) -> str:
    return os.path.join(out, "records", label, model, f"seed{seed}.json")


def mode_name(plan: Plan, mode: str) -> str:
    """"prefix", or the candidate's training mode ("all")."""
    return "prefix" if mode == "prefix" else str(plan.candidate.get("data.train_mode", "candidate"))


def mode_record_path(out: str, plan: Plan, model: str, mode: str, seed: int) -> str:
    return os.path.join(out, "modes", model, mode_name(plan, mode), f"seed{seed}.json")


def read_record(path: str) -> dict | None:
    return read_json(path) if os.path.exists(path) else None


def all_records(out: str) -> list[tuple[str, dict]]:
    found = []
    for top in ("records", "modes", "tuned"):
        for root, _, files in os.walk(os.path.join(out, top)):
            for f in sorted(files):
                if f.endswith(".json") and (top != "tuned" or f.startswith("trial")):  # not the tuning summaries
                    found.append((os.path.join(root, f), read_json(os.path.join(root, f))))
    return found


def known_settings(out: str) -> list[tuple[str, dict, dict]]:
    """Every finished record with the settings it was made with: (path, record, record_identity)."""
    return [(path, rec, record_identity(rec, path)) for path, rec in all_records(out)]


def record_identity(rec: dict, where: str = "record") -> dict:
    """The settings a record was made with, read the way a run folder's config.json is read: a setting added
    to echorec after the record was made takes its default, which is what the older code did."""
    from echorec.config import run_config_from_dict, run_config_to_dict

    return identity(run_config_to_dict(run_config_from_dict(rec["config"], where)))


def check_record(path: str, rec: dict, rc) -> None:
    """A record counts only for the settings it was made with."""
    from echorec.config import flatten, run_config_to_dict

    want, have = flatten(identity(run_config_to_dict(rc))), flatten(record_identity(rec, path))
    diff = [f"{k} {have.get(k)!r} -> {want.get(k)!r}" for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
    if diff:
        raise EchorecError(f"{path}: recorded with other settings than the plan now gives ({'; '.join(diff[:6])}"
                           f"{'; ...' if len(diff) > 6 else ''}); restore the plan, or delete the record to retrain")


def make_record(run_dir: str, wall_seconds: float, threads: int) -> dict:
    """A finished run folder's record. The test ranks are recomputed from the saved weights, and must give the
    metrics the run wrote (a record never disagrees with its run)."""
    import torch

    from echorec import sysinfo
    from echorec.data.split import load_split
    from echorec.eval.evaluate import evaluate
    from echorec.runfolder import RunFolder

    folder = RunFolder(run_dir)
    rc, model, meta = folder.load_model()
    metrics = folder.read_metrics()
    _, split = load_split(rc.data, items_first=folder.item_order())
    m, ranks = evaluate(model, split, "test", rc.eval, rc.data.max_len, "cpu", return_ranks=True)
    for k, v in metrics["test"].items():
        if abs(v - m[k]) > 1e-9:
            raise EchorecError(f"{run_dir}: test {k} recomputed as {m[k]:.6f}, metrics.json says {v:.6f}")
    return {"model": rc.model, "config": folder.read_config_dict(), "history": folder.read_history(),
            "metrics": metrics, "test_ranks": [int(r) for r in ranks.tolist()],
            "wall_seconds": round(wall_seconds, 1), "threads": threads, "machine": sysinfo.machine(),
            "torch": torch.__version__, "commit": sysinfo.git_commit(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "data_digest": meta.get("data_digest")}


def per_user(ranks: list[int], metric: str = KEY) -> list[float]:
    """Each user's hit@K or ndcg@K from the rank of their test item (1-based)."""
    name, k = metric.split("@")
    k = int(k)
    if name == "hit":
        return [1.0 if r <= k else 0.0 for r in ranks]
    return [1.0 / math.log2(r + 1) if r <= k else 0.0 for r in ranks]


def paired(a_runs: list[list[int]], b_runs: list[list[int]], metric: str = KEY) -> tuple[float, float, float, int]:
    """Per-user `metric` of A minus B, each averaged over its seeds: (mean A, mean B, paired SE of the mean
    difference, users). The SE is the spread of the per-user differences over sqrt(users)."""
    n = len(a_runs[0])
    if any(len(r) != n for r in a_runs + b_runs):
        raise EchorecError("paired test: the runs rank different numbers of users")
    a = [sum(col) / len(a_runs) for col in zip(*(per_user(r, metric) for r in a_runs))]
    b = [sum(col) / len(b_runs) for col in zip(*(per_user(r, metric) for r in b_runs))]
    d = [x - y for x, y in zip(a, b)]
    md = sum(d) / n
    se = math.sqrt(sum((x - md) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan")
    return sum(a) / n, sum(b) / n, se, n


def mode_decision(out: str, plan: Plan, model: str) -> dict | None:
    """The side-by-side's verdict for `model` once all its cells are recorded: mode "candidate" or "prefix"."""
    runs = {}
    for mode in ("prefix", "candidate"):
        recs = [read_record(mode_record_path(out, plan, model, mode, s)) for s in plan.modes_seeds]
        if any(r is None for r in recs):
            return None
        runs[mode] = [r["test_ranks"] for r in recs]
    cand, pref, se, n = paired(runs["candidate"], runs["prefix"])
    keep = cand - pref >= -se
    return {"mode": "candidate" if keep else "prefix", "candidate": cand, "prefix": pref, "paired_se": se,
            "users": n}


# -- tuning (runs in a child process, one model) -------------------------------------------------------------

def tuned_path(out: str, plan: Plan, model: str) -> str:
    return os.path.join(out, "tuned", plan.tune_dataset, f"{model}.json")


def tuned_best(out: str, plan: Plan, model: str) -> dict | None:
    """The best tuned settings, once the model's budget is spent; None before."""
    if plan.tune_dataset is None or plan.trials < 1:
        return {}
    path = tuned_path(out, plan, model)
    saved = read_record(path)
    if saved is None or len(saved["trials"]) < plan.trials:
        return None
    return saved["best"]


def trial_record_path(out: str, plan: Plan, model: str, i: int) -> str:
    return os.path.join(out, "tuned", plan.tune_dataset, model, f"trial{i}.json")


def same_settings(out: str, want: dict, exclude: str = "", found: list | None = None) -> dict | None:
    """Any finished record made with exactly the settings `want` (an identity() dict), else None. `found`: the
    (path, record, identity) list of known_settings(out), when a caller asks for many cells at once."""
    for path, rec, ident in found if found is not None else known_settings(out):
        if path != exclude and ident == want:
            return {**rec, "reused_from": rec.get("reused_from") or os.path.relpath(path, out)}
    return None


def current_mode(out: str, plan: Plan, model: str) -> str | None:
    """The mode a model trains in: prefix, or candidate once its side-by-side keeps it; None while undecided."""
    if not plan.models[model].modes:
        return "prefix"
    d = mode_decision(out, plan, model)
    return None if d is None else d["mode"]


# -- the jobs and their scheduler ----------------------------------------------------------------------------
