"""`echorec bench accuracy`: every model x dataset x seed under one protocol, then the tables.

A study lives in one folder:

    study.json                  the protocol (epochs, patience, max_len, ...); a re-run must match it
    runs/<dataset>/<model>/seed<k>/   one ordinary run folder per cell (config, weights, history)
    tuned/<dataset>/<model>.json      settings chosen by `echorec tune` (used when present)
    results.csv                 one row per finished run
    results.md                  per dataset: mean ± std per metric, best in bold, improvement of the
                                best over the runner-up, paired t-tests across seeds
    curves_<dataset>.png        valid NDCG@10 per epoch of every run

Resumable: a cell with metrics.json is skipped, a cell with a checkpoint continues from it, so an
interrupted study picks up where it stopped, and several commands (other models, datasets or
seeds) can add cells to the same study.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from dataclasses import dataclass

from echorec import sysinfo
from echorec.bench.stats import mean, paired_t, std
from echorec.errors import EchorecError

METRICS = [f"{m}@{k}" for m in ("hit", "ndcg", "mrr") for k in (5, 10, 20)]
HEADER = {"hit": "HR", "ndcg": "NDCG", "mrr": "MRR"}
PROTOCOL_KEYS = ("epochs", "patience", "max_len", "batch_size", "lr", "exclude_history", "train_mode", "valid_metric",
                 "lr_decay", "lr_patience", "ema", "ema_warmup")


@dataclass
class Protocol:
    epochs: int = 200
    patience: int = 10
    max_len: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    exclude_history: bool = True  # S3-Rec / FMLP-Rec / BSARec evaluation: items in the history are not ranked
    train_mode: str = "prefix"
    valid_metric: str = "ndcg@10"  # picks the best epoch and drives early stopping
    lr_decay: float = 1.0  # lr times this after lr_patience epochs without a valid gain; 1 = constant (RecBole's way)
    lr_patience: int = 2
    ema: float = 0.0  # validate and keep a moving average of the weights (per-step decay); 0 = off (RecBole's way)
    ema_warmup: float = 10.0  # the average's decay at step n is min(ema, (1 + n) / (ema_warmup + n))


def dataset_label(ds: str) -> str:
    """`ml-100k` -> ml-100k; `../shared/data/LastFM/LastFM.txt` -> LastFM."""
    if os.path.sep in ds or os.path.exists(ds):
        return os.path.splitext(os.path.basename(ds.rstrip(os.path.sep)))[0]
    return ds


def parse_seeds(text: str, base: int = 42) -> list[int]:
    """`3` -> three seeds from `base`; `1,7,9` -> exactly those."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        n = int(text)
    except ValueError:
        raise EchorecError(f"--seeds {text!r}: give a count (3) or a comma-separated list (1,2,3)") from None
    if n < 1:
        raise EchorecError(f"--seeds {text!r}: at least one seed")
    return list(range(base, base + n))


def _check_protocol(study: str, proto: Protocol) -> None:
    path = os.path.join(study, "study.json")
    asked = {k: getattr(proto, k) for k in PROTOCOL_KEYS}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)["protocol"]
        default = Protocol()  # a key missing from an older study.json had its default value
        saved = {k: saved.get(k, getattr(default, k)) for k in PROTOCOL_KEYS}
        diff = [f"{k} {saved[k]!r} -> {asked[k]!r}" for k in PROTOCOL_KEYS if saved[k] != asked[k]]
        if diff:
            raise EchorecError(f"{path}: this study was run with another protocol ({'; '.join(diff)}); "
                               f"use the same settings or another --out")
        return
    os.makedirs(study, exist_ok=True)
    from echorec.config import save_json

    save_json(path, {"protocol": asked, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": git_commit(),
                     "machine": machine()})


def git_commit() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.abspath(__file__)))
        return r.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def machine() -> str:
    import torch

    threads = os.environ.get("OMP_NUM_THREADS", "default")
    return f"{sysinfo.machine()}, torch {torch.__version__}, OMP_NUM_THREADS={threads}"


