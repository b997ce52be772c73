"""`echorec bench accuracy`: every model x dataset x seed under one protocol, then the tables.

A study lives in one folder:

    study.json                  the protocol: every data/train/eval setting not set per cell; a re-run must
                                match it
    runs/<dataset>/<model>/seed<k>/   one ordinary run folder per cell (config, weights, history); <model> is
                                a model spec, e.g. `echomamba4rec+filter=false` for an ablation column
    tuned/<dataset>/<model>.json      settings chosen by `echorec tune` (used when present)
    results.csv                 one row per finished run
    results.md                  per dataset: mean ± std per metric, best in bold, improvement of the
                                best over the runner-up, paired t-tests across seeds
    curves_<dataset>.png        valid NDCG@10 per epoch of every run

Resumable: a cell with metrics.json is skipped, a cell with a checkpoint continues from it, so an
interrupted study picks up where it stopped, and several commands (other models, datasets or
seeds) can add cells to the same study.

With jobs > 1 the cells train as that many `echorec train` processes at once (each with `threads` torch
threads), their configs and logs in jobs/; a failed cell is reported and the others go on.
"""

from __future__ import annotations

import csv
import io
import os
import time

from echorec import sysinfo
from echorec.bench.stats import mean, paired_t, std
from echorec.errors import EchorecError
from echorec.fsio import atomic_write_text, read_json, write_json

METRICS = [f"{m}@{k}" for m in ("hit", "ndcg", "mrr") for k in (5, 10, 20)]
HEADER = {"hit": "HR", "ndcg": "NDCG", "mrr": "MRR"}
# Set per cell (or how a cell runs, not what it computes), so not part of a study's protocol.
PER_CELL = ("data.dataset", "train.seed", "train.threads", "train.progress", "train.device")
# Where a study's protocol differs from `echorec train`: S3-Rec / FMLP-Rec / BSARec evaluation, where
# items in the history are not ranked; no progress bars in a study's log.
STUDY_DEFAULTS = {"eval.exclude_history": True}
# study.json files written before the protocol was the whole config named these keys only.
_LEGACY_KEYS = {"epochs": "train.epochs", "patience": "train.patience", "max_len": "data.max_len",
                "batch_size": "train.batch_size", "lr": "train.lr", "exclude_history": "eval.exclude_history",
                "train_mode": "data.train_mode", "valid_metric": "eval.valid_metric", "lr_decay": "train.lr_decay",
                "lr_patience": "train.lr_patience", "ema": "train.ema", "ema_warmup": "train.ema_warmup"}


def protocol(overrides: dict | None = None) -> dict:
    """A study's protocol: every data/train/eval setting (`section.field` -> value) that is not set per cell,
    from the config dataclasses' defaults, STUDY_DEFAULTS, then `overrides` (typed by the dataclasses, so a
    flag's "1" and a file's 1 are the same protocol). Adding a setting to a config dataclass adds it here with
    no edit in bench/."""
    from echorec.config import RunConfig, flatten, run_config_from_dict, run_config_to_dict, with_overrides

    keys = [k for k in flatten(run_config_to_dict(RunConfig())) if not k.startswith("model_cfg.") and k not in PER_CELL]
    unknown = sorted(set(overrides or {}) - set(keys))
    if unknown:
        raise EchorecError(f"{', '.join(unknown)}: not a study setting; use one of {', '.join(keys)}")
    rc = run_config_from_dict(with_overrides({}, {**STUDY_DEFAULTS, **(overrides or {})}), where="study protocol")
    flat = flatten(run_config_to_dict(rc))
    return {k: flat[k] for k in keys}


def parse_model_spec(spec: str) -> tuple[str, dict]:
    """`echomamba4rec+filter=false+glu=none` -> ("echomamba4rec", {"model_cfg.filter": "false", ...}): a model
    and the settings of its own Config that this column of the study changes (ablations)."""
    name, *parts = spec.split("+")
    over = {}
    for p in parts:
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise EchorecError(f"model {spec!r}: write overrides as model+field=value")
        over[f"model_cfg.{key.replace('-', '_')}"] = value
    return name, over


def dataset_label(ds: str) -> str:
    """`ml-100k` -> ml-100k; `../shared/data/LastFM/LastFM.txt` -> LastFM."""
    if os.path.sep in ds or os.path.exists(ds):
        return os.path.splitext(os.path.basename(ds.rstrip(os.path.sep)))[0]
    return ds


