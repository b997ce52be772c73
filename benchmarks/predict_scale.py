"""Batch scoring at scale: `echorec predict` over logs of 10^5 to 10^6 users (histories of 1 to 50 items, uniform)
on a 10^5-item catalogue, for each model: users per second, and the process's memory (RSS) after the log is read
and at its peak, so the scorer's own memory can be told apart from the log's.

    python benchmarks/predict_scale.py --users 100000,300000,1000000 --models sasrec,echomamba4rec \\
        --out benchmarks/results/predict_scale.md

The run folders hold untrained weights (the speed of scoring does not depend on what was learned): each is the
model built at its defaults for the catalogue, saved with the id maps of the log, as `echorec train` would write
them. Every (model, users) cell runs `echorec predict` in a fresh process (its peak RSS is its own), one at a time;
run it on a quiet machine. Logs are Parquet files, generated once per user count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from _output import emit

HERE = os.path.dirname(os.path.abspath(__file__))


def make_log(n_users: int, n_items: int, path: str, seed: int = 0) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 51, size=n_users)
    user = np.repeat(np.arange(n_users), lens)
    popular = np.minimum(rng.zipf(1.2, size=len(user)), n_items) - 1  # a power law over the catalogue
    item = np.where(rng.random(len(user)) < 0.5, popular, rng.integers(0, n_items, size=len(user)))  # half uniform
    t = np.arange(len(user), dtype=np.int64)
    pq.write_table(pa.table({"user_id": pa.array(np.char.add("u", user.astype(str))),
                             "item_id": pa.array(np.char.add("i", item.astype(str))),
                             "timestamp": pa.array(t)}), path)
    return len(user)


def make_run(model: str, log: str, out: str) -> None:
    """A run folder with the model's default settings and untrained weights for the log's catalogue."""
    import echorec

    rc = echorec.make_config(model=model, dataset=log)
    from echorec.data.split import load_split
    from echorec.models import build_model
    from echorec.runfolder import RunFolder

    data, split = load_split(rc.data)
    from echorec.config import run_config_to_dict

    folder = RunFolder(out)
    folder.start(run_config_to_dict(rc), data, split.n_items, data.digest())
    folder.write_weights(build_model(model, split.n_items, rc.model_cfg, max_len=rc.data.max_len).state_dict())


CHILD = r"""
import json, resource, sys, threading, time
import echorec.serve.predict as P
run, log, out = sys.argv[1:4]
orig = P._score_all
marks = {}
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
def timed(*a, **k):
    marks["rss_after_load_mib"] = rss()
    peak, done = [rss()], threading.Event()
    def sample():  # the RSS while scoring, every 20 ms (the process peak also covers reading the log)
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss())
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        return orig(*a, **k)
    finally:
        done.set()
        t.join()
        marks["scoring_peak_rss_mib"] = peak[0]
P._score_all = timed
stats = P.predict(run, out, data=log, k=10, device="cpu", overwrite=True, progress=False, log=lambda m: None)
stats.update(marks, peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(stats))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", default="100000,300000,1000000")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--models", default="sasrec,echomamba4rec")
    ap.add_argument("--work", default=None, help="folder for the logs, run folders and tables (default: a temp dir)")
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="echorec_predict_")
    os.makedirs(work, exist_ok=True)
    counts = [int(x) for x in a.users.split(",")]
    rows = []
    for n in counts:
        log = os.path.join(work, f"log{n}.parquet")
        if not os.path.exists(log):
            events = make_log(n, a.items, log)
            print(f"log of {n:,} users, {events:,} events: {log}", flush=True)
        for m in a.models.split(","):
            run = os.path.join(work, f"run_{m}_{n}")
            if not os.path.exists(os.path.join(run, "model.safetensors")):
                make_run(m, log, run)
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", CHILD, run, log, os.path.join(work, f"top_{m}_{n}.parquet")],
                               capture_output=True, text=True, check=True)
            s = json.loads(p.stdout.strip().splitlines()[-1])
            s.update(model=m, n_users=n, process_s=round(time.perf_counter() - t0, 1))
            rows.append(s)
            print(json.dumps(s), flush=True)
    from echorec.sysinfo import environment, git_commit

    lines = [f"`python benchmarks/predict_scale.py --users {a.users} --items {a.items} --models {a.models}`; "
             f"{environment()}; commit {git_commit()}. Users per second of scoring and writing (Parquet, k 10). "
             "Memory: RSS once the log is read (its arrays grow with the log), the highest RSS while scoring "
             "(sampled every 20 ms), their difference (the scorer's own: a chunk's scores, the writer's queue), "
             "and the process's peak, which includes reading and sorting the log.", "",
             "| model | users | users/s | RSS after reading, MiB | peak while scoring, MiB | scorer's own, MiB | "
             "process peak, MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in rows:
        own = s["scoring_peak_rss_mib"] - s["rss_after_load_mib"]
        lines.append(f"| {s['model']} | {s['n_users']:,} | {s['users_per_s']:,.0f} | {s['rss_after_load_mib']:,.0f} | "
                     f"{s['scoring_peak_rss_mib']:,.0f} | {own:,.0f} | {s['peak_rss_mib']:,.0f} |")
    text = "\n".join(lines)
    emit(text, a.out)


if __name__ == "__main__":
    main()
