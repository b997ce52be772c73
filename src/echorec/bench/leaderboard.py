"""`echorec bench accuracy --plan FILE`: a leaderboard run from a plan, in slices, across sessions.

A plan (YAML) names the datasets (each with its own evaluation settings), the models with their published
recipes (and where each setting comes from), the seeds, the side-by-side that lets a causal model train in
the cheaper `all` mode, and the tuning budget. The leaderboard then runs in phases, each one a set of jobs
that a scheduler starts `jobs` at a time as child processes (`threads` torch threads each):

1. modes: each causal model marked `modes: true` trains on the modes dataset in prefix mode and in the
   candidate mode (e.g. `all`), `modes.seeds` each. It keeps the candidate when the candidate's converged
   test NDCG@10 is at most one paired standard error (over users, seeds averaged) below prefix mode's.
2. tuning: every model gets the same budget on the tuning dataset (valid split only, one seed): the first
   trial is the recipe itself, the others are drawn by Optuna over the same knobs for every model, and a
   trial whose best valid NDCG@10 falls under the median of the finished trials at the same epoch is pruned.
3. cells: every dataset x model x seed, with the recipe, then the tuned settings (unless the recipe has
   settings of its own for that dataset), then the mode; then a third seed for the best `top` models of
   each dataset (by mean test NDCG@10 over the first seeds).

Everything a later session needs is small and committed; nothing else is (run folders hold weights):

    OUT/plan.yaml                       a copy of the plan the records were made under
    OUT/records/<dataset>/<model>/seed<k>.json   a finished cell: config, history, metrics, every user's
                                        test rank, wall time, machine, commit
    OUT/modes/<model>/<mode>/seed<k>.json        a finished side-by-side cell (same format)
    OUT/tuned/<dataset>/<model>.json    every trial of a model's tuning and the best settings
    OUT/results.md, OUT/time_<dataset>.png       the tables and plots (rewritten from the records)
    OUT/runs/, OUT/jobs/                run folders (weights, checkpoints) and job logs: not committed

A cell with a record is done; one whose record was made with other settings stops the run with a message (a
changed plan must not mix with old records). A cell whose config equals another record's (a prefix-mode
side-by-side cell that is also a leaderboard cell) reuses that record instead of training again.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time

from echorec.errors import EchorecError
from echorec.fsio import atomic_write_text, read_json, write_json

# Per cell, or how a cell runs rather than what it computes: never part of a record's identity.
RUN_ONLY = ("train.threads", "train.progress", "train.device")
KNOBS = ("train.lr", "train.weight_decay", "dropout")
KEY = "ndcg@10"


# -- the plan ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ModelPlan:
    name: str  # the registered model
    recipe: dict  # section.field -> value, every dataset
    per_dataset: dict  # dataset label -> section.field -> value; such a dataset takes no tuned settings
    sources: dict  # section.field (or "*") -> where the value comes from
    modes: bool  # run the prefix / candidate side-by-side for this (causal) model


@dataclasses.dataclass
class Plan:
    protocol: dict  # section.field -> value, every cell
    datasets: dict  # label -> (path or name, {section.field: value})
    seeds: list
    third_seed: int | None
    third_top: int
    modes_dataset: str | None
    modes_seeds: list
    candidate: dict  # section.field -> value of the candidate mode
    tune_dataset: str | None
    trials: int
    tune_seed: int
    prune_warmup: int
    models: dict  # name -> ModelPlan
    text: str  # the plan file as read


def _mapping(obj, where: str) -> dict:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise EchorecError(f"{where}: expected a mapping, got {type(obj).__name__}")
    return obj


def _settings(obj, where: str) -> dict:
    d = _mapping(obj, where)
    for k in d:
        if not isinstance(k, str) or "." not in k:
            raise EchorecError(f"{where}: setting {k!r}: write it as section.field (train.lr, model_cfg.dropout)")
    return dict(d)


def _seeds(obj, where: str) -> list:
    if not isinstance(obj, list) or not obj or not all(isinstance(s, int) and not isinstance(s, bool) for s in obj):
        raise EchorecError(f"{where}: expected a list of integer seeds")
    return list(obj)


def load_plan(path: str) -> Plan:
    """Read and check a plan file: every model, dataset and setting must exist before anything runs."""
    import yaml

    from echorec.models import get_model_class

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        d = yaml.safe_load(text)
    except FileNotFoundError:
        raise EchorecError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise EchorecError(f"{path}{f':{mark.line + 1}' if mark else ''}: invalid YAML "
                           f"({getattr(e, 'problem', None) or e})") from None
    d = _mapping(d, path)
    unknown = sorted(set(d) - {"protocol", "datasets", "seeds", "third_seed", "modes", "tuning", "models"})
    if unknown:
        raise EchorecError(f"{path}: unknown section(s) {', '.join(map(str, unknown))}")
    datasets = {}
    for label, spec in _mapping(d.get("datasets"), f"{path}: datasets").items():
        spec = _mapping(spec, f"{path}: datasets.{label}")
        if "path" not in spec:
            raise EchorecError(f"{path}: datasets.{label}: needs a path (a file or a named dataset)")
        datasets[str(label)] = (str(spec["path"]), _settings(spec.get("settings"), f"{path}: datasets.{label}"))
    if not datasets:
        raise EchorecError(f"{path}: datasets: name at least one")
    third = _mapping(d.get("third_seed"), f"{path}: third_seed")
    modes = _mapping(d.get("modes"), f"{path}: modes")
    tuning = _mapping(d.get("tuning"), f"{path}: tuning")
    models = {}
    for name, spec in _mapping(d.get("models"), f"{path}: models").items():
        spec = _mapping(spec, f"{path}: models.{name}")
        get_model_class(str(name))
        per = {str(k): _settings(v, f"{path}: models.{name}.per_dataset.{k}")
               for k, v in _mapping(spec.get("per_dataset"), f"{path}: models.{name}.per_dataset").items()}
        for k in per:
            if k not in datasets:
                raise EchorecError(f"{path}: models.{name}.per_dataset: {k!r} is not a dataset of the plan")
        models[str(name)] = ModelPlan(str(name), _settings(spec.get("recipe"), f"{path}: models.{name}.recipe"),
                                      per, {str(k): str(v) for k, v in _mapping(spec.get("sources"), path).items()},
                                      bool(spec.get("modes", False)))
    if not models:
        raise EchorecError(f"{path}: models: name at least one")
    plan = Plan(protocol=_settings(d.get("protocol"), f"{path}: protocol"), datasets=datasets,
                seeds=_seeds(d.get("seeds", [42, 43]), f"{path}: seeds"),
                third_seed=third.get("seed"), third_top=int(third.get("top", 0)),
                modes_dataset=modes.get("dataset"), modes_seeds=_seeds(modes.get("seeds", [42, 43]), f"{path}: modes"),
                candidate=_settings(modes.get("candidate"), f"{path}: modes.candidate"),
                tune_dataset=tuning.get("dataset"), trials=int(tuning.get("trials", 0)),
                tune_seed=int(tuning.get("seed", 42)), prune_warmup=int(tuning.get("prune_warmup", 10)),
                models=models, text=text)
    for what, label in (("modes", plan.modes_dataset), ("tuning", plan.tune_dataset)):
        if label is not None and label not in datasets:
            raise EchorecError(f"{path}: {what}.dataset {label!r} is not a dataset of the plan")
    if any(m.modes for m in models.values()) and (plan.modes_dataset is None or not plan.candidate):
        raise EchorecError(f"{path}: a model asks for the modes side-by-side: give modes.dataset and modes.candidate")
    for m in models.values():  # every setting resolves to a valid config (raises EchorecError otherwise)
        for label in datasets:
            cell_config(plan, label, m.name, plan.seeds[0], tuned={}, mode="candidate" if m.modes else "prefix")
    return plan


# -- one cell's settings -------------------------------------------------------------------------------------

def cell_settings(plan: Plan, label: str, model: str, tuned: dict | None, mode: str) -> dict:
    """section.field -> value for one cell, in order of precedence (later wins): the protocol, the dataset's
    settings, the model's recipe, the recipe's settings for this dataset or else the tuned settings, the mode."""
    from echorec.bench.accuracy import protocol

    mp = plan.models[model]
    path, ds_settings = plan.datasets[label]
    out = dict(protocol({**plan.protocol, **ds_settings}))
    out.update(mp.recipe)
    if label in mp.per_dataset:
        out.update(mp.per_dataset[label])
    else:
        out.update(tuned or {})
    if mode == "candidate":
        out.update(plan.candidate)
    out["data.dataset"] = path
    return out


def cell_config(plan: Plan, label: str, model: str, seed: int, tuned: dict | None, mode: str, threads: int = 0):
    from echorec.config import run_config_from_dict, with_overrides

    s = cell_settings(plan, label, model, tuned, mode)
    s.update({"train.seed": seed, "train.threads": threads, "train.progress": False})
    rc = run_config_from_dict(with_overrides({"model": model}, s), where=f"plan: {model} on {label}")
    rc.validate()
    return rc


def identity(config: dict) -> dict:
    """A config dict without the keys that say how a cell ran (threads, progress bar, device)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items() if k != "meta"}
    for key in RUN_ONLY:
        sec, name = key.split(".")
        out.get(sec, {}).pop(name, None)
    return out