MAX_SEED_COUNT = 20


def parse_seeds(text: str, base: int = 42) -> list[int]:
    """`3` -> three seeds from `base`; `1,7,9` -> exactly those."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
            if not seeds:
                raise EchorecError(f"--seeds {text!r}: the list names no seed")
            return seeds
        n = int(text)
    except ValueError:
        raise EchorecError(f"--seeds {text!r}: give a count (3) or a comma-separated list (1,2,3)") from None
    if n < 1:
        raise EchorecError(f"--seeds {text!r}: at least one seed")
    # A bare number is a count, so `--seeds 42` (meant as the seed 42) would quietly start 42 seeds per cell:
    # a count that large must be spelled as a list.
    if n > MAX_SEED_COUNT:
        raise EchorecError(f"--seeds {text}: that is a count of {n} seeds ({base}..{base + n - 1}); for the seed {n} "
                           f"alone give --seeds {n}, (a list), for one seed --seeds 1, and list more than "
                           f"{MAX_SEED_COUNT} seeds explicitly")
    return list(range(base, base + n))


def saved_protocol(study: str) -> dict | None:
    """The protocol in study.json, with every key an older file lacks at the value it then had (its default)."""
    path = os.path.join(study, "study.json")
    if not os.path.exists(path):
        return None
    saved = read_json(path)["protocol"]
    out = protocol()
    for k, v in saved.items():
        out[_LEGACY_KEYS.get(k, k)] = v
    return out


def _check_protocol(study: str, proto: dict) -> None:
    saved = saved_protocol(study)
    if saved is not None:
        diff = [f"{k} {saved.get(k)!r} -> {proto[k]!r}" for k in proto if saved.get(k) != proto[k]]
        if diff:
            raise EchorecError(f"{os.path.join(study, 'study.json')}: this study was run with another protocol "
                               f"({'; '.join(diff)}); use the same settings or another --out")
        return
    os.makedirs(study, exist_ok=True)
    write_json(os.path.join(study, "study.json"), {"protocol": proto, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                   "commit": sysinfo.git_commit(), "machine": sysinfo.environment()})


def tuned_settings(study: str, label: str, model: str) -> dict:
    path = os.path.join(study, "tuned", label, f"{model}.json")
    return read_json(path)["best"] if os.path.exists(path) else {}


def cell_config(spec: str, dataset: str, seed: int, proto: dict, tuned: dict | None = None, threads: int = 0):
    """The RunConfig of one cell: the protocol, then the model spec's own settings, then `tuned` (`section.field`
    -> value, from `echorec tune`), then the cell's dataset, seed and threads."""
    from echorec.config import run_config_from_dict, with_overrides

    model, spec_over = parse_model_spec(spec)
    cell = {"data.dataset": dataset, "train.seed": seed, "train.threads": threads, "train.progress": False}
    d = with_overrides({"model": model}, {**proto, **spec_over, **(tuned or {}), **cell})
    return run_config_from_dict(d, where="study cell")


def validate(models: list[str], datasets: list[str], proto: dict) -> None:
    """Every user mistake (model, dataset, protocol value) fails here, before the study folder is made."""
    from echorec.data.datasets import resolve

    if not models or not datasets:
        raise EchorecError("a study needs at least one model and one dataset")
    for ds in datasets:
        resolve(ds)
    for m in models:
        cell_config(m, datasets[0], 0, proto).validate()


