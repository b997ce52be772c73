"""A seeded synthetic interaction log with a realistic shape, for the scale benchmarks.

    python benchmarks/synthetic_log.py --events 10000000 --out /tmp/log10m.csv [--seed 0]

Shape: user history lengths are heavy-tailed (lognormal, median 12, a few users with thousands of events);
item popularity is a power law (Zipf, exponent 1.1, over events / 50 items); within a history, 70% of the
steps walk from the previous item by a small offset (a Markov-ish neighbourhood), 30% jump to a popular
item. Ids are strings (`u3f2a...`, `i1234`), timestamps epoch seconds increasing along each history.
Columns: user_id,item_id,timestamp (CSV, written by pyarrow).
"""

from __future__ import annotations

import argparse

import numpy as np


def make(events: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lens = np.maximum(1, rng.lognormal(np.log(12), 1.0, size=events // 8).astype(np.int64))
    lens = lens[np.cumsum(lens) <= events]
    lens[-1] += events - lens.sum()  # exactly `events` rows
    n_users, n_items = len(lens), max(events // 50, 100)
    user = np.repeat(np.arange(n_users), lens)
    popular = np.minimum(rng.zipf(1.1, size=events), n_items) - 1  # power-law popularity
    step = rng.integers(-3, 4, size=events)
    start = np.cumsum(lens) - lens
    step[start] = popular[start]  # each history starts at a popular item
    walk = np.cumsum(step)
    walk -= np.repeat(walk[start] - popular[start], lens)  # the walk restarts per user
    item = np.where(rng.random(events) < 0.7, walk % n_items, popular)
    t0 = rng.integers(1_500_000_000, 1_700_000_000, size=n_users)
    gaps = rng.integers(1, 3600, size=events)
    t = np.cumsum(gaps)
    t = t - np.repeat(t[start] - t0, lens)
    users = np.char.add("u", np.char.mod("%x", user * 2654435761 % (1 << 32)))
    items = np.char.add("i", item.astype(str))
    return {"user_id": users, "item_id": items, "timestamp": t}


def write_csv(cols: dict[str, np.ndarray], path: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    pcsv.write_csv(pa.table({k: pa.array(v) for k, v in cols.items()}), path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    write_csv(make(args.events, args.seed), args.out)
