"""One training epoch of each model on ml-100k with two checkouts of echorec, alternating, side by side: the
epoch's training seconds, and whether every recorded number (epoch loss, valid and test metrics) is equal to the
last digit. Used to show that a refactor changes neither results nor speed.

    python benchmarks/epoch_before_after.py --old /path/to/old/checkout --new . --models sasrec,echomamba4rec \\
        --reps 2 --out benchmarks/results/epoch_before_after.md

Each run is `python -m echorec train ... --epochs 1` with PYTHONPATH set to the checkout's src/, so the two runs
differ in nothing but the code. Before timing, each checkout trains one epoch of each model on a tiny log, so the
numba kernels are compiled (and cached) for both and no compilation is timed. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _output import emit

HERE = os.path.dirname(os.path.abspath(__file__))


def train(checkout: str, model: str, dataset: str, out: str, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(checkout), "src"))
    cmd = [sys.executable, "-m", "echorec", "train", "--model", model, "--dataset", dataset, "--epochs", "1",
           "--threads", str(threads), "--progress", "false", "--out", out, "--overwrite"]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    with open(os.path.join(out, "history.csv")) as f:
        head, row = f.read().splitlines()[:2]
    hist = dict(zip(head.split(","), row.split(",")))
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    return {"seconds": float(hist["seconds"]), "loss": hist["loss"], "valid": metrics["valid"],
            "test": metrics["test"]}


def tiny_log(path: str) -> None:
    with open(path, "w") as f:
        for u in range(60):
            f.write(f"{u} " + " ".join(str((u + i) % 40 + 1) for i in range(12)) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the checkout before the change (its src/ is imported)")
    ap.add_argument("--new", default=".", help="the checkout after the change")
    ap.add_argument("--models", default="sasrec,echomamba4rec")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    a = ap.parse_args()
    models = a.models.split(",")
    tmp = tempfile.mkdtemp(prefix="echorec_before_after_")
    tiny = os.path.join(tmp, "tiny.txt")
    tiny_log(tiny)
    for side in (a.old, a.new):
        for m in models:
            train(side, m, tiny, os.path.join(tmp, "warm"), a.threads)
    rows, same = [], True
    for rep in range(1, a.reps + 1):
        for m in models:
            order = [("old", a.old), ("new", a.new)] if rep % 2 else [("new", a.new), ("old", a.old)]
            got = {name: train(side, m, a.dataset, os.path.join(tmp, name), a.threads) for name, side in order}
            equal = all(got["old"][k] == got["new"][k] for k in ("loss", "valid", "test"))
            same &= equal
            rows.append((rep, m, got["old"], got["new"], equal))
            print(f"rep {rep} {m}: old {got['old']['seconds']:.1f} s, new {got['new']['seconds']:.1f} s, "
                  f"metrics equal: {equal}", flush=True)
    lines = ["| rep | model | old s | new s | epoch loss | valid NDCG@10 | test NDCG@10 | all equal |",
             "|---:|---|---:|---:|---|---|---|---|"]
    for rep, m, old, new, equal in rows:
        lines.append(f"| {rep} | {m} | {old['seconds']:.1f} | {new['seconds']:.1f} | {new['loss']} | "
                     f"{new['valid']['ndcg@10']!r} | {new['test']['ndcg@10']!r} | {'yes' if equal else 'NO'} |")
    for m in models:
        o = statistics.median(r[2]["seconds"] for r in rows if r[1] == m)
        n = statistics.median(r[3]["seconds"] for r in rows if r[1] == m)
        lines.append(f"\n{m}: median epoch {o:.1f} s (old) vs {n:.1f} s (new), ratio new/old {n / o:.3f}")
    text = "\n".join(lines)
    emit(text, a.out)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
