"""Our BSARec on Beauty vs. BSARec's official Beauty log, epoch by epoch (valid NDCG@20), plus test at the end.

    bash: echorec train --model bsarec --dataset ../shared/data/Beauty/Beauty.txt --out benchmarks/runs/b4_bsarec_beauty \
            --layers 2 --heads 1 --dropout 0.5 --attn-dropout 0.5 --c 5 --alpha 0.7 --lr 0.0005 --batch-size 256 \
            --epochs 200 --patience 10 --exclude-history true --valid-metric ndcg@20 --threads 1
    python benchmarks/beauty_bsarec_curve.py [--run benchmarks/runs/b4_bsarec_beauty --run ...]

The official values are read off yehjin-shin/BSARec src/output/BSARec_Beauty_best.log (the same settings: 2 layers,
1 head, dropout 0.5/0.5, c 5, alpha 0.7, lr 5e-4, batch 256, max_len 50, seed 42, patience 10). That run stopped
after 65 epochs (numbered 0-64 in the log, 1-65 here) with its best valid NDCG@20, 0.0852 (NDCG@10 0.0753), at epoch
55; its test at that epoch: HR@10 0.1008, NDCG@10 0.0611.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

# valid NDCG@20 per epoch (1-based) in the official log, epochs 1..65
OFFICIAL = [0.0141, 0.0210, 0.0329, 0.0406, 0.0492, 0.0565, 0.0623, 0.0677, 0.0719, 0.0742, 0.0758, 0.0768,
            0.0779, 0.0788, 0.0794, 0.0804, 0.0807, 0.0805, 0.0809, 0.0816, 0.0805, 0.0811, 0.0824, 0.0819,
            0.0814, 0.0820, 0.0827, 0.0830, 0.0823, 0.0819, 0.0829, 0.0830, 0.0826, 0.0833, 0.0834, 0.0822,
            0.0827, 0.0827, 0.0837, 0.0836, 0.0828, 0.0830, 0.0823, 0.0825, 0.0834, 0.0828, 0.0825, 0.0831,
            0.0843, 0.0829, 0.0835, 0.0834, 0.0842, 0.0837, 0.0852, 0.0835, 0.0836, 0.0849, 0.0842, 0.0832,
            0.0836, 0.0835, 0.0843, 0.0840, 0.0833]
OFFICIAL_TEST = {"hit@10": 0.1008, "ndcg@10": 0.0611}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", help="run folder (repeat for more seeds); default: b4_bsarec_beauty")
    ap.add_argument("--note", default="", help="a line of text put under the table (e.g. how the runs were made)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "beauty_bsarec_vs_log.md"))
    args = ap.parse_args()
    runs = args.run or [os.path.join(os.path.dirname(__file__), "runs", "b4_bsarec_beauty")]
    curves = []
    for run in runs:
        with open(os.path.join(run, "history.csv")) as f:
            curves.append([float(r["valid_ndcg@20"]) for r in csv.DictReader(f)])
    names = [os.path.basename(os.path.normpath(r)) for r in runs]
    lines = ["# Our BSARec on Beauty vs. BSARec's official Beauty log", "", __doc__.strip().split("\n\n", 2)[2], "",
             "Valid NDCG@20 per epoch (the ratio is the first run's over the official value).", "",
             "| epoch | official | " + " | ".join(names) + " | ratio |",
             "| ---: | ---: |" + " ---: |" * len(names) + " ---: |"]
    for i in range(max(len(OFFICIAL), *map(len, curves))):
        o = OFFICIAL[i] if i < len(OFFICIAL) else None
        vals = [f"{c[i]:.4f}" if i < len(c) else "" for c in curves]
        ratio = f"{curves[0][i] / o:.3f}" if o and i < len(curves[0]) else ""
        lines.append(f"| {i + 1} | {o:.4f} | " if o else f"| {i + 1} | — | ")
        lines[-1] += " | ".join(vals) + f" | {ratio} |"
    lines += ["", "| run | best valid NDCG@20 (epoch of run) | test HR@10 | test NDCG@10 | s/epoch |",
              "| --- | ---: | ---: | ---: | ---: |",
              f"| official log | {max(OFFICIAL):.4f} (55 of 65) | {OFFICIAL_TEST['hit@10']:.4f} | "
              f"{OFFICIAL_TEST['ndcg@10']:.4f} | — |"]
    for name, run, c in zip(names, runs, curves):
        mpath = os.path.join(run, "metrics.json")
        m = json.load(open(mpath)) if os.path.exists(mpath) else None
        if m and m["epochs_run"] == len(c):  # else the metrics are of an earlier, shorter leg of a resumed run
            t = m["test"]
            lines.append(f"| {name} | {max(c):.4f} ({m['best_epoch']} of {m['epochs_run']}) | {t['hit@10']:.4f} | "
                         f"{t['ndcg@10']:.4f} | {m['seconds_per_epoch']:.1f} |")
        else:
            lines.append(f"| {name} | {max(c):.4f} (stopped by hand or running: {len(c)} epochs) | — | — | — |")
    if args.note:
        lines += ["", args.note]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