# -- records -------------------------------------------------------------------------------------------------

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


def check_record(path: str, rec: dict, rc) -> None:
    """A record counts only for the settings it was made with."""
    from echorec.config import flatten, run_config_to_dict

    want, have = flatten(identity(run_config_to_dict(rc))), flatten(identity(rec["config"]))
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
    _, split = load_split(rc.data)
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

def search_space(model: str) -> dict:
    """The knobs every model gets: learning rate (log-uniform), weight decay (a few decades) and each dropout
    field of its Config (uniform up to 0.6, continuous so every recipe's value lies inside)."""
    from echorec.models import get_model_class

    space = {"train.lr": ("logfloat", 1e-4, 1e-2), "train.weight_decay": ("choice", [0.0, 1e-5, 1e-4, 1e-3])}
    for f in dataclasses.fields(get_model_class(model).Config):
        if "dropout" in f.name and isinstance(f.default, float):
            space[f"model_cfg.{f.name}"] = ("float", 0.0, 0.6)
    return space


def _distribution(spec):
    import optuna

    if spec[0] == "logfloat":
        return optuna.distributions.FloatDistribution(spec[1], spec[2], log=True)
    if spec[0] == "float":
        return optuna.distributions.FloatDistribution(spec[1], spec[2])
    return optuna.distributions.CategoricalDistribution(spec[1])


