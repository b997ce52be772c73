"""Retraining on a grown log: a warm start (`--init-from`) against training from scratch, on ml-100k split by time.

The log grows by its last 10% of events (with the items that first appear in them). A parent run trains on the
first 90% (leave-one-out, early stopping); then, on the whole log with a global time split (valid targets from
the 95% event quantile, test targets from the 97.5% one), one run trains from scratch and one starts from the
parent. The figure: how many epochs (and seconds) each needs to reach the scratch run's best valid NDCG@10, and
the test NDCG@10 each ends with.

    python benchmarks/warm_start.py --model sasrec --seeds 42,43 --threads 1 --out benchmarks/results/warm_start.md

`--train-mode all --batch-size 64` (every position a target, one pass per window) makes each run about ten times
cheaper than one sample per prefix; the comparison is between two runs under the same settings either way.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile

import numpy as np
from _output import emit

HERE = os.path.dirname(os.path.abspath(__file__))
LEVELS = (0.95, 0.98, 1.0)  # fractions of the scratch run's best valid NDCG@10


def split_logs(src: str, work: str) -> tuple[str, str, float, float, int]:
    """(old log, grown log, valid-from, test-from, new items) as CSV files of user,item,timestamp."""
    from echorec.data.datasets import resolve
    from echorec.data.preprocess import load_sequences

    d = load_sequences(resolve(src), "auto", ("user_id", "item_id", "timestamp", "rating"))
    users = np.repeat(d.user_raw, np.diff(d.offsets))
    t = d.times
    cut, valid_from, test_from = (float(np.quantile(t, q)) for q in (0.9, 0.95, 0.975))
    old, grown = os.path.join(work, "old.csv"), os.path.join(work, "grown.csv")
    for path, keep in ((old, t < cut), (grown, np.ones(len(t), dtype=bool))):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["user_id", "item_id", "timestamp"])
            w.writerows(zip(users[keep], d.item_raw[d.items[keep] - 1], t[keep].astype(np.int64)))
    new_items = len(set(d.item_raw[d.items - 1]) - set(d.item_raw[d.items[t < cut] - 1]))
    return old, grown, valid_from, test_from, new_items


def train(args: list[str], reuse: bool) -> dict:
    """Train (or, with `reuse`, read a finished run already in the work folder) and return its history and
    metrics."""
    from echorec.cli import main
    from echorec.runfolder import RunFolder

    out = args[args.index("--out") + 1]
    f = RunFolder(out)
    if not (reuse and f.read_metrics() is not None):
        if main(["train", *args, "--progress", "false", "--overwrite"]) != 0:
            raise SystemExit(f"training failed: {' '.join(args)}")
    return {"history": f.read_history(), "metrics": f.read_metrics(), "dir": out}


def valid_ranks(run: str) -> list[int]:
    """The rank of every valid target under the run's saved (best-valid) weights."""
    from echorec.data.split import load_split
    from echorec.eval.evaluate import evaluate
    from echorec.runfolder import RunFolder

    folder = RunFolder(run)
    rc, model, _ = folder.load_model()
    _, split = load_split(rc.data, items_first=folder.item_order())
    _, ranks = evaluate(model, split, "valid", rc.eval, rc.data.max_len, "cpu", return_ranks=True)
    return [int(r) for r in ranks.tolist()]


def paired_valid(a: str, b: str) -> tuple[float, float, float, int]:
    """records.paired over the valid targets of two runs of one log (the same users, in the same order)."""
    from echorec.bench.records import paired

    users = [open(os.path.join(run, "users.tsv"), encoding="utf-8").read() for run in (a, b)]
    if users[0] != users[1]:
        raise SystemExit(f"{a} and {b} number their users differently: their targets cannot be paired")
    return paired([valid_ranks(a)], [valid_ranks(b)])


