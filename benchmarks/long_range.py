"""Does a model use the history as a whole? A planted-structure log, counting baselines and oracles.

The log (seeded): every user follows one of R hidden routes for the whole history. Items walk along a
shared successor map, except at "branch" items (a share of the catalogue), where each route has its own
successor; with probability `jump` a step instead goes to a uniformly random item, and the route continues
from there. So the next item after a branch item depends on the route, and the route is visible only in
the transitions out of earlier branch items, often many steps back (and never after a jump, which breaks
the last pair). The last one or two items say nothing about the route unless the last step left a branch.

Scored under echorec's leave-one-out protocol (full ranking, items in the history not excluded, since
walks revisit items), MRR@10 and HR@10 on the test targets of:
- popularity, last item, last two items: counts over the training part (transitions ending before the
  valid target), the last two backing off to the last item where a pair was never seen;
- posterior oracle: the generator's own probabilities, averaged over the routes by their posterior given
  the whole input history: the best any model that reads the history can do;
- route oracle: the generator's probabilities under the user's true route (it knows the hidden state);
- any echorec models (`--models`), trained by `echorec train` on the log with `--set` settings.

    python benchmarks/long_range.py --out /tmp/longrange --models echomamba4rec,sasrec [--set epochs=30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np


def make(users: int, items: int, routes: int, branch: float, jump: float, min_len: int, max_len: int,
         seed: int) -> dict:
    """The log as arrays (user, item, time per event; items 0..items-1) and its hidden parts."""
    rng = np.random.default_rng(seed)
    shared = rng.permutation(items)  # successor of a non-branch item, the same for every route
    succ = np.tile(shared, (routes, 1))  # (R, items)
    is_branch = rng.random(items) < branch
    for r in range(routes):
        succ[r, is_branch] = rng.integers(0, items, size=int(is_branch.sum()))
    route = rng.integers(0, routes, size=users)
    lens = rng.integers(min_len, max_len + 1, size=users)
    seqs = np.zeros((users, max_len), dtype=np.int64)
    seqs[:, 0] = rng.integers(0, items, size=users)
    for t in range(1, max_len):
        nxt = succ[route, seqs[:, t - 1]]
        jumped = rng.random(users) < jump
        seqs[:, t] = np.where(jumped, rng.integers(0, items, size=users), nxt)
    keep = np.arange(max_len)[None, :] < lens[:, None]
    user = np.repeat(np.arange(users), lens)
    return {"user": user, "item": seqs[keep], "time": np.arange(len(user)) * 60 + 1_600_000_000,
            "succ": succ, "route": route, "jump": jump, "items": items}


def write_csv(log: dict, path: str) -> None:
    """The log as a csv `echorec train` reads; written aside and renamed, so a second study process sharing
    the folder (it writes the same seeded log) never lets a run read a half-written file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for u, i, t in zip(log["user"], log["item"], log["time"]):
            f.write(f"u{u},i{i},{t}\n")
    os.replace(tmp, path)


def rank_metrics(scores: np.ndarray, target: np.ndarray, seed: int = 0) -> dict:
    """Full-ranking MRR@10 and HR@10; ties broken at random (a tie is not a hit for free)."""
    noise = np.random.default_rng(seed).random(scores.shape) * 1e-9
    s = scores + noise
    rank = 1 + (s > s[np.arange(len(s)), target][:, None]).sum(1)
    return {"mrr@10": float(np.where(rank <= 10, 1.0 / rank, 0.0).mean()), "hit@10": float((rank <= 10).mean())}