def run_study(study: str, models: list[str], datasets: list[str], seeds: list[int], overrides: dict | None = None,
              threads: int = 0, log=print, jobs: int = 1) -> list[dict]:
    """Train every missing cell, then rewrite results.csv / results.md / curves from all finished cells.

    `models` are model specs (`sasrec`, `echomamba4rec+filter=false`); `overrides` the protocol's settings that
    differ from protocol()'s defaults (`section.field` -> value)."""
    from echorec.runfolder import CHECKPOINT, RunFolder
    from echorec.runfolder import METRICS as METRICS_FILE
    from echorec.training.loop import run_training

    if jobs < 1:
        raise EchorecError(f"--jobs {jobs}: at least 1")
    proto = protocol(overrides)
    validate(models, datasets, proto)
    from echorec.runfolder import check_out_path

    check_out_path(study)
    _check_protocol(study, proto)
    # Seeds outside models: a study stopped early still has every model for the first seeds.
    cells = [(ds, m, s) for ds in datasets for s in seeds for m in models]
    queue = []
    for i, (ds, model, seed) in enumerate(cells, 1):
        label = dataset_label(ds)
        out = os.path.join(study, "runs", label, model, f"seed{seed}")
        folder = RunFolder(out)
        tag = f"[{i}/{len(cells)}] {label} {model} seed {seed}"
        if folder.has(METRICS_FILE):
            log(f"{tag}: done, skipped")
            continue
        rc = cell_config(model, ds, seed, proto, tuned_settings(study, label, model), threads)
        resume = folder.has(CHECKPOINT)
        if jobs > 1:
            queue.append((tag, rc, out, resume))
            continue
        log(f"{tag}: {'resuming' if resume else 'training'} ...")
        t0 = time.perf_counter()
        overwrite = not resume and bool(folder.existing())
        m = run_training(rc, out, quiet=True, resume=resume, overwrite=overwrite)
        log(f"{tag}: test NDCG@10 {m['test']['ndcg@10']:.4f} HR@10 {m['test']['hit@10']:.4f} "
            f"(best epoch {m['best_epoch']} of {m['epochs_run']}, {time.perf_counter() - t0:.0f} s)")
    failed = _run_parallel(study, queue, jobs, threads, log) if queue else []
    rows = collect(study)
    write_results(study, rows, order=models)
    if failed:
        raise EchorecError(f"{len(failed)} cell(s) failed, the tables hold the others: "
                           + "; ".join(f"{tag} (see {path})" for tag, path in failed))
    return rows


def _run_parallel(study: str, queue: list, jobs: int, threads: int, log) -> list[tuple[str, str]]:
    """Train the queued cells as `jobs` child processes at once (bench/jobs.py); returns the (tag, log file) of
    failed cells. A stopped study stops its cells; each resumes from its checkpoint on the next run."""
    import signal
    import sys

    from echorec.bench.jobs import spawn_train

    running: list[tuple] = []  # (process, tag, run folder, log, start time)
    failed: list[tuple[str, str]] = []
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the children
    try:
        while queue or running:
            while queue and len(running) < jobs:
                tag, rc, out, _ = queue.pop(0)
                name = os.path.relpath(out, os.path.join(study, "runs")).replace(os.sep, "__")
                proc, logpath, what = spawn_train(os.path.join(study, "jobs"), name, rc, out, threads)
                running.append((proc, tag, out, logpath, time.perf_counter()))
                log(f"{tag}: {what} (log {logpath}) ...")
            time.sleep(0.5)
            for item in [r for r in running if r[0].poll() is not None]:
                running.remove(item)
                _report_cell(*item, failed, log)
    finally:
        for proc, *_ in running:
            proc.terminate()
        for proc, *_ in running:
            proc.wait()
        signal.signal(signal.SIGTERM, previous)
    return failed


def _report_cell(proc, tag: str, out: str, logpath: str, t0: float, failed: list, log) -> None:
    from echorec.runfolder import RunFolder

    m = RunFolder(out).read_metrics()
    if proc.returncode != 0 or m is None:
        failed.append((tag, logpath))
        log(f"{tag}: FAILED (exit {proc.returncode}); see {logpath}")
        return
    log(f"{tag}: test NDCG@10 {m['test']['ndcg@10']:.4f} HR@10 {m['test']['hit@10']:.4f} "
        f"(best epoch {m['best_epoch']} of {m['epochs_run']}, {time.perf_counter() - t0:.0f} s)")


def collect(study: str) -> list[dict]:
    """One row per finished run in the study folder (whatever command added it)."""
    from echorec.runfolder import RunFolder

    rows = []
    root = os.path.join(study, "runs")
    if not os.path.isdir(root):
        return rows
    for label in sorted(os.listdir(root)):
        for model in sorted(os.listdir(os.path.join(root, label))):
            mdir = os.path.join(root, label, model)
            for cell in sorted(os.listdir(mdir)):
                m = RunFolder(os.path.join(mdir, cell)).read_metrics() if cell.startswith("seed") else None
                if m is None:
                    continue
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