class Pruned(Exception):
    """Raised from the epoch callback when Optuna's pruner stops a trial."""


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


def tune_model(out: str, plan: Plan, model: str, threads: int, log=print) -> dict:
    """Spend the model's tuning budget (resumable: finished trials are kept and replayed into the sampler)."""
    try:
        import optuna
    except ImportError:
        raise EchorecError("tuning needs optuna: pip install 'echorec[tune]'") from None
    label = plan.tune_dataset
    mode = current_mode(out, plan, model)
    if mode is None:
        raise EchorecError(f"tune {model}: its modes side-by-side has not finished")
    path = tuned_path(out, plan, model)
    saved = read_record(path) or {"trials": []}
    space = search_space(model)
    from echorec.config import flatten, run_config_to_dict

    base = flatten(run_config_to_dict(cell_config(plan, label, model, plan.tune_seed, {}, mode)))
    recipe = {k: base[k] for k in space}  # the first trial: the published recipe itself (defaults included)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=plan.prune_warmup)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0), pruner=pruner)
    dists = {k: _distribution(v) for k, v in space.items()}
    for t in saved["trials"]:
        study.add_trial(optuna.trial.create_trial(
            params=t["params"], distributions=dists, value=t["value"],
            intermediate_values={int(e): v for e, v in t["curve"].items()},
            state=optuna.trial.TrialState.PRUNED if t["pruned"] else optuna.trial.TrialState.COMPLETE))
    from echorec.train.loop import run_training

    while len(saved["trials"]) < plan.trials:
        i = len(saved["trials"])
        if i == 0:
            trial, params = None, recipe
        else:
            trial = study.ask(dists)
            params = trial.params
        rc = cell_config(plan, label, model, plan.tune_seed, params, mode, threads)
        curve: dict[int, float] = {}
        best = [float("-inf")]

        def after_epoch(epoch, _model, row, trial=trial, curve=curve, best=best):
            best[0] = max(best[0], float(row[f"valid_{KEY}"]))
            curve[epoch] = best[0]
            if trial is not None:
                trial.report(best[0], epoch)
                if trial.should_prune():
                    raise Pruned()

        t0 = time.perf_counter()
        rec_path = trial_record_path(out, plan, model, i)
        rec = same_settings(out, identity(run_config_to_dict(rc)), rec_path)
        pruned = False
        if rec is not None:  # a side-by-side cell trained exactly this trial already
            for h in rec["history"]:
                after_epoch(int(h["epoch"]), None, h, trial=None)
            value, best_epoch = float(rec["metrics"]["valid"][KEY]), rec["metrics"]["best_epoch"]
            if trial is not None:
                for e, v in curve.items():
                    trial.report(v, e)
            write_json(rec_path, {**rec, "reused_from": rec.get("reused_from") or "another record"})
            log(f"tune {label} {model}: trial {i + 1} has the settings of a finished record, reused")
        else:
            rd = os.path.join(out, "runs", os.path.relpath(os.path.splitext(rec_path)[0], out))
            try:
                m = run_training(rc, rd, quiet=True, overwrite=True, callback=after_epoch)
                value, best_epoch = float(m["valid"][KEY]), m["best_epoch"]
                write_json(rec_path, make_record(rd, time.perf_counter() - t0, threads))
            except Pruned:
                pruned, value = True, best[0]
                best_epoch = min(e for e in curve if curve[e] == best[0])
        state = optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE
        if trial is None:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value,
                                                      intermediate_values=curve, state=state))
        else:
            study.tell(trial, None if pruned else value, state=state)
        saved["trials"].append({"params": params, "value": value, "pruned": pruned, "best_epoch": best_epoch,
                                "epochs": len(curve), "curve": {str(e): v for e, v in curve.items()},
                                "seconds": round(time.perf_counter() - t0, 1), "recipe": trial is None})
        top = max(saved["trials"], key=lambda t: t["value"])
        saved.update({"best": top["params"], "best_valid_ndcg@10": top["value"], "budget": plan.trials,
                      "mode": mode, "space": {k: list(v) for k, v in space.items()}})
        write_json(path, saved)
        log(f"tune {label} {model}: trial {i + 1}/{plan.trials} valid NDCG@10 {value:.4f}"
            f"{' (pruned)' if pruned else ''} (best {top['value']:.4f})")
    return saved