def baselines(log: dict, min_history: int = 2) -> dict[str, dict]:
    """Every counting baseline and both oracles on the test targets (each user's last event; its history is
    everything before it), counts from the training part (everything before each user's last two events)."""
    M, succ, jump = log["items"], log["succ"], log["jump"]
    starts = np.flatnonzero(np.r_[True, log["user"][1:] != log["user"][:-1]])
    ends = np.r_[starts[1:], len(log["user"])]
    seqs = [log["item"][a:b] for a, b in zip(starts, ends)]
    pop = np.zeros(M)
    first = np.zeros((M, M))
    pairs: dict[tuple[int, int], np.ndarray] = {}
    for s in seqs:
        train = s[:-2]  # leave-one-out: the valid and test targets are not trained on
        np.add.at(pop, train, 1)
        np.add.at(first, (train[:-1], train[1:]), 1)
        for a, b, c in zip(train[:-2], train[1:-1], train[2:]):
            pairs.setdefault((a, b), np.zeros(M))[c] += 1
    users = [u for u, s in enumerate(seqs) if len(s) >= min_history + 1]
    hist = [seqs[u][:-1] for u in users]
    target = np.array([seqs[u][-1] for u in users])
    last = np.array([h[-1] for h in hist])
    scores = {"popularity": np.tile(pop, (len(users), 1)),
              "last item": first[last] + 1e-3 * pop,
              "last two items": np.stack([pairs.get((h[-2], h[-1]), np.zeros(M)) for h in hist])
              + 1e-3 * first[last] + 1e-6 * pop}

    def generator_probs(r: np.ndarray) -> np.ndarray:  # (n, R) route weights -> (n, M) next-item probabilities
        p = np.full((len(users), M), jump / M)
        for k in range(succ.shape[0]):
            np.add.at(p, (np.arange(len(users)), succ[k, last]), (1 - jump) * r[:, k])
        return p

    R = succ.shape[0]
    loglik = np.zeros((len(users), R))
    for k in range(R):
        for n, h in enumerate(hist):
            follows = succ[k, h[:-1]] == h[1:]
            loglik[n, k] = np.log(np.where(follows, 1 - jump + jump / M, jump / M)).sum()
    post = np.exp(loglik - loglik.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    scores["posterior oracle (whole history)"] = generator_probs(post)
    scores["route oracle (knows the route)"] = generator_probs(np.eye(R)[log["route"][users]])
    return {name: rank_metrics(s, target) for name, s in scores.items()}


def train(model: str, csv: str, out: str, sets: list[str]) -> dict:
    run = os.path.join(out, "runs", model.replace("+", "_"))
    if not os.path.exists(os.path.join(run, "metrics.json")):
        flags = [x for kv in sets for k, v in [kv.split("=", 1)] for x in (f"--{k.replace('_', '-')}", v)]
        name, *over = model.split("+")
        flags += [x for kv in over for k, v in [kv.split("=", 1)] for x in (f"--{k.replace('_', '-')}", v)]
        cmd = [sys.executable, "-m", "echorec", "train", "--model", name, "--dataset", csv, "--out", run,
               "--exclude-history", "false", "--overwrite", *flags]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(run, "metrics.json")) as f:
        m = json.load(f)
    return {"mrr@10": m["test"]["mrr@10"], "hit@10": m["test"]["hit@10"], "best_epoch": m["best_epoch"],
            "epochs": m["epochs_run"], "train_s": m["train_seconds"]}


def table(rows: dict[str, dict], head: str) -> str:
    """The rows as a markdown table under `head` (one line of settings)."""
    lines = [head, "", "| scorer | MRR@10 | HR@10 | best / run epochs | training s |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        ep = f"{r['best_epoch']} / {r['epochs']}" if "epochs" in r else ""
        secs = f"{r['train_s']:.0f}" if "train_s" in r else ""
        lines.append(f"| {name} | {r['mrr@10']:.4f} | {r['hit@10']:.4f} | {ep} | {secs} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--routes", type=int, default=16)
    ap.add_argument("--branch", type=float, default=0.5, help="share of items whose successor depends on the route")
    ap.add_argument("--jump", type=float, default=0.1, help="probability that a step jumps to a random item")
    ap.add_argument("--min-len", type=int, default=20)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="", help="comma-separated echorec models (model+field=value for variants)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a training flag for every model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", help="also write the table (with the command, commit and machine) to this markdown file")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log = make(a.users, a.items, a.routes, a.branch, a.jump, a.min_len, a.max_len, a.seed)
    csv = os.path.join(a.out, "log.csv")
    write_csv(log, csv)
    rows = baselines(log)
    for m in [m for m in a.models.split(",") if m]:
        rows[m] = train(m, csv, a.out, a.set)
    head = (f"{len(log['user']):,} events, {a.users:,} users, {a.items} items, {a.routes} routes, branch {a.branch}, "
            f"jump {a.jump}, seed {a.seed}")
    print(head)
    print(f"{'':40s} {'MRR@10':>8s} {'HR@10':>8s}")
    for name, r in rows.items():
        extra = f"  (best epoch {r['best_epoch']}/{r['epochs']}, {r['train_s']:.0f} s)" if "epochs" in r else ""
        print(f"{name:40s} {r['mrr@10']:8.4f} {r['hit@10']:8.4f}{extra}")
    if a.report:
        from echorec import sysinfo
        from echorec.fsio import atomic_write_text
        from echorec.sysinfo import environment as machine

        made = (f"Made by `python benchmarks/long_range.py {' '.join(sys.argv[1:])}` at commit {sysinfo.git_commit()} "
                f"on {machine()}.")
        atomic_write_text(a.report, made + "\n\n" + table(rows, head))


if __name__ == "__main__":
    main()
