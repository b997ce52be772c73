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
import os
import signal
import subprocess
import sys
import time

from echorec.bench.leaderboard_report import write_report
from echorec.bench.plan import KEY, Plan, cell_config, identity, load_plan
from echorec.bench.records import (
    check_record,
    current_mode,
    known_settings,
    make_record,
    mode_name,
    mode_record_path,
    read_record,
    record_path,
    same_settings,
    trial_record_path,
    tuned_best,
    tuned_path,
)
from echorec.errors import EchorecError
from echorec.fsio import atomic_write_text, write_json


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


def _study(plan: Plan, saved: dict, dists: dict):
    """An Optuna study with the finished trials replayed, so the sampler and the pruner go on where they stopped."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=plan.prune_warmup)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0), pruner=pruner)
    for t in saved["trials"]:
        study.add_trial(optuna.trial.create_trial(
            params=t["params"], distributions=dists, value=t["value"],
            intermediate_values={int(e): v for e, v in t["curve"].items()},
            state=optuna.trial.TrialState.PRUNED if t["pruned"] else optuna.trial.TrialState.COMPLETE))
    return study


def _run_trial(out: str, rc, rec_path: str, trial, threads: int) -> tuple[float, int, dict, bool, bool]:
    """Train one trial (or reuse a record with exactly its settings): (best valid NDCG@10, its epoch, the curve of
    best-so-far values per epoch, pruned?, reused?). A finished trial leaves a record at `rec_path`."""
    from echorec.config import run_config_to_dict
    from echorec.training.loop import run_training

    curve: dict[int, float] = {}

    def after_epoch(epoch, _model, row, report=True):
        curve[epoch] = max(curve.get(epoch - 1, float("-inf")), float(row[f"valid_{KEY}"]))
        if trial is not None and report:
            trial.report(curve[epoch], epoch)
            if trial.should_prune():
                raise Pruned()

    rec = same_settings(out, identity(run_config_to_dict(rc)), rec_path)
    if rec is not None:  # a side-by-side cell trained exactly this trial already
        for h in rec["history"]:
            after_epoch(int(h["epoch"]), None, h, report=False)
        if trial is not None:
            for e, v in curve.items():
                trial.report(v, e)
        write_json(rec_path, rec)
        return float(rec["metrics"]["valid"][KEY]), rec["metrics"]["best_epoch"], curve, False, True
    rd = os.path.join(out, "runs", os.path.relpath(os.path.splitext(rec_path)[0], out))
    t0 = time.perf_counter()
    try:
        m = run_training(rc, rd, quiet=True, overwrite=True, callback=after_epoch)
    except Pruned:
        best = max(curve.values())
        return best, min(e for e in curve if curve[e] == best), curve, True, False
    write_json(rec_path, make_record(rd, time.perf_counter() - t0, threads))
    return float(m["valid"][KEY]), m["best_epoch"], curve, False, False


def tune_model(out: str, plan: Plan, model: str, threads: int, log=print) -> dict:
    """Spend the model's tuning budget (resumable: finished trials are kept and replayed into the sampler). The
    first trial is the published recipe itself (the defaults of its knobs included)."""
    try:
        import optuna
    except ImportError:
        raise EchorecError("tuning needs optuna: pip install 'echorec[tune]'") from None
    from echorec.config import flatten, run_config_to_dict

    label, mode = plan.tune_dataset, current_mode(out, plan, model)
    if mode is None:
        raise EchorecError(f"tune {model}: its modes side-by-side has not finished")
    path = tuned_path(out, plan, model)
    saved = read_record(path) or {"trials": []}
    space = search_space(model)
    base = flatten(run_config_to_dict(cell_config(plan, label, model, plan.tune_seed, {}, mode)))
    dists = {k: _distribution(v) for k, v in space.items()}
    study = _study(plan, saved, dists)
    while len(saved["trials"]) < plan.trials:
        i = len(saved["trials"])
        trial = None if i == 0 else study.ask(dists)
        params = {k: base[k] for k in space} if trial is None else trial.params
        rc = cell_config(plan, label, model, plan.tune_seed, params, mode, threads)
        t0 = time.perf_counter()
        value, best_epoch, curve, pruned, reused = _run_trial(out, rc, trial_record_path(out, plan, model, i), trial,
                                                              threads)
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
            f"{' (pruned)' if pruned else ''}{' (a finished record, reused)' if reused else ''} "
            f"(best {top['value']:.4f})")
    return saved


@dataclasses.dataclass
class Job:
    key: str  # unique: what it makes (a record path, a tuned file)
    tag: str  # what the log says
    kind: str  # "cell" or "tune"
    rc: object = None  # cell: its RunConfig
    record: str = ""  # cell: where its record goes
    model: str = ""  # tune: the model
    order: tuple = ()  # where it runs among the ready jobs (see pending)


def _order(plan: Plan, label: str, phase: int, seed: int, model: str, sub: int = 0) -> tuple:
    """Run order: by dataset (as listed), then tuning before cells before third seeds, then seed, then model (as
    listed); a side-by-side cell runs in its model's place among the modes dataset's cells of its seed, so the
    flagship's cells need not wait for every side-by-side."""
    labels, seeds, models = list(plan.datasets), list(plan.seeds), list(plan.models)
    return (labels.index(label), phase, seeds.index(seed) if seed in seeds else len(seeds) + seed,
            models.index(model), sub)


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
                jobs.append(Job(path, f"modes {m} {mode_name(plan, mode)} seed {s}", "cell", rc, path,
                                order=_order(plan, plan.modes_dataset, 1, s, m, 1 + (mode != "prefix"))))
    # 2. tuning
    tuned = {}
    for m in plan.models:
        mode = current_mode(out, plan, m)
        if mode is None:
            waiting = True
            continue
        best = tuned_best(out, plan, m)
        if best is None:
            jobs.append(Job(tuned_path(out, plan, m), f"tune {plan.tune_dataset} {m}", "tune", model=m,
                            order=_order(plan, plan.tune_dataset, 0, plan.tune_seed, m)))
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
                job = _cell_job(out, plan, label, m, s, tuned[m], threads, phase=1)
                if job is not None:
                    jobs.append(job)
                    done_all = False
        if plan.third_seed is None or plan.third_top < 1:
            continue
        if not done_all:
            waiting = True
            continue
        for m in top_models(out, plan, label):
            job = _cell_job(out, plan, label, m, plan.third_seed, tuned[m], threads, phase=2)
            if job is not None:
                jobs.append(job)
    return sorted(jobs, key=lambda j: j.order), waiting


