"""Our BSARec on Beauty vs. BSARec's official Beauty log, epoch by epoch (valid NDCG@20), plus test at the end.

    bash: echorec train --model bsarec --dataset ../shared/data/Beauty/Beauty.txt --out benchmarks/runs/b4_bsarec_beauty \
            --layers 2 --heads 1 --dropout 0.5 --attn-dropout 0.5 --c 5 --alpha 0.7 --lr 0.0005 --batch-size 256 \
            --epochs 28 --patience 10 --exclude-history true --valid-metric ndcg@20 --threads 1
    python benchmarks/beauty_bsarec_curve.py [--run benchmarks/runs/b4_bsarec_beauty]

The official values are read off yehjin-shin/BSARec src/output/BSARec_Beauty_best.log (the same settings: 2 layers,
1 head, dropout 0.5/0.5, c 5, alpha 0.7, lr 5e-4, batch 256, max_len 50, seed 42). That run stopped at epoch 48 with
its best valid at epoch 38; its test at that epoch: HR@10 0.1008, NDCG@10 0.0611.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

# valid NDCG@20 per epoch (1-based) in the official log, epochs 1..28
OFFICIAL = [0.0141, 0.0210, 0.0329, 0.0406, 0.0492, 0.0565, 0.0623, 0.0677, 0.0719, 0.0742, 0.0758, 0.0768,
            0.0779, 0.0788, 0.0794, 0.0804, 0.0807, 0.0805, 0.0809, 0.0816, 0.0805, 0.0811, 0.0824, 0.0819,
            0.0814, 0.0820, 0.0827, 0.0830]
OFFICIAL_TEST = {"hit@10": 0.1008, "ndcg@10": 0.0611}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=os.path.join(os.path.dirname(__file__), "runs", "b4_bsarec_beauty"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "beauty_bsarec_vs_log.md"))
    args = ap.parse_args()
    with open(os.path.join(args.run, "history.csv")) as f:
        ours = [float(r["valid_ndcg@20"]) for r in csv.DictReader(f)]
    lines = ["# Our BSARec on Beauty vs. BSARec's official Beauty log", "", __doc__.strip().split("\n\n", 2)[2], "",
             "| epoch | official valid NDCG@20 | ours | ours / official |", "| ---: | ---: | ---: | ---: |"]
    for i, v in enumerate(ours):
        o = OFFICIAL[i] if i < len(OFFICIAL) else None
        lines.append(f"| {i + 1} | {o:.4f} | {v:.4f} | {v / o:.3f} |" if o else f"| {i + 1} | — | {v:.4f} | — |")
    mpath = os.path.join(args.run, "metrics.json")
    if os.path.exists(mpath):
        m = json.load(open(mpath))
        t = m["test"]
        lines += ["", f"Ours, test at the best-valid epoch ({m['best_epoch']} of {m['epochs_run']}): HR@10 {t['hit@10']:.4f}, "
                  f"NDCG@10 {t['ndcg@10']:.4f} (official, epoch 38 of 48: {OFFICIAL_TEST['hit@10']:.4f}, "
                  f"{OFFICIAL_TEST['ndcg@10']:.4f}); {m['seconds_per_epoch']:.1f} s/epoch here."]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
