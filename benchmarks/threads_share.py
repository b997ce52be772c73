"""Two single-threaded trainings sharing the cores: does each keep its speed?

Runs EchoMamba4Rec training steps (batch 256, max_len 50, Beauty-sized catalog, random data) in a
child process with torch.set_num_threads(1), the way `echorec train --threads 1` does: first alone,
then two children at once. Prints steps/s per child and the slowdown of the pair. With one thread
each, two jobs on 2 cores should run at about their solo speed; a thread pool that grows behind
--threads (see echorec.nn._kernels.numba_threads) makes them spin against each other.

    python benchmarks/threads_share.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time


def child(seconds: float, q) -> None:
    import torch

    torch.set_num_threads(1)
    from echorec.data.split import Batch
    from echorec.models import build_model

    torch.manual_seed(0)
    model = build_model("echomamba4rec", 12101, {"layers": 2})
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batch = Batch(seq=torch.randint(1, 12102, (256, 50)), target=torch.randint(1, 12102, (256,)))

    def step():  # the model's own training loss, as the trainer takes it
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # compiles the kernels, starts the pools
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    q.put((n / (time.perf_counter() - t0), torch.get_num_threads()))


def run(k: int, seconds: float) -> list:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=child, args=(seconds, q)) for _ in range(k)]
    for p in ps:
        p.start()
    out = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    solo = run(1, a.seconds)
    pair = run(2, a.seconds)
    s = solo[0][0]
    p = statistics.median(r[0] for r in pair)
    print(f"alone: {s:.3f} steps/s (torch threads at the end: {solo[0][1]})")
    print(f"two at once: {', '.join(f'{r[0]:.3f}' for r in pair)} steps/s (torch threads: {[r[1] for r in pair]})")
    print(f"slowdown of a job beside its twin: {s / p:.2f}x")
