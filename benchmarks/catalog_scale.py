"""Memory at catalog scale: a synthetic log of 1M items x 100k users (about 2M interactions).

Measures, each in a fresh process, the peak resident-memory rise of
  (1) one SASRec training step with the sampled-softmax loss (batch 256, 1000 negatives), and
  (2) full-ranking evaluation of 2,048 users over all 1M items in item chunks (--item-chunk),
and prints them next to the size of the model and its Adam state. The bound to check: the step and
the evaluation stay within a small multiple of the parameters, never O(batch x n_items).

    python benchmarks/catalog_scale.py [--items 1000000] [--users 100000] [--chunk 65536]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from echorec import sysinfo
from echorec.models.base import Objective


def rss(key="VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0


def synthetic(n_items: int, n_users: int, seed: int = 0):
    from echorec.data.preprocess import SeqData

    rng = np.random.default_rng(seed)
    lens = rng.integers(5, 36, size=n_users)
    items = rng.integers(1, n_items + 1, size=int(lens.sum()), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return SeqData(items, offsets, np.arange(1, n_items + 1).astype(str), np.arange(n_users).astype(str))


def child(what: str, n_items: int, n_users: int, chunk: int) -> None:
    from echorec.config import EvalConfig
    from echorec.data.split import BatchIterator, leave_one_out
    from echorec.eval.evaluate import evaluate
    from echorec.models.sasrec import SASRec, SASRecConfig

    split = leave_one_out(synthetic(n_items, n_users))
    torch.manual_seed(0)
    model = SASRec(n_items, 50, SASRecConfig())
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    params_mib = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    if what == "train":
        # Adam's state exists after a first step; measure the second one.
        s, e = split.train_samples("prefix", 50)
        it = BatchIterator(split, s, e, 50, 256)
        for i, idx in enumerate(it.order(1)[:2]):
            if i == 1:
                base = rss()
                t0 = time.perf_counter()
            b = it.make(idx)
            loss = model.loss(b, Objective(negatives=torch.randint(1, n_items + 1, (1000,))))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sec = time.perf_counter() - t0
    else:
        base = rss()
        t0 = time.perf_counter()
        sub = split
        sub.eval_users = split.eval_users[:2048]
        evaluate(model, sub, "test", EvalConfig(eval_batch_size=256, item_chunk=chunk), 50)
        sec = time.perf_counter() - t0
    print(json.dumps({"what": what, "peak_rise_mib": rss("VmHWM") - base, "params_mib": params_mib, "seconds": sec}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=65_536)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.items, args.users, args.chunk)
    rows = []
    for what in ("train", "eval"):
        out = subprocess.run([sys.executable, __file__, "--child", what, "--items", str(args.items), "--users",
                              str(args.users), "--chunk", str(args.chunk)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    p = rows[0]["params_mib"]
    commit = sysinfo.git_commit()
    lines = [f"`python benchmarks/catalog_scale.py`, commit {commit}, {sysinfo.machine()}, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}.", "",
             f"Synthetic catalog: {args.items:,} items x {args.users:,} users; SASRec (hidden 64): parameters "
             f"{p:.0f} MiB (+ 2x that for Adam). Peak resident-memory rise, fresh process each:", "",
             "| what | peak rise (MiB) | seconds |", "| --- | ---: | ---: |",
             f"| one training step, sampled softmax (batch 256, 1000 negatives) | {rows[0]['peak_rise_mib']:.0f} | "
             f"{rows[0]['seconds']:.2f} |",
             f"| full-ranking eval of 2,048 users, item chunks of {args.chunk:,} | {rows[1]['peak_rise_mib']:.0f} | "
             f"{rows[1]['seconds']:.2f} |",
             "", f"A full (B x n_items) score matrix for a batch of 256 would alone take "
                 f"{256 * args.items * 4 / 2**20:.0f} MiB."]
    # The stated bounds: a training step needs at most the dense gradient of the parameters (2x their size)
    # plus 128 MiB; chunked evaluation at most half of one unchunked score matrix.
    train_bound = 2 * p + 128
    eval_bound = 0.5 * 256 * args.items * 4 / 2**20
    lines += ["", f"Bounds: training step <= 2 x parameters + 128 MiB = {train_bound:.0f} MiB: "
                  f"{'PASS' if rows[0]['peak_rise_mib'] <= train_bound else 'FAIL'}; "
                  f"evaluation <= half an unchunked score matrix = {eval_bound:.0f} MiB: "
                  f"{'PASS' if rows[1]['peak_rise_mib'] <= eval_bound else 'FAIL'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "catalog_scale.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
