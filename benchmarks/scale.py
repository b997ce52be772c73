"""Every stage on synthetic logs of growing size: does anything grow faster than the data?

    python benchmarks/scale.py [--events 100000,1000000,10000000] [--work /tmp/echorec_scale]

The logs come from benchmarks/synthetic_log.py (seeded; heavy-tailed histories, power-law items, string
ids). Each stage runs in a fresh process, which reports its own wall time and the process's peak RSS:

  read      `echorec data info` with an empty cache: read, sort, remap, write the cache
  sasrec    one epoch of SASRec, --train-mode all --loss sampled (1000 negatives) --sparse-items true, batch 256
  echomamba one epoch of EchoMamba4Rec, --train-mode sample --prefixes-per-user 4 --loss sampled
            --sparse-items true, batch 256

(--loss sampled and --sparse-items are the documented settings for catalogues above ~10^5 items: the
synthetic catalogue grows with the log, to 169k items at 10^7 events, and a full softmax or a dense
update of the item table makes every step's cost grow with it.)
  eval      full-ranking evaluation (SASRec, untrained) of the first 10,000 evaluated users, items scored
            in chunks of 32,768 (bounded memory)

Training stages time the epoch alone (the trainer's `run_epoch`), not the validation pass. Writes
benchmarks/results/scale_logs.{md,csv,png}; the check is time(10^7) / time(10^6) <= 12 per stage.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = ("read", "sasrec", "echomamba", "eval")


def child(stage: str, path: str) -> None:
    """One stage in this (fresh) process; prints {"seconds": ..., "peak_rss_mib": ...}."""
    import atexit

    import torch

    # The report is the last line this process prints, with its own peak RSS: VmHWM, which exec resets
    # (ru_maxrss does not: a child forked from a parent that generated a big log inherits its peak).
    report = {}
    atexit.register(lambda: print(json.dumps({**report, "peak_rss_mib": round(_vm_hwm_kib() / 1024)}), flush=True))

    from echorec.config import EvalConfig, RunConfig
    from echorec.data.split import load_split
    from echorec.models import get_model_class

    if stage == "read":
        from echorec.cli import main

        t0 = time.perf_counter()
        main(["data", "info", path])
        report["seconds"] = time.perf_counter() - t0
        return
    model = {"sasrec": "sasrec", "echomamba": "echomamba4rec", "eval": "sasrec"}[stage]
    rc = RunConfig(model=model, model_cfg=get_model_class(model).Config())
    rc.data.dataset = path
    rc.train.progress = False
    if stage in ("sasrec", "echomamba"):
        rc.train.loss, rc.train.sparse_items = "sampled", True
    if stage == "sasrec":
        rc.data.train_mode = "all"
    elif stage == "echomamba":
        rc.data.train_mode, rc.data.prefixes_per_user = "sample", 4
    _, split = load_split(rc.data)  # from the cache the read stage wrote
    if stage == "eval":
        from echorec.eval.evaluate import evaluate
        from echorec.models import build_model

        torch.manual_seed(0)
        m = build_model(model, split.n_items, rc.model_cfg)
        split.eval_users = split.eval_users[:10_000]
        t0 = time.perf_counter()
        evaluate(m, split, "test", EvalConfig(item_chunk=32_768), 50)
        report.update(seconds=time.perf_counter() - t0, users=len(split.eval_users))
        return
    from echorec.training.loop import LoopState, run_epoch, setup

    tr = setup(rc, split, None, quiet=True)
    state = LoopState()
    report.update(seconds=run_epoch(tr, state), samples=state.n_seen)


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def run_stage(stage: str, path: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.path.join(HERE, "..", "src")}
    proc = subprocess.Popen([sys.executable, __file__, "--child", stage, "--log", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"stage {stage} on {path} failed:\n{err[-3000:]}")
    row = json.loads(out.strip().splitlines()[-1])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="100000,1000000,10000000")
    ap.add_argument("--work", default="/tmp/echorec_scale", help="logs and the cache go here")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--child", default=None)
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.log)
    from echorec import sysinfo

    sys.path.insert(0, HERE)
    from synthetic_log import make, write_csv

    os.makedirs(args.work, exist_ok=True)
    os.environ["ECHOREC_CACHE"] = os.path.join(args.work, "cache")
    rows = []
    for n in (int(x) for x in args.events.split(",")):
        path = os.path.join(args.work, f"log_{n}.csv")
        if not os.path.exists(path):
            write_csv(make(n), path)
        for stage in args.stages.split(","):
            if stage == "read":  # an empty cache: the stage reads and writes it
                import shutil

                shutil.rmtree(os.environ["ECHOREC_CACHE"], ignore_errors=True)
            r = run_stage(stage, path)
            row = {"events": n, "stage": stage, "seconds": round(r["seconds"], 3), "peak_rss_mib": r["peak_rss_mib"]}
            rows.append(row)
            print(row, flush=True)
    write(rows, sysinfo)


def write(rows: list[dict], sysinfo) -> None:
    out = os.path.join(HERE, "results")
    with open(os.path.join(out, "scale_logs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    sizes = sorted({r["events"] for r in rows})
    by = {(r["stage"], r["events"]): r for r in rows}
    lines = [f"`python benchmarks/scale.py`, commit {sysinfo.git_commit()}, {sysinfo.machine()}; one stage per fresh "
             "process (see the script's docstring for what each stage does). Seconds of the stage itself; peak "
             "RSS of its whole process.", "",
             "| stage | " + " | ".join(f"{n:,} events" for n in sizes) + " | time(10^7) / time(10^6) |",
             "|---|" + "---:|" * (len(sizes) + 1)]
    for stage in STAGES:
        cells = []
        for n in sizes:
            r = by.get((stage, n))
            cells.append("" if r is None else f"{r['seconds']:.1f} s, {r['peak_rss_mib']} MiB")
        a, b = by.get((stage, 10_000_000)), by.get((stage, 1_000_000))
        ratio = f"{a['seconds'] / b['seconds']:.1f}" if a and b else "n/a"
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {ratio} |")
    with open(os.path.join(out, "scale_logs.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for stage in STAGES:
        pts = [(r["events"], r["seconds"]) for r in rows if r["stage"] == stage]
        if pts:
            ax.loglog(*zip(*pts), marker="o", label=stage)
    ax.set_xlabel("events")
    ax.set_ylabel("seconds")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "scale_logs.png"), dpi=110)


if __name__ == "__main__":
    main()