def trial_record_path(out: str, plan: Plan, model: str, i: int) -> str:
    return os.path.join(out, "tuned", plan.tune_dataset, model, f"trial{i}.json")


def same_settings(out: str, want: dict, exclude: str = "") -> dict | None:
    """Any finished record made with exactly the settings `want` (an identity() dict), else None."""
    for path, rec in all_records(out):
        if path != exclude and identity(rec["config"]) == want:
            return {**rec, "reused_from": rec.get("reused_from") or os.path.relpath(path, out)}
    return None


def current_mode(out: str, plan: Plan, model: str) -> str | None:
    """The mode a model trains in: prefix, or candidate once its side-by-side keeps it; None while undecided."""
    if not plan.models[model].modes:
        return "prefix"
    d = mode_decision(out, plan, model)
    return None if d is None else d["mode"]


# -- the jobs and their scheduler ----------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    key: str  # unique: what it makes (a record path, a tuned file)
    tag: str  # what the log says
    kind: str  # "cell" or "tune"
    rc: object = None  # cell: its RunConfig
    record: str = ""  # cell: where its record goes
    model: str = ""  # tune: the model


def pending(out: str, plan: Plan, threads: int) -> tuple[list[Job], bool]:
    """The jobs whose inputs are ready and whose outputs are missing, in run order, and whether any job is still
    waiting on another (so the run is not finished when this list is empty)."""
    jobs, waiting = [], False
    # 1. the side-by-side
    for m, mp in plan.models.items():
        if not mp.modes:
            continue
        for mode in ("prefix", "candidate"):
            for s in plan.modes_seeds:
                path = mode_record_path(out, plan, m, mode, s)
                rc = cell_config(plan, plan.modes_dataset, m, s, {}, mode, threads)
                rec = read_record(path)
                if rec is not None:
                    check_record(path, rec, rc)
                    continue
                jobs.append(Job(path, f"modes {m} {mode_name(plan, mode)} seed {s}", "cell", rc, path))
    # 2. tuning
    tuned = {}
    for m in plan.models:
        mode = current_mode(out, plan, m)
        if mode is None:
            waiting = True
            continue
        best = tuned_best(out, plan, m)
        if best is None:
            jobs.append(Job(tuned_path(out, plan, m), f"tune {plan.tune_dataset} {m}", "tune", model=m))
            waiting = True
            continue
        tuned[m] = (best, mode)
    # 3. cells, then the third seeds
    for label in plan.datasets:
        done_all = True
        for s in plan.seeds:
            for m in plan.models:
                if m not in tuned:
                    done_all = False
                    continue
                job = _cell_job(out, plan, label, m, s, tuned[m], threads)
                if job is not None:
                    jobs.append(job)
                    done_all = False
        if plan.third_seed is None or plan.third_top < 1:
            continue
        if not done_all:
            waiting = True
            continue
        for m in top_models(out, plan, label):
            job = _cell_job(out, plan, label, m, plan.third_seed, tuned[m], threads)
            if job is not None:
                jobs.append(job)
    return jobs, waiting