def protocol_text(p: dict) -> str:
    """The results header's account of protocol `p` (a `section.field` dict): the usual sentence, then every
    other setting that differs from protocol()'s defaults, so the header lists what study.json lists."""
    vm = p["eval.valid_metric"].upper()
    decay, lr_pat = p["train.lr_decay"], p["train.lr_patience"]
    decay_text = (f" (times {decay} after {lr_pat} epoch{'s' if lr_pat != 1 else ''} without valid {vm} gain)"
                  if decay != 1.0 else "")
    ema, warm = p["train.ema"], p["train.ema_warmup"]
    ema_text = (f", weights averaged (EMA, decay min({ema}, (1 + n) / ({warm:g} + n)) at step n) for validation "
                "and test" if ema else "")
    loss = "CE over all items" if p["train.loss"] == "full" else f"sampled CE ({p['train.negatives']} negatives)"
    ranking = "full ranking" if not p["eval.sampled"] else f"ranking among {p['eval.sampled']} sampled negatives"
    said = {"data.train_mode", "data.max_len", "train.batch_size", "train.lr", "train.lr_decay", "train.lr_patience",
            "train.ema", "train.ema_warmup", "train.loss", "train.negatives", "eval.sampled",
            "eval.exclude_history", "train.epochs", "train.patience", "eval.valid_metric"}
    default = protocol()
    rest = [f"{k} {v}" for k, v in p.items() if k not in said and v != default.get(k)]
    return (f"Protocol: leave-one-out, {p['data.train_mode']} training samples, max_len {p['data.max_len']}, batch "
            f"{p['train.batch_size']}, Adam lr {p['train.lr']}{decay_text}{ema_text}, {loss}, {ranking}"
            f"{' excluding the items in the history' if p['eval.exclude_history'] else ''}; at most "
            f"{p['train.epochs']} epochs, early stop after {p['train.patience']} without valid {vm} gain "
            f"(0 = never); test metrics at the best-valid epoch."
            + (f" Other settings: {', '.join(rest)}." if rest else ""))


def rerun_command(study: str, rows: list[dict]) -> str:
    """The `echorec bench accuracy` command that makes (or extends) this study: its models and seeds, its
    datasets (as the cells' configs name them), and every protocol setting that differs from the defaults."""
    proto, default = saved_protocol(study), protocol()
    flags = " ".join(f"--{k.split('.', 1)[1].replace('_', '-')} {_flag_value(v)}" for k, v in proto.items()
                     if default.get(k) != v)
    seeds = sorted({int(r["seed"]) for r in rows})
    # --seeds N is a count from 42; any other set is a list, one seed with a trailing comma.
    seed_text = str(len(seeds)) if seeds == list(range(42, 42 + len(seeds))) else ",".join(map(str, seeds)) + \
        ("," if len(seeds) == 1 else "")
    from echorec.runfolder import RunFolder

    datasets = {}  # label -> the path the cells trained on (every finished cell has its config.json)
    for r in rows:
        if r["dataset"] not in datasets:
            cell = RunFolder(os.path.join(study, "runs", r["dataset"], r["model"], f"seed{r['seed']}"))
            datasets[r["dataset"]] = cell.read_config_dict()["data"]["dataset"]
    return (f"`echorec bench accuracy --models {','.join(dict.fromkeys(r['model'] for r in rows))} --datasets "
            f"{','.join(datasets.values())} --seeds {seed_text} {flags} --out {study}`".replace("  ", " "))


def _flag_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def write_results(study: str, rows: list[dict], order: list[str] | None = None) -> None:
    if not rows:
        return
    buf = io.StringIO()  # the csv module quotes a dataset label with a comma in it; read_csv reads it back
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(os.path.join(study, "results.csv"), buf.getvalue())
    info = read_json(os.path.join(study, "study.json"))
    head = [f"# Accuracy study: {', '.join(dict.fromkeys(r['dataset'] for r in rows))}", "",
            protocol_text(saved_protocol(study)), "", "Command: " + rerun_command(study, rows), "",
            f"Started {info['created']} at commit {info['commit']} on {info['machine']}; tables written "
            f"{time.strftime('%Y-%m-%d %H:%M')} at commit {sysinfo.git_commit()}.", "", ""]
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
    from echorec.runfolder import RunFolder

    written = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        models = list(dict.fromkeys(r["model"] for r in rows if r["dataset"] == ds))
        for i, m in enumerate(models):
            color = plt.get_cmap("tab10")(i % 10)
            for j, r in enumerate(r for r in rows if r["dataset"] == ds and r["model"] == m):
                h = RunFolder(os.path.join(study, "runs", ds, m, f"seed{r['seed']}")).read_history()
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
