"""Train several models (and EchoMamba4Rec ablations) on several datasets under one protocol and
budget; write a results table. Resumable: a cell whose run folder already has metrics.json is
skipped, so an interrupted study continues where it stopped.

    python benchmarks/compare.py --study main       # echomamba4rec, mamba4rec, sasrec x datasets
    python benchmarks/compare.py --study ablation   # echomamba4rec with each switch off

Protocol (every cell): leave-one-out, prefix training samples, max_len 50, batch 256, Adam lr 1e-3,
full ranking over all items, best epoch by valid NDCG@10, the same epoch budget and patience.
On the S3-Rec files (LastFM, Beauty) the items already in a user's history are excluded from the
ranking, as in the S3-Rec/FMLP-Rec/BSARec evaluation code; on ml-100k they are not (RecBole's way).
Results: benchmarks/results/<study>.{csv,md}; runs: benchmarks/runs/<study>/ (not committed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys

from echorec import sysinfo

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data"))

DATASETS = {
    "ml-100k": ("ml-100k", []),
    "LastFM": (os.path.join(SHARED, "LastFM", "LastFM.txt"), ["--exclude-history", "true"]),
    "Beauty": (os.path.join(SHARED, "Beauty", "Beauty.txt"), ["--exclude-history", "true"]),
}
MAIN = [("echomamba4rec", "echomamba4rec", []), ("mamba4rec", "mamba4rec", []), ("sasrec", "sasrec", [])]
ABLATION = [
    ("full", "echomamba4rec", []),
    ("no filter", "echomamba4rec", ["--filter", "false"]),
    ("no backward", "echomamba4rec", ["--backward", "false"]),
    ("no GLU", "echomamba4rec", ["--glu", "none"]),
    ("init=mamba", "echomamba4rec", ["--init", "mamba"]),
]


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=HERE).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", choices=["main", "ablation"], default="main")
    ap.add_argument("--datasets", default="ml-100k,LastFM,Beauty")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    cells = MAIN if args.study == "main" else ABLATION
    runs = os.path.join(HERE, "runs", args.study)
    rows = []
    for ds in args.datasets.split(","):
        path, ds_flags = DATASETS[ds]
        for label, model, flags in cells:
            out = os.path.join(runs, ds, label.replace(" ", "_").replace("=", "-"))
            mfile = os.path.join(out, "metrics.json")
            if not os.path.exists(mfile) and os.path.exists(os.path.join(out, "checkpoint.safetensors")):
                print("[compare] resuming", out, flush=True)  # a cell interrupted earlier continues exactly
                subprocess.run([sys.executable, "-m", "echorec", "train", "--resume", out], check=True)
            elif not os.path.exists(mfile):
                cmd = [sys.executable, "-m", "echorec", "train", "--overwrite", "--model", model, "--dataset", path,
                       "--out", out,
                       "--epochs", str(args.epochs), "--patience", str(args.patience), "--seed", str(args.seed),
                       "--max-len", "50", "--batch-size", "256", "--lr", "1e-3", "--progress", "false",
                       *ds_flags, *flags]
                print("[compare]", " ".join(cmd[2:]), flush=True)
                subprocess.run(cmd, check=True)
            m = json.load(open(mfile))
            t = m["test"]
            with open(os.path.join(out, "history.csv")) as f:
                secs = sorted(float(r["seconds"]) for r in csv.DictReader(f))
            median_s = secs[len(secs) // 2] if len(secs) % 2 else (secs[len(secs) // 2 - 1] + secs[len(secs) // 2]) / 2
            rows.append({"dataset": ds, "model": label, "hit@10": t["hit@10"], "ndcg@10": t["ndcg@10"],
                         "mrr@10": t["mrr@10"], "hit@20": t["hit@20"], "ndcg@20": t["ndcg@20"],
                         "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                         "s_per_epoch": median_s, "exclude_history": m["exclude_history"]})
            write(args, rows)


def write(args, rows):
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    base = os.path.join(HERE, "results", args.study)
    with open(base + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    machine = f"{sysinfo.machine()}, OMP_NUM_THREADS={threads}"
    lines = [f"Study `{args.study}`: budget {args.epochs} epochs, patience {args.patience}, seed {args.seed}; "
             f"{machine}; commit {git_commit()}; `python benchmarks/compare.py --study {args.study} "
             f"--epochs {args.epochs} --patience {args.patience}`", "",
             "| dataset | model | HR@10 | NDCG@10 | MRR@10 | HR@20 | NDCG@20 | best / run epochs | s/epoch (median) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    best = {}
    for r in rows:
        best[r["dataset"]] = max(best.get(r["dataset"], 0), r["ndcg@10"])
    for r in rows:
        b = "**" if r["ndcg@10"] == best[r["dataset"]] else ""
        lines.append(f"| {r['dataset']} | {r['model']} | {r['hit@10']:.4f} | {b}{r['ndcg@10']:.4f}{b} | "
                     f"{r['mrr@10']:.4f} | {r['hit@20']:.4f} | {r['ndcg@20']:.4f} | {r['best_epoch']} / "
                     f"{r['epochs_run']} | {r['s_per_epoch']:.1f} |")
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