def _cell_job(out, plan, label, model, seed, tuned_mode, threads) -> Job | None:
    best, mode = tuned_mode
    path = record_path(out, label, model, seed)
    rc = cell_config(plan, label, model, seed, best, mode, threads)
    rec = read_record(path)
    if rec is not None:
        check_record(path, rec, rc)
        return None
    return Job(path, f"{label} {model} seed {seed}", "cell", rc, path)


def top_models(out: str, plan: Plan, label: str) -> list[str]:
    """The plan's `third_seed.top` models with the best mean test NDCG@10 over the first seeds on `label`."""
    means = {}
    for m in plan.models:
        recs = [read_record(record_path(out, label, m, s)) for s in plan.seeds]
        means[m] = sum(r["metrics"]["test"][KEY] for r in recs) / len(recs)
    return sorted(means, key=lambda m: -means[m])[:plan.third_top]


def reuse(out: str, job: Job, log) -> bool:
    """Copy another record made with exactly this cell's settings (a side-by-side cell or a tuning trial is
    also a leaderboard cell when its settings and seed are the cell's)."""
    from echorec.config import run_config_to_dict

    rec = same_settings(out, identity(run_config_to_dict(job.rc)), job.record)
    if rec is None:
        return False
    os.makedirs(os.path.dirname(job.record), exist_ok=True)
    write_json(job.record, rec)
    log(f"{job.tag}: same settings as {rec['reused_from']}, record reused")
    return True


def run_plan(plan_path: str, out: str, jobs: int = 1, threads: int = 0, log=print, report_only: bool = False,
             max_jobs: int = 0) -> None:
    """Run what is missing of the plan, `jobs` at a time, then rewrite the tables. `max_jobs` > 0 stops
    starting new jobs after that many (a slice of the work)."""
    plan = load_plan(plan_path)
    if jobs < 1:
        raise EchorecError(f"--jobs {jobs}: at least 1")
    os.makedirs(out, exist_ok=True)
    ignore = os.path.join(out, ".gitignore")
    if not os.path.exists(ignore):  # run folders hold weights and checkpoints, job logs are per machine
        atomic_write_text(ignore, "runs/\njobs/\n")
    saved_plan = os.path.join(out, "plan.yaml")
    if not os.path.exists(saved_plan) or open(saved_plan, encoding="utf-8").read() != plan.text:
        atomic_write_text(saved_plan, plan.text)
    if not report_only:
        _schedule(out, plan, jobs, threads, log, max_jobs)
    from echorec.bench.leaderboard_report import write_report

    write_report(out, plan)


