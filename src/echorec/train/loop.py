"""The training loop: Adam, optional bf16 autocast, grad clipping, early stopping on a valid metric.

`run_training(rc, out)` does the whole job of `echorec train`: read and split the data (before the
run folder is touched, so a bad input writes nothing), train, keep the best epoch's weights, and
write config.json, model.safetensors, metrics.json, history.csv and the id maps.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from echorec.config import RunConfig, run_config_to_dict, save_json
from echorec.data.datasets import resolve
from echorec.data.preprocess import SeqData, load_sequences
from echorec.data.split import BatchIterator, Split, leave_one_out
from echorec.errors import EchorecError
from echorec.eval.evaluate import evaluate
from echorec.registry import build_model
from echorec.train.checkpoint import atomic_write_text, save_weights


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EchorecError("--device cuda given but no CUDA GPU is available (use --device cpu)")
    return dev


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), so autocast pays off."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp != "auto":
        raise EchorecError(f"--amp {amp!r}: use auto, off or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def load_data(rc: RunConfig) -> tuple[SeqData, Split]:
    d = rc.data
    path = resolve(d.dataset)
    data = load_sequences(path, d.format, (d.user_col, d.item_col, d.time_col, d.rating_col), d.min_rating, d.kcore)
    return data, leave_one_out(data)


@dataclass
class TrainResult:
    model: torch.nn.Module
    valid: dict
    test: dict
    best_epoch: int
    history: list
    train_seconds: float


def _check_mode(rc: RunConfig, model) -> None:
    if rc.data.train_mode == "all" and not model.causal:
        raise EchorecError(
            f"--train-mode all needs a causal model; {rc.model} sees the whole sequence, so use --train-mode prefix"
        )
    if rc.data.train_mode not in ("prefix", "all"):
        raise EchorecError(f"--train-mode {rc.data.train_mode!r}: use prefix or all")


def train_model(rc: RunConfig, split: Split, out: str | None = None, quiet: bool = False,
                callback=None) -> TrainResult:
    """Train `rc.model` on `split`; `callback(epoch, model, row)` runs after each epoch's validation."""
    t, d, e = rc.train, rc.data, rc.eval
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    amp = resolve_amp(t.amp, device)
    torch.manual_seed(t.seed)
    model = build_model(rc.model, split.n_items, rc.model_cfg, max_len=d.max_len).to(device)
    _check_mode(rc, model)
    if e.valid_metric.split("@")[0] not in ("hit", "ndcg", "mrr") or int(e.valid_metric.split("@")[1]) not in e.ks:
        raise EchorecError(f"--valid-metric {e.valid_metric!r} must be hit|ndcg|mrr@K with K in --ks {e.ks}")
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    start, end = split.train_samples(d.train_mode, d.max_len)
    if len(start) == 0:
        raise EchorecError(f"{split.data.source}: no training samples (every user has fewer than 4 items)")
    batches = BatchIterator(split, start, end, d.max_len, t.batch_size, mode=d.train_mode, bucket=t.bucket,
                            seed=t.seed)
    say = (lambda m: None) if quiet else log
    say(f"[echorec] {rc.model}: {sum(p.numel() for p in model.parameters()):,} parameters | "
        f"{split.data.n_users:,} users, {split.n_items:,} items | {batches.n_samples:,} {d.train_mode} samples/epoch | "
        f"device {device}, amp {amp or 'off'}")

    def run_eval(which: str) -> dict:
        return evaluate(model, split, which, d.max_len, e.eval_batch_size, e.ks, e.exclude_history, e.sampled, device)

    metric_key = (f"sampled{e.sampled}_" if e.sampled else "") + e.valid_metric
    best, best_epoch, best_state, bad = -math.inf, 0, None, 0
    history = []
    t0 = time.perf_counter()
    for epoch in range(1, t.epochs + 1):
        model.train()
        te = time.perf_counter()
        total, n_seen = 0.0, 0
        try:
            from tqdm import tqdm

            bar = tqdm(total=batches.n_samples, desc=f"epoch {epoch}", unit="smp", leave=False,
                       disable=(None if t.progress and not quiet else True), file=sys.stderr)
        except ImportError:  # pragma: no cover
            bar = None
        for step, batch in enumerate(batches.epoch_batches(epoch)):
            batch = batch.to(device)
            with torch.autocast(device_type=device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                loss = model.loss(batch)
            if not torch.isfinite(loss):
                raise EchorecError(
                    f"loss is {loss.item()} at epoch {epoch} step {step}; training stopped, the best weights so far "
                    f"are kept{' in ' + out if out else ''} (try a lower --lr or --amp off)"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
            opt.step()
            n = len(batch)
            total += loss.item() * n
            n_seen += n
            if bar is not None:
                bar.update(n)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}", smp_s=f"{n_seen / (time.perf_counter() - te):,.0f}")
        if bar is not None:
            bar.close()
        epoch_s = time.perf_counter() - te
        valid = run_eval("valid")
        score = valid[metric_key]
        improved = score > best
        row = {"epoch": epoch, "loss": total / max(n_seen, 1), "seconds": epoch_s, "samples_per_s": n_seen / epoch_s,
               **{f"valid_{k}": v for k, v in valid.items()}}
        history.append(row)
        if out:
            _write_history(out, history)
        if callback is not None:
            callback(epoch, model, row)
        say(f"epoch {epoch:3d} | loss {row['loss']:.4f} | {epoch_s:6.1f} s ({row['samples_per_s']:,.0f} samples/s) | "
            f"valid {metric_key} {score:.4f} hit@10 {valid.get(('sampled%d_' % e.sampled if e.sampled else '') + 'hit@10', float('nan')):.4f}"
            f"{'  *' if improved else ''}")
        if improved:
            best, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            if out:
                save_weights(os.path.join(out, "model.safetensors"), best_state)
        else:
            bad += 1
            if t.patience and bad >= t.patience:
                say(f"[echorec] early stop: no valid {metric_key} improvement in {t.patience} epochs")
                break
    train_seconds = time.perf_counter() - t0
    if best_state is not None:
        model.load_state_dict(best_state)
    valid, test = run_eval("valid"), run_eval("test")
    return TrainResult(model, valid, test, best_epoch, history, train_seconds)


def _write_history(out: str, history: list) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    atomic_write_text(os.path.join(out, "history.csv"), buf.getvalue())


def write_id_maps(out: str, data: SeqData) -> None:
    # The count column (interactions per item in the data) backs the popularity fallback when serving.
    counts = np.bincount(data.items, minlength=data.n_items + 1)
    atomic_write_text(os.path.join(out, "items.tsv"), "internal_id\traw_id\tcount\n" + "".join(
        f"{i + 1}\t{r}\t{counts[i + 1]}\n" for i, r in enumerate(data.item_raw)))
    atomic_write_text(os.path.join(out, "users.tsv"),
                      "index\traw_id\n" + "".join(f"{i}\t{r}\n" for i, r in enumerate(data.user_raw)))


def run_training(rc: RunConfig, out: str, quiet: bool = False) -> dict:
    # Everything that can fail on user input happens before the run folder is touched.
    data, split = load_data(rc)
    model_probe = build_model(rc.model, split.n_items, rc.model_cfg, max_len=rc.data.max_len)
    _check_mode(rc, model_probe)
    del model_probe
    if os.path.exists(out) and not os.path.isdir(out):
        raise EchorecError(f"--out {out}: exists and is not a folder")
    os.makedirs(out, exist_ok=True)
    cfg = run_config_to_dict(rc)
    cfg["meta"] = {"n_items": split.n_items, "n_users": data.n_users, "source": os.path.abspath(data.source),
                   "echorec": __import__("echorec").__version__, "torch": torch.__version__,
                   "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus"}
    save_json(os.path.join(out, "config.json"), cfg)
    write_id_maps(out, data)
    res = train_model(rc, split, out, quiet)
    save_weights(os.path.join(out, "model.safetensors"), res.model.state_dict())
    eval_label = f"sampled ({rc.eval.sampled} negatives)" if rc.eval.sampled else "full ranking"
    metrics = {"valid": res.valid, "test": res.test, "best_epoch": res.best_epoch,
               "epochs_run": len(res.history), "train_seconds": round(res.train_seconds, 3),
               "seconds_per_epoch": round(sum(h["seconds"] for h in res.history) / max(len(res.history), 1), 3),
               "evaluation": eval_label, "exclude_history": rc.eval.exclude_history}
    save_json(os.path.join(out, "metrics.json"), metrics)
    return metrics