def tuned_settings(study: str, label: str, model: str) -> dict:
    path = os.path.join(study, "tuned", label, f"{model}.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)["best"]


def cell_config(model: str, dataset: str, seed: int, proto: Protocol, tuned: dict | None = None, threads: int = 0):
    """The RunConfig of one cell; `tuned` maps `section.field` to a value (from `echorec tune`)."""
    from echorec.config import run_config_from_dict

    d = {"model": model,
         "data": {"dataset": dataset, "max_len": proto.max_len, "train_mode": proto.train_mode},
         "train": {"epochs": proto.epochs, "patience": proto.patience, "seed": seed, "batch_size": proto.batch_size,
                   "lr": proto.lr, "lr_decay": proto.lr_decay, "lr_patience": proto.lr_patience, "ema": proto.ema,
                   "ema_warmup": proto.ema_warmup,
                   "progress": False, "threads": threads},
         "eval": {"exclude_history": proto.exclude_history, "valid_metric": proto.valid_metric},
         "model_cfg": {}}
    for key, value in (tuned or {}).items():
        sec, name = key.split(".", 1)
        d[sec][name] = value
    return run_config_from_dict(d, where="study cell")


def validate(models: list[str], datasets: list[str], proto: Protocol) -> None:
    """Every user mistake (model, dataset, protocol value) fails here, before the study folder is made."""
    from echorec.data.datasets import resolve
    from echorec.registry import get_model_class
    from echorec.train.loop import _check_mode, _metric_key, check_train_settings

    if not models or not datasets:
        raise EchorecError("a study needs at least one model and one dataset")
    for ds in datasets:
        resolve(ds)
    for m in models:
        rc = cell_config(m, datasets[0], 0, proto)
        _metric_key(rc.eval)
        check_train_settings(rc.train)
        _check_mode(rc, get_model_class(m))


def run_study(study: str, models: list[str], datasets: list[str], seeds: list[int], proto: Protocol,
              threads: int = 0, log=print) -> list[dict]:
    """Train every missing cell, then rewrite results.csv / results.md / curves from all finished cells."""
    from echorec.train.loop import RUN_FILES, run_training

    validate(models, datasets, proto)
    _check_protocol(study, proto)
    # Seeds outside models: a study stopped early still has every model for the first seeds.
    cells = [(ds, m, s) for ds in datasets for s in seeds for m in models]
    for i, (ds, model, seed) in enumerate(cells, 1):
        label = dataset_label(ds)
        out = os.path.join(study, "runs", label, model, f"seed{seed}")
        tag = f"[{i}/{len(cells)}] {label} {model} seed {seed}"
        if os.path.exists(os.path.join(out, "metrics.json")):
            log(f"{tag}: done, skipped")
            continue
        rc = cell_config(model, ds, seed, proto, tuned_settings(study, label, model), threads)
        resume = os.path.exists(os.path.join(out, "checkpoint.safetensors"))
        log(f"{tag}: {'resuming' if resume else 'training'} ...")
        t0 = time.perf_counter()
        overwrite = not resume and any(os.path.exists(os.path.join(out, f)) for f in RUN_FILES)
        m = run_training(rc, out, quiet=True, resume=resume, overwrite=overwrite)
        log(f"{tag}: test NDCG@10 {m['test']['ndcg@10']:.4f} HR@10 {m['test']['hit@10']:.4f} "
            f"(best epoch {m['best_epoch']} of {m['epochs_run']}, {time.perf_counter() - t0:.0f} s)")
    rows = collect(study)
    write_results(study, rows, order=models)
    return rows


def collect(study: str) -> list[dict]:
    """One row per finished run in the study folder (whatever command added it)."""
    rows = []
    root = os.path.join(study, "runs")
    if not os.path.isdir(root):
        return rows
    for label in sorted(os.listdir(root)):
        for model in sorted(os.listdir(os.path.join(root, label))):
            mdir = os.path.join(root, label, model)
            for cell in sorted(os.listdir(mdir)):
                mfile = os.path.join(mdir, cell, "metrics.json")
                if not cell.startswith("seed") or not os.path.exists(mfile):
                    continue
                with open(mfile) as f:
                    m = json.load(f)
                row = {"dataset": label, "model": model, "seed": int(cell[4:])}
                row.update({f"test_{k}": m["test"][k] for k in METRICS})
                row["valid_ndcg@10"] = m["valid"]["ndcg@10"]
                row.update({"best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                            "seconds_per_epoch": m["seconds_per_epoch"], "train_seconds": m["train_seconds"]})
                rows.append(row)
    return rows


def read_csv(path: str) -> list[dict]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k not in ("dataset", "model"):
                r[k] = float(v) if "." in v or "e" in v else int(v)
    return rows


def _fmt(xs: list[float]) -> str:
    return f"{mean(xs):.4f} ± {std(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


def aggregate(rows: list[dict], order: list[str] | None = None) -> str:
    """The Markdown tables of a study (see the module docstring)."""
    out = []
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for ds in datasets:
        dr = [r for r in rows if r["dataset"] == ds]
        models = list(dict.fromkeys(r["model"] for r in dr))
        if order:
            models.sort(key=lambda m: order.index(m) if m in order else len(order))
        by = {m: sorted((r for r in dr if r["model"] == m), key=lambda r: r["seed"]) for m in models}
        seeds = sorted({r["seed"] for r in dr})
        out += [f"### {ds}", "",
                f"Test metrics, mean ± std over seeds ({', '.join(str(s) for s in seeds)}); best mean per column "
                f"in bold.", "",
                "| model | runs | " + " | ".join(f"{HEADER[k.split('@')[0]]}@{k.split('@')[1]}" for k in METRICS)
                + " | best/run epochs | s/epoch |",
                "| --- | ---: | " + " | ".join("---:" for _ in METRICS) + " | ---: | ---: |"]
        means = {m: {k: mean([r[f"test_{k}"] for r in by[m]]) for k in METRICS} for m in models}
        best = {k: max(models, key=lambda m: means[m][k]) for k in METRICS}
        for m in models:
            cells = []
            for k in METRICS:
                s = _fmt([r[f"test_{k}"] for r in by[m]])
                cells.append(f"**{s}**" if best[k] == m and len(models) > 1 else s)
            ep = f"{mean([r['best_epoch'] for r in by[m]]):.1f}/{mean([r['epochs_run'] for r in by[m]]):.1f}"
            out.append(f"| {m} | {len(by[m])} | " + " | ".join(cells) +
                       f" | {ep} | {mean([r['seconds_per_epoch'] for r in by[m]]):.1f} |")
        if len(models) > 1:
            imp = []
            for k in METRICS:
                ranked = sorted(models, key=lambda m: means[m][k], reverse=True)
                a, b = means[ranked[0]][k], means[ranked[1]][k]
                imp.append(f"{(a - b) / b * 100:+.1f}%" if b > 0 else "n/a")
            out.append("| best vs runner-up | | " + " | ".join(imp) + " | | |")
            out.append("")
            out += _tests(by, means, models)
        out.append("")
    return "\n".join(out)


def _paired(by: dict, a: str, b: str, metric: str) -> str:
    sa = {r["seed"]: r[f"test_{metric}"] for r in by[a]}
    sb = {r["seed"]: r[f"test_{metric}"] for r in by[b]}
    common = sorted(set(sa) & set(sb))
    t, p, n = paired_t([sa[s] for s in common], [sb[s] for s in common])
    if n < 2:
        return f"{metric}: n/a ({n} common seed{'s' if n != 1 else ''})"
    return f"{metric}: t = {t:+.2f}, p = {p:.3f} (n = {n})"


def _tests(by: dict, means: dict, models: list[str]) -> list[str]:
    """Paired t-tests across seeds: best vs runner-up by NDCG@10, and EchoMamba4Rec vs the best other model."""
    ranked = sorted(models, key=lambda m: means[m]["ndcg@10"], reverse=True)
    pairs = [(ranked[0], ranked[1])]
    if "echomamba4rec" in models:
        others = [m for m in ranked if m != "echomamba4rec"]
        pair = ("echomamba4rec", others[0])
        if set(pair) != set(pairs[0]):
            pairs.append(pair)
    lines = []
    for a, b in pairs:
        lines.append(f"- paired t-test across seeds, {a} vs {b}: {_paired(by, a, b, 'ndcg@10')}; "
                     f"{_paired(by, a, b, 'hit@10')}")
    return lines


def write_results(study: str, rows: list[dict], order: list[str] | None = None) -> None:
    from echorec.train.checkpoint import atomic_write_text

    if not rows:
        return
    buf = io.StringIO()  # the csv module quotes a dataset label with a comma in it; read_csv reads it back
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(os.path.join(study, "results.csv"), buf.getvalue())
    with open(os.path.join(study, "study.json")) as f:
        info = json.load(f)
    p = info["protocol"]
    vm = p.get("valid_metric", "ndcg@10").upper()
    decay = p.get("lr_decay", 1.0)  # absent from study.json files written before decay joined the protocol
    lr_pat = p.get("lr_patience", 2)
    decay_text = (f" (times {decay} after {lr_pat} epoch{'s' if lr_pat != 1 else ''} without valid {vm} gain)"
                  if decay != 1.0 else "")
    ema = p.get("ema", 0.0)  # absent from study.json files written before the weight average joined the protocol
    warm = p.get("ema_warmup", 10.0)  # absent before the warm-up became a setting: it was 10
    ema_text = (f", weights averaged (EMA, decay min({ema}, (1 + n) / ({warm:g} + n)) at step n) for validation and test"
                if ema else "")
    head = [f"# Accuracy study: {', '.join(dict.fromkeys(r['dataset'] for r in rows))}", "",
            f"Protocol: leave-one-out, {p['train_mode']} training samples, max_len {p['max_len']}, batch "
            f"{p['batch_size']}, Adam lr {p['lr']}"
            f"{decay_text}{ema_text}, CE over all items, full ranking"
            f"{' excluding the items in the history' if p['exclude_history'] else ''}; at most {p['epochs']} epochs, "
            f"early stop after {p['patience']} without valid {vm} gain (0 = never); test metrics at the "
            f"best-valid epoch.", "",
            f"Started {info['created']} at commit {info['commit']} on {info['machine']}; tables written "
            f"{time.strftime('%Y-%m-%d %H:%M')} at commit {git_commit()}.", "", ""]
    atomic_write_text(os.path.join(study, "results.md"), "\n".join(head) + aggregate(rows, order) + "\n")
    plot_curves(study, rows)


def plot_curves(study: str, rows: list[dict]) -> list[str]:
    """curves_<dataset>.png: valid NDCG@10 per epoch, one colour per model, one line per seed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return []
    written = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        models = list(dict.fromkeys(r["model"] for r in rows if r["dataset"] == ds))
        for i, m in enumerate(models):
            color = plt.get_cmap("tab10")(i % 10)
            for j, r in enumerate(r for r in rows if r["dataset"] == ds and r["model"] == m):
                hist = os.path.join(study, "runs", ds, m, f"seed{r['seed']}", "history.csv")
                with open(hist) as f:
                    h = list(csv.DictReader(f))
                ax.plot([int(x["epoch"]) for x in h], [float(x["valid_ndcg@10"]) for x in h], color=color,
                        marker="o", ms=3, lw=1.2, label=m if j == 0 else None)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("valid NDCG@10")
        ax.set_title(f"{ds}: learning curves")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = os.path.join(study, f"curves_{ds}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
