"""Load test of `echorec serve` on loopback: a bounded async client at several concurrency levels.

Starts the server as a subprocess on 127.0.0.1 (a free port), sends --requests POST /recommend
requests per level, each with a history of 1..50 item ids drawn from the run's own items, and prints
requests/s and p50/p99 latency per level, and the error count (expected: 0). Then the event loop's
freedom: /health is polled every 10 ms, first idle, then while --heavy clients each send big
/recommend/batch requests (1,024 histories of 50 items, about 0.4 MB of JSON) back to back from another
process; it prints
/health's p50/p99/max latency for both. Only loopback traffic.

    python benchmarks/serve_load.py --run runs/demo [--requests 1000] [--levels 1,8,32] [--heavy 4]

Without --run it first trains a small SASRec run on ml-100k (all mode, 3 epochs) to serve.
Writes benchmarks/results/serve_load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import socket
import statistics
import subprocess
import sys
import time

from echorec import sysinfo

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def level(url: str, items: list[str], n: int, concurrency: int, seed: int) -> dict:
    import httpx

    rng = random.Random(seed)
    bodies = [{"history": rng.sample(items, rng.randint(1, 50)), "k": 10} for _ in range(n)]
    lat, errors = [], 0
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as c:
        async def one(body):
            nonlocal errors
            async with sem:
                t = time.perf_counter()
                try:
                    r = await c.post("/recommend", json=body)
                    ok = r.status_code == 200 and len(r.json()["items"]) == 10
                except httpx.HTTPError:
                    ok = False
                lat.append(time.perf_counter() - t)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"concurrency": concurrency, "requests": n, "req_per_s": n / wall, "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], "errors": errors}


def _flood(url: str, body: bytes, heavy: int, stop, done) -> None:
    """In a process of its own: `heavy` clients send `body` to /recommend/batch back to back until `stop`; puts
    (requests, errors) on `done`. Apart from the poller, so its JSON and socket work is not measured as the
    server's."""
    import httpx

    async def run():
        counts = [0, 0]
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            async def one():
                while not stop.is_set():
                    r = await c.post("/recommend/batch", content=body, headers={"content-type": "application/json"})
                    counts[0] += 1
                    counts[1] += r.status_code != 200
            await asyncio.gather(*(one() for _ in range(heavy)))
        return counts

    done.put(asyncio.run(run()))


def health_under_load(url: str, items: list[str], heavy: int, seconds: float, seed: int) -> dict:
    """/health latency (ms) polled every 10 ms while `heavy` clients (another process) send big batch requests
    back to back."""
    import json
    import multiprocessing as mp

    import httpx

    rng = random.Random(seed)
    body = json.dumps({"histories": [rng.choices(items, k=50) for _ in range(1024)], "k": 10}).encode()
    ctx = mp.get_context("spawn")
    stop, done = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_flood, args=(url, body, heavy, stop, done)) if heavy else None
    if proc:
        proc.start()
        time.sleep(2.0)  # the flood under way
    lat = []
    with httpx.Client(base_url=url, timeout=30) as h:
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            r = h.get("/health")
            lat.append(1000 * (time.perf_counter() - t))
            assert r.status_code == 200
            time.sleep(0.01)
    requests, errors = 0, 0
    if proc:
        stop.set()
        requests, errors = done.get(timeout=300)
        proc.join()
    lat.sort()
    return {"heavy": heavy, "polls": len(lat), "p50_ms": statistics.median(lat),
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "max_ms": lat[-1], "requests": requests,
            "errors": errors, "bytes": len(body)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--heavy", type=int, default=4, help="clients sending big batch requests in the /health test")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each /health phase")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    run = args.run
    if run is None:
        run = os.path.join(HERE, "runs", "serve_sasrec")
        if not os.path.exists(os.path.join(run, "metrics.json")):
            subprocess.run([sys.executable, "-m", "echorec", "train", "--model", "sasrec", "--dataset", "ml-100k",
                            "--out", run, "--epochs", "3", "--train-mode", "all", "--batch-size", "32",
                            "--progress", "false"], check=True)
    with open(os.path.join(run, "items.tsv")) as f:
        items = [r["raw_id"] for r in csv.DictReader(f, delimiter="\t")]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "echorec", "serve", "--run", run, "--port", str(port)],
                              stderr=subprocess.DEVNULL)
    try:
        import httpx

        for _ in range(300):  # wait up to 30 s for the server
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start")
        model = httpx.get(url + "/model").json()
        rows = [asyncio.run(level(url, items, args.requests, int(c), seed=i))
                for i, c in enumerate(args.levels.split(","))]
        passes = httpx.get(url + "/health").json()["forward_passes"]
        health = [health_under_load(url, items, h, args.seconds, seed=99) for h in (0, args.heavy)]
    finally:
        server.terminate()
        server.wait(timeout=10)
    commit = sysinfo.git_commit()
    lines = [f"`echorec serve` load test: {model['model']} on {model['dataset']} ({model['n_items']} items), "
             f"loopback, {args.requests} requests per level, histories of 1-50 items, k=10; "
             f"{sysinfo.machine()}; commit {commit}.", "",
             "| concurrency | req/s | p50 ms | p99 ms | errors |", "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['concurrency']} | {r['req_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
              for r in rows]
    lines += ["", f"{passes} forward passes served {args.requests * len(rows)} requests (micro-batching)."]
    lines += ["", f"/health polled every 10 ms for {args.seconds:g} s, idle and while big /recommend/batch requests "
              f"(1,024 histories x 50 items, k=10, {health[1]['bytes']:,} bytes each) arrive back to back:", "",
              "| big-request clients | polls | p50 ms | p99 ms | max ms | big requests done | errors |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {h['heavy']} | {h['polls']} | {h['p50_ms']:.1f} | {h['p99_ms']:.1f} | {h['max_ms']:.1f} | "
              f"{h['requests']} | {h['errors']} |" for h in health]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "serve_load.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