def _schedule(out: str, plan: Plan, jobs: int, threads: int, log, max_jobs: int) -> None:
    running: dict[str, tuple[subprocess.Popen, Job, str, float]] = {}
    failed: dict[str, str] = {}  # job key -> its log
    started = 0
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the children
    try:
        changed = True
        while True:
            if changed:  # the ready list only changes when a job ends (records are read from disk)
                ready, waiting = pending(out, plan, threads)
                ready = [j for j in ready if j.key not in running and j.key not in failed]
                while ready and len(running) < jobs and not (max_jobs and started >= max_jobs):
                    job = ready.pop(0)
                    if job.kind == "cell" and reuse(out, job, log):
                        continue
                    running[job.key] = _start(out, job, threads, log)
                    started += 1
                changed = False
            if not running:
                if failed:
                    raise EchorecError(f"{len(failed)} job(s) failed: "
                                       + "; ".join(f"{k} (see {v})" for k, v in failed.items()))
                if ready or waiting:
                    log(f"stopped after {started} job(s) (--max-jobs); run again to continue")
                return
            time.sleep(2.0)
            for key in [k for k, v in running.items() if v[0].poll() is not None]:
                proc, job, logpath, t0 = running.pop(key)
                changed = True
                if proc.returncode != 0:
                    failed[job.key] = logpath
                    log(f"{job.tag}: FAILED (exit {proc.returncode}); see {logpath}")
                    continue
                try:
                    _finish(out, job, time.perf_counter() - t0, threads, log)
                except EchorecError as e:
                    failed[job.key] = logpath
                    log(f"{job.tag}: FAILED ({e})")
                    continue
                from echorec.bench.leaderboard_report import write_report

                write_report(out, plan)  # the tables follow the records as they land
    finally:
        for proc, *_ in running.values():
            proc.terminate()
        for proc, *_ in running.values():
            proc.wait()
        signal.signal(signal.SIGTERM, previous)


def run_dir(out: str, record: str) -> str:
    """The run folder (weights, checkpoint; not committed) of a cell, beside its record's place."""
    rel = os.path.relpath(os.path.splitext(record)[0], out)
    return os.path.join(out, "runs", rel)


def _start(out: str, job: Job, threads: int, log):
    from echorec.config import run_config_to_dict
    from echorec.runfolder import CHECKPOINT, RunFolder

    jobdir = os.path.join(out, "jobs")
    os.makedirs(jobdir, exist_ok=True)
    env = dict(os.environ)
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    name = os.path.relpath(os.path.splitext(job.key)[0], out).replace(os.sep, "__")
    logpath = os.path.join(jobdir, f"{name}.log")
    if job.kind == "tune":
        cmd = [sys.executable, "-m", "echorec.bench.leaderboard", "tune", os.path.join(out, "plan.yaml"), out,
               job.model, str(threads)]
        what = "tuning"
    else:
        rd = run_dir(out, job.record)
        folder = RunFolder(rd)
        cfg = os.path.join(jobdir, f"{name}.json")
        write_json(cfg, run_config_to_dict(job.rc))
        if folder.has(CHECKPOINT):
            cmd, what = [sys.executable, "-m", "echorec", "train", "--progress", "false", "--resume", rd], "resuming"
        else:
            cmd = [sys.executable, "-m", "echorec", "train", "--config", cfg, "--out", rd] + \
                (["--overwrite"] if folder.existing() else [])
            what = "training"
    with open(logpath, "a") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    log(f"{job.tag}: {what} (log {logpath}) ...")
    return proc, job, logpath, time.perf_counter()


def _finish(out: str, job: Job, wall: float, threads: int, log) -> None:
    if job.kind == "tune":
        log(f"{job.tag}: done ({wall:.0f} s)")
        return
    import torch

    torch.set_num_threads(max(threads, 1))  # the parent must not crowd the jobs still running
    rd = run_dir(out, job.record)
    rec = make_record(rd, wall, threads)
    check_record(job.record, rec, job.rc)
    os.makedirs(os.path.dirname(job.record), exist_ok=True)
    write_json(job.record, rec)
    m = rec["metrics"]
    log(f"{job.tag}: test NDCG@10 {m['test'][KEY]:.4f} HR@10 {m['test']['hit@10']:.4f} (best epoch "
        f"{m['best_epoch']} of {m['epochs_run']}, {wall:.0f} s); record {job.record}")


def _main(argv: list[str]) -> None:
    """The tuning child process: `python -m echorec.bench.leaderboard tune PLAN OUT MODEL THREADS`."""
    if len(argv) != 5 or argv[0] != "tune":
        raise SystemExit("usage: python -m echorec.bench.leaderboard tune PLAN OUT MODEL THREADS")
    _, plan_path, out, model, threads = argv
    if int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))
    tune_model(out, load_plan(plan_path), model, int(threads), log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    try:
        _main(sys.argv[1:])
    except EchorecError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
