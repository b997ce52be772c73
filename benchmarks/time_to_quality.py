"""Time to quality: sampled-prefix training (`--train-mode sample`) against every-prefix training, side by side.

For each dataset, training mode and seed, one cell trains a model (EchoMamba4Rec by default) with early
stopping, exactly as `echorec train` would with that mode, and records after every epoch the wall time spent
so far (training + validation; the test evaluations this study adds are not counted) and the test NDCG@10 of
the model that validation would select at that point (the best-valid weights so far). From those curves:

- converged quality: each cell's test NDCG@10 at its best-valid epoch, mean ± SD over seeds;
- the paired comparison over users: per user, the sample mode's test NDCG@10 minus the prefix mode's (each
  averaged over seeds), its mean relative to the prefix mode's mean, and the standard error of that mean;
- time to quality: the first wall time at which a cell's selected model reaches 99% of the prefix mode's
  converged test NDCG@10 (mean over seeds), and its ratio to the prefix mode's own time to that level;
  "never" when a cell stops before reaching it.

Cells run as separate processes, `--jobs` at a time with `--threads` each (default: two single-threaded jobs
on a 2-core machine, so every cell is timed under the same load). Resumable: a finished cell is skipped and an
interrupted one continues from its checkpoint, so the study can be stopped and started again.

    python benchmarks/time_to_quality.py --datasets ml-100k,../shared/data/Beauty/Beauty.txt --seeds 3 \\
        --out benchmarks/results/time_to_quality
    python benchmarks/time_to_quality.py --report --out benchmarks/results/time_to_quality   # tables only
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import time

MODES = ("prefix", "sample")
QUALITY = 0.99  # the share of the prefix mode's converged test NDCG@10 that counts as "reached"
KEY = "ndcg@10"


def label(ds: str) -> str:
    return os.path.splitext(os.path.basename(ds.rstrip(os.sep)))[0] if os.sep in ds else ds


def cell_dir(out: str, ds: str, mode: str, seed: int) -> str:
    """The cell's run folder (checkpoints, weights; not kept in git)."""
    return os.path.join(out, "runs", label(ds), mode, f"seed{seed}")


def cell_record(out: str, ds: str, mode: str, seed: int) -> str:
    """A finished cell's record: its curve and every user's test rank (small; kept with the results)."""
    return os.path.join(out, "cells", f"{label(ds)}_{mode}_seed{seed}.json")


def settings(ds: str, mode: str, seed: int, threads: int, extra: dict) -> dict:
    """`echorec train`'s defaults for the dataset, with the mode and seed of the cell. S3-Rec text files are
    scored as their papers do (items in the history are not ranked); ml-100k as RecBole does (they are).
    A mode `sampleK` (e.g. sample16) is the sample mode with K prefixes per user and epoch, `sampleKpP` (e.g.
    sample16p40) that with early-stopping patience P epochs (an epoch of K samples per user is short), and a `u`
    after K (sample16u) draws as many prefixes uniformly over all positions (`--prefix-draw uniform`)."""
    s = {"dataset": ds, "train_mode": mode, "seed": seed, "threads": threads, "progress": False,
         "exclude_history": ds.endswith(".txt")}
    s.update(extra)
    m = re.fullmatch(r"sample(\d+)(u?)(?:p(\d+))?", mode)
    if m:
        s.update(train_mode="sample", prefixes_per_user=int(m[1]), prefix_draw="uniform" if m[2] else "user")
        if m[3]:
            s["patience"] = int(m[3])
    return s


# -- one cell (a child process) ----------------------------------------------------------------------------------

