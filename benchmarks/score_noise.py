"""How much of a gap between two test scores is noise? Per-user test metrics of trained run folders.

Reloads each run folder, ranks its test item for every user (the run's own protocol: max_len, history
masking), and prints, per run, HR@10 and NDCG@10 with their standard error over users (the spread one
would see from drawing another test set of the same size). For every pair of runs it prints the mean
per-user difference and its paired standard error (same users, so the easy and hard users cancel):
that is the yardstick for a gap between two models scored on this test set. With --ref-hr/--ref-ndcg
(a published figure with no per-user data) it also says how many of those paired standard errors
separate each run from the reference.

    python benchmarks/score_noise.py RUN [RUN ...] [--ref-hr 0.1008 --ref-ndcg 0.0611] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import math
import os
import sys

import numpy as np
import torch

from echorec.data.split import load_split
from echorec.eval.evaluate import evaluate
from echorec.eval.metrics import per_user_metrics
from echorec.runfolder import RunFolder


def per_user(run: str, k: int) -> tuple[str, dict[str, torch.Tensor]]:
    """(a digest of the data the run was trained on, per-user HR@k and NDCG@k on its test split, each
    (n_users,) float64)."""
    rc, model, _ = RunFolder(run).load_model()
    data, split = load_split(rc.data)
    e = dataclasses.replace(rc.eval, ks=[k])
    _, ranks = evaluate(model, split, "test", e, rc.data.max_len, "cpu", return_ranks=True)
    m = per_user_metrics(ranks, (k,))
    # Pairing user i of one run with user i of another needs the same users and sequences: compare a digest of
    # the preprocessed data, not the config's path string (runs trained from different folders name one file
    # differently; one file read with other options gives other users).
    digest = hashlib.sha1()
    for part in (data.user_raw, data.offsets, data.items):  # offsets: where each user's sequence starts
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()[:10], {"hr": m[f"hit@{k}"], "ndcg": m[f"ndcg@{k}"]}


def se(x: torch.Tensor) -> float:
    return x.std().item() / math.sqrt(len(x))


def run_names(runs: list[str]) -> list[str]:
    """Each run's path below the folder the runs share (a study's runs differ above their `seed42`)."""
    paths = [os.path.normpath(os.path.abspath(r)) for r in runs]
    if len(paths) == 1:
        return [os.path.basename(paths[0])]
    common = os.path.commonpath(paths)
    return [os.path.relpath(p, common) if p != common else os.path.basename(p) for p in paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ref-hr", type=float, default=None)
    ap.add_argument("--ref-ndcg", type=float, default=None)
    ap.add_argument("--out", default=None, help="also write the tables to this markdown file")
    a = ap.parse_args()
    k = a.k
    loaded = {name: per_user(r, k) for name, r in zip(run_names(a.runs), a.runs)}
    digests = {name: d for name, (d, _) in loaded.items()}
    if len(set(digests.values())) > 1:
        sys.exit("score_noise.py: the runs were trained on different data (digest of the preprocessed sequences: "
                 + ", ".join(f"{name} {d}" for name, d in digests.items()) + ")")
    vals = {name: v for name, (_, v) in loaded.items()}
    n = len(next(iter(vals.values()))["hr"])
    lines = [f"Test users: {n:,}. Standard errors are over users (std / sqrt(n)).", "",
             f"| run | HR@{k} | SE | NDCG@{k} | SE |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, v in vals.items():
        lines.append(f"| {name} | {v['hr'].mean():.4f} | {se(v['hr']):.4f} | {v['ndcg'].mean():.4f} | {se(v['ndcg']):.4f} |")
    pairs = list(itertools.combinations(vals, 2))
    paired_se = {"hr": [], "ndcg": []}
    if pairs:
        lines += ["", f"| pair | HR@{k} diff | paired SE | NDCG@{k} diff | paired SE |", "| --- | ---: | ---: | ---: | ---: |"]
        for x, y in pairs:
            d = {m: vals[x][m] - vals[y][m] for m in ("hr", "ndcg")}
            for m in d:
                paired_se[m].append(se(d[m]))
            lines.append(f"| {x} - {y} | {d['hr'].mean():+.4f} | {se(d['hr']):.4f} | "
                         f"{d['ndcg'].mean():+.4f} | {se(d['ndcg']):.4f} |")
    if pairs and a.ref_hr is not None and a.ref_ndcg is not None:
        # The reference has no per-user ranks; a paired SE between two of our runs of comparable quality
        # stands in for the one between a run and the reference (an assumption, stated in the output).
        ps = {m: sum(v) / len(v) for m, v in paired_se.items()}
        lines += ["", f"Reference HR@{k} {a.ref_hr} / NDCG@{k} {a.ref_ndcg}; the yardstick is the mean paired SE "
                  f"between the runs above ({ps['hr']:.4f} / {ps['ndcg']:.4f}), assuming the reference run's "
                  "per-user scores correlate with ours as our runs' do with each other.", "",
                  f"| run | HR@{k} gap to reference | in paired SEs | NDCG@{k} gap | in paired SEs |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, v in vals.items():
            gh, gn = a.ref_hr - v["hr"].mean().item(), a.ref_ndcg - v["ndcg"].mean().item()
            lines.append(f"| {name} | {gh:+.4f} | {gh / ps['hr']:.1f} | {gn:+.4f} | {gn / ps['ndcg']:.1f} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(f"`python {' '.join(sys.argv)}`\n\n{text}\n")


if __name__ == "__main__":
    main()