def reach(history: list[dict], level: float) -> tuple[int | None, float | None]:
    """The first epoch (and the seconds of training + validation until its end) whose valid NDCG@10 >= level."""
    t = 0.0
    for h in history:
        t += float(h["seconds"]) + float(h.get("eval_seconds", 0))
        if float(h["valid_ndcg@10"]) >= level:
            return int(h["epoch"]), t
    return None, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-mode", default="prefix")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--warm-lr", type=float, default=None, help="the warm start's learning rate (default: the "
                    "scratch run's)")
    ap.add_argument("--note", default="", help="a sentence for the header (e.g. what else ran on the machine)")
    ap.add_argument("--reuse", action="store_true", help="read runs already finished in --work instead of training")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="echorec_warm_")
    os.makedirs(work, exist_ok=True)
    old, grown, vf, tf, new_items = split_logs(a.dataset, work)
    common = ["--model", a.model, "--threads", str(a.threads), "--epochs", "200", "--patience", "10",
              "--train-mode", a.train_mode, "--batch-size", str(a.batch_size)]
    timed = ["--split", "time", "--valid-from", str(int(vf)), "--test-from", str(int(tf))]
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        parent = os.path.join(work, f"parent{seed}")
        train([*common, "--dataset", old, "--out", parent, "--seed", str(seed)], a.reuse)
        scratch = train([*common, *timed, "--dataset", grown, "--out", os.path.join(work, f"scratch{seed}"),
                         "--seed", str(seed)], a.reuse)
        lr = [] if a.warm_lr is None else ["--lr", str(a.warm_lr)]
        warm = train([*common, *timed, *lr, "--dataset", grown, "--init-from", parent, "--seed", str(seed),
                      "--out", os.path.join(work, f"warm{seed}" + (f"_lr{a.warm_lr:g}" if lr else ""))], a.reuse)
        target = scratch["metrics"]["valid"]["ndcg@10"]
        scratch["paired"] = paired_valid(scratch["dir"], warm["dir"])
        rows.append((seed, target, scratch, warm))
        print(f"seed {seed}: scratch's best {target:.4f}; warm start's {warm['metrics']['valid']['ndcg@10']:.4f}",
              flush=True)
    text = report(a, rows, new_items)
    emit(text, a.out)


def report(a, rows: list, new_items: int) -> str:
    """The markdown table: per seed, when each run reaches each level, and where both end."""
    from echorec.sysinfo import environment, git_commit

    lines = [f"`python benchmarks/warm_start.py --dataset {a.dataset} --model {a.model} --seeds {a.seeds} --threads "
             f"{a.threads} --train-mode {a.train_mode} --batch-size {a.batch_size}"
             + (f" --warm-lr {a.warm_lr:g}" if a.warm_lr is not None else "") + f"`; {environment()}; commit {git_commit()}."
             + (f" {a.note}" if a.note else ""), "",
             f"The parent trains on the first 90% of {a.dataset}'s events; the grown log adds the last 10% "
             f"({new_items} items appear only there). On the grown log, split by time (valid targets from the 95% "
             "event quantile, test from the 97.5% one), a run from scratch and a warm start from the parent"
             + (f" (learning rate {a.warm_lr:g})" if a.warm_lr is not None else "")
             + "; both stop after 10 epochs without a valid gain.", "",
             "The best of a noisy curve is a high bar: the scratch run's best is its luckiest epoch. So the table "
             "gives the first epoch (and the seconds of training + validation until then) at which each run reaches "
             f"{', '.join(f'{q:.0%}' for q in LEVELS)} of the scratch run's best valid NDCG@10.", "",
             "| seed | scratch's best valid NDCG@10 | "
             + " | ".join(f"{q:.0%}: scratch / warm start, epoch (s)" for q in LEVELS)
             + " | best valid, scratch / warm (paired SE, targets) | best / run epochs, scratch / warm | "
             "test NDCG@10, scratch / warm |",
             "| ---: | ---: |" + " ---: |" * (len(LEVELS) + 3)]

    def when(history, level):
        e, t = reach(history, level)
        return "never" if e is None else f"{e} ({t:.0f} s)"

    for seed, target, s, w in rows:
        sm, wm = s["metrics"], w["metrics"]
        lines.append(f"| {seed} | {target:.4f} | "
                     + " | ".join(f"{when(s['history'], q * target)} / {when(w['history'], q * target)}"
                                  for q in LEVELS)
                     + f" | {target:.4f} / {wm['valid']['ndcg@10']:.4f} ({s['paired'][2]:.4f}, {s['paired'][3]:,}) | "
                     f"{sm['best_epoch']} / {sm['epochs_run']}, {wm['best_epoch']} / {wm['epochs_run']} | "
                     f"{sm['test']['ndcg@10']:.4f} / {wm['test']['ndcg@10']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