def run_cell(out: str, ds: str, mode: str, seed: int, threads: int, model: str, extra: dict) -> None:
    import dataclasses

    from echorec.api import make_config
    from echorec.data.split import load_split
    from echorec.eval.evaluate import evaluate
    from echorec.fsio import read_json, write_json
    from echorec.runfolder import CHECKPOINT, RunFolder
    from echorec.sysinfo import environment as machine
    from echorec.training.loop import train_model

    folder = cell_dir(out, ds, mode, seed)
    if os.path.exists(cell_record(out, ds, mode, seed)):
        return
    rc = make_config(model=model, **settings(ds, mode, seed, threads, extra))
    _, split = load_split(rc.data)
    curve_path = os.path.join(folder, "curve.json")
    resume = RunFolder(folder).has(CHECKPOINT)
    curve = read_json(curve_path) if resume and os.path.exists(curve_path) else {}
    test_cfg = dataclasses.replace(rc.eval, ks=[10])
    # Every process that trains some of the cell, with its machine: timings from two machines do not add up.
    mpath = os.path.join(folder, "machines.json")
    machines = (read_json(mpath) if resume and os.path.exists(mpath) else []) + [machine()]
    write_json(mpath, machines)

    def after_epoch(epoch: int, m, row: dict) -> None:
        valid = row[f"valid_{rc.eval.metric_key}"]
        # Earlier epochs only: a resume may redo an epoch whose row was written before its checkpoint was.
        best = max((c["valid"] for k, c in curve.items() if int(k) < epoch), default=-math.inf)
        if valid > best:  # the weights validation selects now: score them on test (not timed: after the row)
            test = evaluate(m, split, "test", test_cfg, rc.data.max_len, "cpu")[KEY]
        else:
            test = curve[str(epoch - 1)]["test"]
        curve[str(epoch)] = {"valid": valid, "test": test}
        write_json(curve_path, curve)

    res = train_model(rc, split, folder, quiet=True, callback=after_epoch, resume=resume)
    _, ranks = evaluate(res.model, split, "test", test_cfg, rc.data.max_len, "cpu", return_ranks=True)
    rows = [{"epoch": h["epoch"], "wall_s": h["seconds"] + h["eval_seconds"]} for h in res.history]
    elapsed = 0.0
    for r in rows:
        elapsed += r["wall_s"]
        r["elapsed_s"] = elapsed
        r.update(curve[str(r["epoch"])])
    os.makedirs(os.path.dirname(cell_record(out, ds, mode, seed)), exist_ok=True)
    write_json(cell_record(out, ds, mode, seed), {
        "dataset": label(ds), "mode": mode, "seed": seed, "model": model, "best_epoch": res.best_epoch,
        "epochs": len(res.history), "wall_s": elapsed, "samples_per_epoch": res.samples_per_epoch,
        "test_ndcg10": res.test[KEY], "curve": rows, "threads": threads, "machines": machines, "test_ranks": ranks.tolist(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S")})


# -- the report ---------------------------------------------------------------------------------------------------

def time_to(curve: list[dict], level: float) -> float | None:
    """The first elapsed wall time at which the selected model's test NDCG@10 reaches `level`."""
    return next((c["elapsed_s"] for c in curve if c["test"] >= level), None)


def report(out: str) -> str:
    import torch

    from echorec.eval.metrics import per_user_metrics
    from echorec.fsio import read_json

    cells = {}
    where = os.path.join(out, "cells")
    for name in sorted(os.listdir(where)) if os.path.isdir(where) else []:
        c = read_json(os.path.join(where, name))
        c["per_user"] = per_user_metrics(torch.tensor(c["test_ranks"]), (10,))[KEY].numpy()
        cells.setdefault(c["dataset"], {}).setdefault(c["mode"], {})[c["seed"]] = c
    study = read_json(os.path.join(out, "study.json"))
    lines = ["# Time to quality: sampled prefixes vs every prefix", "",
             f"Made by `{study['command']}` (started {study['started']} at commit {study['commit']} on "
             f"{study['machine']}; {study['jobs']} jobs at a time, {study['threads']} thread(s) each)"
             + "".join(f", then `{c}`" for c in study.get("more_commands", [])) + ".", "",
             f"Model {study['model']}, `echorec train` defaults otherwise (early stopping, patience "
             f"{study['patience']}); `sample` draws {study['prefixes_per_user']} prefixes per user and epoch. "
             f"Wall time is training + validation up to that epoch. Time to quality: the first wall time at "
             f"which the model validation selects reaches {QUALITY:.0%} of the prefix mode's converged test "
             f"NDCG@10 (its mean over seeds).", ""]
    mixed = sorted(f"{c['dataset']} {c['mode']} seed {c['seed']}" for m in cells.values() for sc in m.values()
                   for c in sc.values() if len(set(c["machines"])) > 1)
    if mixed:
        lines += [f"Trained on more than one machine (their times mix two CPUs): {', '.join(mixed)}.", ""]
    for ds in sorted(cells):
        lines += dataset_section(ds, cells[ds])
    return "\n".join(lines)


def dataset_section(ds: str, modes: dict) -> list[str]:
    """One dataset's table of modes against prefix mode, the paired tests and the per-sample table."""
    import numpy as np

    from echorec.bench.stats import mean, std

    lines = [f"## {ds}", ""]
    pre = modes.get("prefix", {})
    if not pre:
        lines += ["No finished prefix-mode cell yet: pending.", ""]
        return lines
    ref = mean([c["test_ndcg10"] for c in pre.values()])
    level = QUALITY * ref
    ttq_pre = mean([t for t in (time_to(c["curve"], level) for c in pre.values()) if t is not None] or [math.nan])
    lines += ["| mode | seeds | test NDCG@10 | best/run epochs | wall s to stop | s to 99% | ratio to prefix |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mode in MODES + tuple(sorted(set(modes) - set(MODES), key=lambda m: (int(re.findall(r"\d+", m)[0]), m))):
        cs = [modes[mode][s] for s in sorted(modes.get(mode, {}))]
        if not cs:
            lines.append(f"| {mode} | 0 | pending | | | | |")
            continue
        nd = [c["test_ndcg10"] for c in cs]
        ttq = [time_to(c["curve"], level) for c in cs]
        reached = [t for t in ttq if t is not None]
        ttq_txt = (f"{mean(reached):.0f}" if reached else "never") + \
                  (f" ({len(reached)}/{len(cs)} reached)" if len(reached) < len(cs) else "")
        ratio = f"{mean(reached) / ttq_pre:.2f}" if reached and not math.isnan(ttq_pre) else "n/a"
        sd = f" ± {std(nd):.4f}" if len(nd) > 1 else ""
        lines.append(f"| {mode} | {len(cs)} | {mean(nd):.4f}{sd} | "
                     f"{mean([c['best_epoch'] for c in cs]):.1f}/{mean([c['epochs'] for c in cs]):.1f} | "
                     f"{mean([c['wall_s'] for c in cs]):.0f} | {ttq_txt} | {ratio} |")
    lines.append("")
    for mode in sorted(set(modes) - {"prefix"}):
        common = sorted(set(pre) & set(modes[mode]))
        if not common:
            continue
        a = np.mean([modes[mode][s]["per_user"] for s in common], axis=0)
        b = np.mean([pre[s]["per_user"] for s in common], axis=0)
        d = a - b
        se = d.std(ddof=1) / math.sqrt(len(d))
        rel = d.mean() / b.mean()
        verdict = "within" if abs(d.mean()) <= se else "outside"
        lines += [f"Paired over {len(d):,} users (seeds {', '.join(map(str, common))}, each user's NDCG@10 "
                  f"averaged over them): {mode} - prefix = {d.mean():+.4f} ({rel:+.1%} of prefix), paired SE "
                  f"{se:.4f} ({se / b.mean():.1%}): {verdict} one paired SE.", ""]
    lines += per_sample_table(modes)
    return lines


PREFIX_EPOCHS = (1, 2, 4, 8)  # training samples seen, in epochs of the prefix mode


def best_valid_after(curve: list[dict], per_epoch: int, samples: float) -> float | None:
    """The best valid NDCG@10 among the epochs that end within `samples` training samples; None when the cell
    stopped before it had seen that many (its best then says nothing about what more training would reach)."""
    k = int(samples // per_epoch)
    if k == 0 or len(curve) < k:
        return None
    return max(c["valid"] for c in curve[:k])


def per_sample_table(modes: dict) -> list[str]:
    """Learning per training sample seen: does a mode learn more from a sample, or only see fewer of them?"""
    import numpy as np

    if not all("samples_per_epoch" in c for sc in modes.values() for c in sc.values()) or "prefix" not in modes:
        return []
    unit = np.mean([c["samples_per_epoch"] for c in modes["prefix"].values()])
    head = " | ".join(f"{e} prefix epoch{'s' if e > 1 else ''}" for e in PREFIX_EPOCHS)
    lines = [f"Per training sample seen (a prefix epoch is {unit:,.0f} samples): the cost of a sample and the best "
             f"valid NDCG@10 (mean over seeds) among the epochs within so many samples; \"stopped\" where a cell "
             f"stopped earlier, and a count where only some seeds got that far.", "",
             f"| mode | samples per epoch | ms per sample | samples at stop (prefix epochs) | {head} |",
             "| --- | ---: | ---: | ---: |" + " ---: |" * len(PREFIX_EPOCHS)]
    for mode in sorted(modes, key=lambda m: (m != "prefix", m)):
        cs = list(modes[mode].values())
        per = cs[0]["samples_per_epoch"]
        ms = np.mean([1e3 * c["wall_s"] / (len(c["curve"]) * c["samples_per_epoch"]) for c in cs])
        at_stop = np.mean([len(c["curve"]) * c["samples_per_epoch"] / unit for c in cs])
        cols = []
        for e in PREFIX_EPOCHS:
            got = [v for v in (best_valid_after(c["curve"], c["samples_per_epoch"], e * unit) for c in cs)
                   if v is not None]
            cols.append("stopped" if not got else f"{np.mean(got):.4f}"
                        + (f" ({len(got)}/{len(cs)})" if len(got) < len(cs) else ""))
        lines.append(f"| {mode} | {per:,} | {ms:.2f} | {at_stop:.1f} | " + " | ".join(cols) + " |")
    return lines + [""]


# -- the driver -----------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ml-100k", help="comma-separated named datasets or files")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model", default="echomamba4rec")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    ap.add_argument("--threads", type=int, default=1, help="threads per cell")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a training setting for every cell (e.g. prefixes_per_user=8)")
    ap.add_argument("--out", default="benchmarks/results/time_to_quality")
    ap.add_argument("--report", action="store_true", help="only write the tables from finished cells")
    ap.add_argument("--cell", nargs=3, metavar=("DATASET", "MODE", "SEED"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    extra = dict(s.split("=", 1) for s in a.set)
    if a.cell:
        run_cell(a.out, a.cell[0], a.cell[1], int(a.cell[2]), a.threads, a.model, extra)
        return
    if not a.report:
        drive(a, extra)
    text = report(a.out)
    from echorec.fsio import atomic_write_text

    atomic_write_text(os.path.join(a.out, "results.md"), text + "\n")
    print(text)


def drive(a, extra: dict) -> None:
    from echorec import sysinfo
    from echorec.api import make_config
    from echorec.fsio import read_json, write_json
    from echorec.sysinfo import environment as machine

    datasets = [d for d in a.datasets.split(",") if d]
    seeds = list(range(42, 42 + a.seeds))
    rc = make_config(model=a.model, **settings(datasets[0], "sample", 42, a.threads, extra))
    os.makedirs(a.out, exist_ok=True)
    spath = os.path.join(a.out, "study.json")
    study = {"model": a.model, "patience": rc.train.patience, "prefixes_per_user": rc.data.prefixes_per_user,
             "settings": extra, "threads": a.threads}
    if os.path.exists(spath):  # (how many cells run at once may change between calls; what they compute may not)
        saved = read_json(spath)
        if {k: saved.get(k) for k in study} != study:
            sys.exit(f"error: {spath}: this study was run with other settings; use them or another --out")
        command = "python " + " ".join(sys.argv)
        if command not in [saved["command"], *saved.get("more_commands", [])]:
            write_json(spath, {**saved, "more_commands": saved.get("more_commands", []) + [command]})
    else:
        write_json(spath, {**study, "jobs": a.jobs, "command": "python " + " ".join(sys.argv),
                           "commit": sysinfo.git_commit(),
                           "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    # Dataset by dataset; within one, the long prefix cells first, so the short sample cells fill in beside them
    # and no cell runs alone for long.
    todo = [(ds, m, s) for ds in datasets for m in a.modes.split(",") for s in seeds
            if not os.path.exists(cell_record(a.out, ds, m, s))]
    todo.sort(key=lambda c: (datasets.index(c[0]), c[1] != "prefix"))
    running: list[tuple[subprocess.Popen, tuple]] = []
    # A stopped driver stops its cells too (each resumes from its checkpoint on the next start).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        _loop(a, todo, running)
    finally:
        for p, _ in running:
            p.terminate()


def _loop(a, todo: list, running: list) -> None:
    while todo or running:
        while todo and len(running) < a.jobs:
            ds, m, s = todo.pop(0)
            os.makedirs(cell_dir(a.out, ds, m, s), exist_ok=True)
            log = open(os.path.join(cell_dir(a.out, ds, m, s), "cell.log"), "a")
            cmd = [sys.executable, __file__, "--cell", ds, m, str(s), "--out", a.out, "--model", a.model,
                   "--threads", str(a.threads)] + [x for kv in a.set for x in ("--set", kv)]
            env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "NUMBA_NUM_THREADS": str(a.threads)}
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), (ds, m, s)))
            print(f"[{time.strftime('%H:%M:%S')}] start {label(ds)} {m} seed {s}", flush=True)
        time.sleep(2)
        for p, c in list(running):
            if p.poll() is not None:
                running.remove((p, c))
                print(f"[{time.strftime('%H:%M:%S')}] {'done' if p.returncode == 0 else f'FAILED rc {p.returncode}'} "
                      f"{label(c[0])} {c[1]} seed {c[2]}", flush=True)


if __name__ == "__main__":
    main()