def _cell_job(out, plan, label, model, seed, tuned_mode, threads, phase) -> Job | None:
    best, mode = tuned_mode
    path = record_path(out, label, model, seed)
    rc = cell_config(plan, label, model, seed, best, mode, threads)
    rec = read_record(path)
    if rec is not None:
        check_record(path, rec, rc)
        return None
    return Job(path, f"{label} {model} seed {seed}", "cell", rc, path, order=_order(plan, label, phase, seed, model))


def top_models(out: str, plan: Plan, label: str) -> list[str]:
    """The plan's `third_seed.top` models with the best mean test NDCG@10 over the first seeds on `label`."""
    means = {}
    for m in plan.models:
        recs = [read_record(record_path(out, label, m, s)) for s in plan.seeds]
        means[m] = sum(r["metrics"]["test"][KEY] for r in recs) / len(recs)
    return sorted(means, key=lambda m: -means[m])[:plan.third_top]


def reuse(out: str, job: Job, log, found: list | None = None) -> bool:
    """Copy another record made with exactly this cell's settings (a side-by-side cell or a tuning trial is
    also a leaderboard cell when its settings and seed are the cell's)."""
    from echorec.config import run_config_to_dict

    rec = same_settings(out, identity(run_config_to_dict(job.rc)), job.record, found)
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
                # every cell that repeats a finished record is filled in now, not when its turn comes, so the
                # tables (and the choice of third seeds) see it at once
                found = known_settings(out)  # read once for every ready cell
                reused = [j for j in ready if j.kind == "cell" and reuse(out, j, log, found)]
                if reused:
                    write_report(out, plan)
                    continue
                while ready and len(running) < jobs and not (max_jobs and started >= max_jobs):
                    job = ready.pop(0)
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
    from echorec.bench.jobs import spawn, spawn_train

    jobdir = os.path.join(out, "jobs")
    name = os.path.relpath(os.path.splitext(job.key)[0], out).replace(os.sep, "__")
    if job.kind == "tune":
        os.makedirs(jobdir, exist_ok=True)
        logpath = os.path.join(jobdir, f"{name}.log")
        proc = spawn([sys.executable, "-m", "echorec.bench.leaderboard", "tune", os.path.join(out, "plan.yaml"), out,
                      job.model, str(threads)], logpath, threads)
        what = "tuning"
    else:
        proc, logpath, what = spawn_train(jobdir, name, job.rc, run_dir(out, job.record), threads)
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
