"""The training loop: Adam, optional bf16 autocast, grad clipping, lr decay on a plateau, an optional
moving average of the weights, early stopping on a valid metric.

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
from echorec.models.base import SequentialRecommender
from echorec.registry import build_model, get_model_class
from echorec.sysinfo import cpu_has_fast_bf16, machine
from echorec.train.checkpoint import atomic_write_text, checkpoint_loop, read_json, save_weights


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        # gloo on CPU, nccl on GPUs; multi-node setups come from torchrun's own flags (MASTER_ADDR, ...).
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EchorecError("--device cuda given but no CUDA GPU is available (use --device cpu)")
    return dev


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
    """`model` may be the class: only its `causal` attribute is read."""
    if rc.data.train_mode == "all" and not model.causal:
        raise EchorecError(
            f"--train-mode all needs a causal model; {rc.model} sees the whole sequence, so use --train-mode prefix"
        )
    if rc.data.train_mode not in ("prefix", "all", "bsarec"):
        raise EchorecError(f"--train-mode {rc.data.train_mode!r}: use prefix, all or bsarec")


def _check_lr_decay(t) -> None:
    if not 0 < t.lr_decay <= 1 or t.lr_patience < 1:
        raise EchorecError(f"--lr-decay {t.lr_decay} / --lr-patience {t.lr_patience}: "
                           "need 0 < decay <= 1 and patience >= 1")


def _check_ema(t) -> None:
    if not 0 <= t.ema < 1:
        raise EchorecError(f"--ema {t.ema}: use 0 (off) or a per-step decay in [0, 1), e.g. 0.999")
    if not t.ema_warmup > 1:
        raise EchorecError(f"--ema-warmup {t.ema_warmup}: must be above 1 (at 1 the average never leaves the "
                           "initial weights); 10 is TensorFlow's rule, 2 a plain running mean until the decay binds")


def _check_label_smoothing(t) -> None:
    if not 0 <= t.label_smoothing < 1:
        raise EchorecError(f"--label-smoothing {t.label_smoothing}: use a share in [0, 1), e.g. 0.1 (0 = off)")
    if t.label_smoothing and t.loss == "sampled":
        # Smoothing over a sampled set would spread mass onto a few random items, not the catalog: another loss.
        raise EchorecError("--label-smoothing applies to the full-softmax loss; use it with --loss full")


def check_train_settings(t) -> None:
    """Every check of a TrainConfig's values that needs no data or model; callers run it before writing."""
    _check_lr_decay(t)
    _check_ema(t)
    _check_label_smoothing(t)


def ema_tensors(avg: torch.nn.Module, model: torch.nn.Module) -> tuple[list, list, list, list]:
    """The tensors ema_update reads and writes: (average floats, model floats, average others, model others).

    They share storage with the modules, so a run builds them once: state_dict() walks every module, which
    cost more than the update itself (0.77 of 1.12 ms per step on the 2-layer Beauty model)."""
    fa, fm, oa, om = [], [], [], []
    for a, p in zip(avg.state_dict().values(), model.state_dict().values()):
        dst_a, dst_m = (fa, fm) if a.is_floating_point() else (oa, om)
        dst_a.append(a)
        dst_m.append(p)
    return fa, fm, oa, om


@torch.no_grad()
def ema_update(avg: torch.nn.Module, model: torch.nn.Module, decay: float, updates: int,
               tensors: tuple[list, list, list, list] | None = None, warmup: float = 10.0) -> None:
    """avg <- d * avg + (1 - d) * model, with d = min(decay, (1 + n) / (warmup + n)) after n earlier updates.

    The warm-up term (with warmup 10, the num_updates rule of TensorFlow's ExponentialMovingAverage) keeps
    the random initial weights out of the average. It is not short: it binds until step
    (warmup - 1) / (1 - decay) - warmup (8990 for 0.999 and 10: 17.5 epochs of Beauty's 513 steps), and
    until then step k's weight in the average grows like k^(warmup - 2), so the average's mean age is
    about n / warmup steps. Warmup 2 makes it the plain mean of the initial weights and every step's
    until the decay binds (step 998 for 0.999).
    Integer buffers are copied. `tensors`: ema_tensors(avg, model), built once by a caller that updates
    every step."""
    d = min(decay, (1 + updates) / (warmup + updates))
    fa, fm, oa, om = tensors if tensors is not None else ema_tensors(avg, model)
    # One fused lerp over all tensors (a few kernels) instead of one per tensor: it runs every step.
    torch._foreach_lerp_(fa, fm, 1 - d)
    for a, p in zip(oa, om):
        a.copy_(p)


def _metric_key(e) -> str:
    name, _, k = e.valid_metric.partition("@")
    if name not in ("hit", "ndcg", "mrr") or not k.isdigit() or int(k) not in e.ks:
        raise EchorecError(f"--valid-metric {e.valid_metric!r} must be hit|ndcg|mrr@K with K in --ks {e.ks}")
    return (f"sampled{e.sampled}_" if e.sampled else "") + e.valid_metric


def train_model(rc: RunConfig, split: Split, out: str | None = None, quiet: bool = False,
                callback=None, resume: bool = False) -> TrainResult:
    """Train `rc.model` on `split`; `callback(epoch, model, row)` runs after each epoch's validation.

    With `out`, a checkpoint (model, optimizer, RNG, loop position) is written atomically at every
    epoch end and every `checkpoint_every` steps; `resume=True` continues from it and ends with the
    same weights and metrics as an uninterrupted run (same machine and thread count)."""
    t, d, e = rc.train, rc.data, rc.eval
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    rank, world = distributed()
    quiet = quiet or rank != 0
    write_dir = out if rank == 0 else None  # every rank may read the run folder; rank 0 alone writes it
    device = resolve_device(t.device)
    amp = resolve_amp(t.amp, device)
    torch.manual_seed(t.seed)
    model = build_model(rc.model, split.n_items, rc.model_cfg, max_len=d.max_len).to(device)
    _check_mode(rc, model)
    metric_key = _metric_key(e)
    check_train_settings(t)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    start, end = split.train_samples(d.train_mode, d.max_len)
    if len(start) == 0:
        raise EchorecError(f"{split.data.source}: no training samples (every user has fewer than 4 items)")
    batches = BatchIterator(split, start, end, d.max_len, t.batch_size, mode=d.train_mode, bucket=t.bucket,
                            seed=t.seed)
    if t.loss not in ("full", "sampled"):
        raise EchorecError(f"--loss {t.loss!r}: use full or sampled")
    if t.loss == "sampled" and type(model).loss is not SequentialRecommender.loss:
        raise EchorecError(f"--loss sampled: {rc.model} trains with its own objective; use --loss full")
    step_model = model
    if t.compile:
        step_model = torch.compile(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Every rank walks the same global batches (same seed) and takes its share of each, so the
        # all-reduced gradient is the global batch's, as in a single process.
        step_model = DistributedDataParallel(step_model, device_ids=[device.index] if device.type == "cuda" else None)
    say = (lambda m: None) if quiet else log
    # The loop's whole position; with the model, optimizer and RNG it is all a checkpoint needs.
    loop = {"epoch": 1, "step": 0, "best": -math.inf, "best_epoch": 0, "bad": 0, "lr_bad": 0, "history": [],
            "loss_sum": 0.0, "n_seen": 0, "epoch_seconds": 0.0, "train_seconds": 0.0, "done": False,
            "ema_updates": 0}
    best_state = None
    c = None
    ckpt = os.path.join(out, "checkpoint.safetensors") if out else None
    ckpt_write = ckpt if write_dir else None
    if resume:
        from echorec.train.checkpoint import load_checkpoint, load_weights

        if not ckpt or not os.path.exists(ckpt):
            raise EchorecError(f"{out}: no checkpoint.safetensors to resume from")
        c = load_checkpoint(ckpt)
        model.load_state_dict(c["model"])
        opt.load_state_dict(c["optimizer"])
        torch.set_rng_state(c["rng"]["torch"])
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            if f"cuda{i}" in c["rng"]:
                torch.cuda.set_rng_state(c["rng"][f"cuda{i}"], i)
        loop = {**loop, **c["loop"]}  # fresh defaults first: an older checkpoint may lack keys added since
        # The patience may have been raised on resume (to train on after an early stop): judge the
        # stop again with the current setting, as if the run had used it from the start.
        loop["done"] = bool(t.patience and loop["bad"] >= t.patience)
        if loop["best_epoch"]:
            best_state = load_weights(os.path.join(out, "model.safetensors"))
        say(f"[echorec] resuming {out} at epoch {loop['epoch']}, step {loop['step']}")
    else:
        say(f"[echorec] {rc.model}: {sum(p.numel() for p in model.parameters()):,} parameters | "
            f"{split.data.n_users:,} users, {split.n_items:,} items | {batches.n_samples:,} {d.train_mode} "
            f"samples/epoch | device {device}, amp {amp or 'off'}")
    # With --ema, validation, the best-epoch choice and the saved weights all use the average;
    # the optimizer keeps stepping the raw weights.
    ema_model = None
    if t.ema:
        ema_model = copy.deepcopy(model).requires_grad_(False)
        if c is not None and c.get("ema"):
            ema_model.load_state_dict(c["ema"])
        elif c is not None:
            say("[echorec] the checkpoint holds no weight average: --ema starts averaging from its weights")
    eval_model = ema_model if ema_model is not None else model
    ema_pairs = ema_tensors(ema_model, model) if ema_model is not None else None
    cfg_dict = run_config_to_dict(rc)

    def checkpoint():
        if ckpt_write:
            from echorec.train.checkpoint import save_checkpoint

            save_checkpoint(ckpt_write, model, opt, loop, cfg_dict, ema=ema_model)

    def run_eval(which: str, model: torch.nn.Module) -> dict:
        return evaluate(model, split, which, d.max_len, e.eval_batch_size, e.ks, e.exclude_history, e.sampled, device,
                        item_chunk=e.item_chunk, shard=(rank, world) if world > 1 else None)

    while not loop["done"] and loop["epoch"] <= t.epochs:
        epoch = loop["epoch"]
        model.train()
        te = time.perf_counter() - loop["epoch_seconds"]
        bar = _progress(t.progress and not quiet, batches.n_samples, epoch, loop["n_seen"])
        for step, idx in enumerate(batches.order(epoch)):
            if step < loop["step"]:
                continue  # done before the resume
            if world > 1:
                idx = idx[rank::world]
            batch = batches.make(idx)
            batch.label_smoothing = t.label_smoothing
            if t.loss == "sampled":
                batch.negatives = torch.randint(1, split.n_items + 1, (t.negatives,))
            batch = batch.to(device)
            with torch.autocast(device_type=device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                loss = step_model(batch)
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
            if ema_model is not None:
                ema_update(ema_model, model, t.ema, loop["ema_updates"], ema_pairs, t.ema_warmup)
                loop["ema_updates"] += 1
            n = len(batch)
            loop["loss_sum"] += loss.item() * n
            loop["n_seen"] += n
            loop["step"] = step + 1
            if bar is not None:
                bar.update(n)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}",
                                    smp_s=f"{loop['n_seen'] / (time.perf_counter() - te):,.0f}")
            if t.checkpoint_every and loop["step"] % t.checkpoint_every == 0:
                loop["epoch_seconds"] = time.perf_counter() - te
                checkpoint()
        if bar is not None:
            bar.close()
        epoch_s = time.perf_counter() - te
        valid = run_eval("valid", eval_model)
        score = valid[metric_key]
        improved = score > loop["best"]
        row = {"epoch": epoch, "loss": loop["loss_sum"] / max(loop["n_seen"], 1), "lr": opt.param_groups[0]["lr"],
               "seconds": epoch_s, "samples_per_s": loop["n_seen"] / epoch_s, **{f"valid_{k}": v for k, v in valid.items()}}
        loop["history"].append(row)
        if write_dir:
            _write_history(write_dir, loop["history"])
        if callback is not None:
            callback(epoch, eval_model, row)
        hit_key = (f"sampled{e.sampled}_" if e.sampled else "") + "hit@10"
        say(f"epoch {epoch:3d} | loss {row['loss']:.4f} | {epoch_s:6.1f} s ({row['samples_per_s']:,.0f} samples/s) | "
            f"valid {metric_key} {score:.4f} hit@10 {valid.get(hit_key, float('nan')):.4f}{'  *' if improved else ''}")
        if improved:
            loop["best"], loop["best_epoch"], loop["bad"], loop["lr_bad"] = score, epoch, 0, 0
            best_state = copy.deepcopy(eval_model.state_dict())
            if write_dir:
                save_weights(os.path.join(write_dir, "model.safetensors"), best_state)
        else:
            loop["bad"] += 1
            loop["lr_bad"] += 1
            if t.patience and loop["bad"] >= t.patience:
                say(f"[echorec] early stop: no valid {metric_key} improvement in {t.patience} epochs")
                loop["done"] = True
            elif t.lr_decay != 1.0 and loop["lr_bad"] >= t.lr_patience:
                # Reduce-on-plateau: the optimizer's state dict carries the lr, so a resume keeps it.
                for g in opt.param_groups:
                    g["lr"] *= t.lr_decay
                loop["lr_bad"] = 0
                say(f"[echorec] lr -> {opt.param_groups[0]['lr']:.3g} (no valid improvement in {t.lr_patience} epochs)")
        loop["train_seconds"] += epoch_s
        loop.update(epoch=epoch + 1, step=0, loss_sum=0.0, n_seen=0, epoch_seconds=0.0)
        checkpoint()
    if best_state is not None:
        model.load_state_dict(best_state)
    elif ema_model is not None:
        model.load_state_dict(ema_model.state_dict())
    valid, test = run_eval("valid", model), run_eval("test", model)
    return TrainResult(model, valid, test, loop["best_epoch"], loop["history"], loop["train_seconds"])


def _progress(enabled: bool, total: int, epoch: int, initial: int):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    # disable=None: tqdm shows the bar on a terminal only, so logs stay one line per epoch.
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch}", unit="smp", leave=False, disable=None,
                file=sys.stderr)


def _write_history(out: str, history: list) -> None:
    buf = io.StringIO()
    # Union of the rows' keys in first-seen order: a run resumed from an older checkpoint has rows
    # without the columns added since (e.g. lr).
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
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


RUN_FILES = ("config.json", "model.safetensors", "metrics.json", "history.csv", "checkpoint.safetensors")


def run_training(rc: RunConfig, out: str, quiet: bool = False, resume: bool = False, overwrite: bool = False) -> dict:
    # Every rank runs the same checks (so a user error stops them all, not rank 0 alone while the
    # others wait in a collective); only rank 0 writes.
    rank, _ = distributed()
    # Everything that can fail on user input happens before the run folder is touched.
    existing = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if existing and not resume and not overwrite:
        raise EchorecError(f"{out} already holds a run ({', '.join(existing)}); pass --overwrite to replace it, "
                           f"or --resume {out} to continue it")
    data, split = load_data(rc)
    _check_mode(rc, get_model_class(rc.model))  # the class says whether it is causal: nothing to build
    check_train_settings(rc.train)
    if os.path.exists(out) and not os.path.isdir(out):
        raise EchorecError(f"--out {out}: exists and is not a folder")
    if resume:
        done = (checkpoint_loop(os.path.join(out, "checkpoint.safetensors")) or {}).get("epoch", 1) - 1
        if rc.train.epochs < done:
            raise EchorecError(f"--resume {out}: the run has already trained {done} epochs; --epochs must be at "
                               f"least that (it counts all epochs, not more of them)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.barrier()  # all ranks have checked the folder before rank 0 writes into it
    if rank != 0:
        res = train_model(rc, split, out, True, resume=resume)
        return {"valid": res.valid, "test": res.test}
    os.makedirs(out, exist_ok=True)
    if resume:
        cfg = read_json(os.path.join(out, "config.json"))  # keep its meta; epochs/patience may have changed
        save_json(os.path.join(out, "config.json"), {**run_config_to_dict(rc), "meta": cfg.get("meta", {})})
        res = train_model(rc, split, out, quiet, resume=True)
        return _finish_run(rc, out, res)
    for f in existing:  # --overwrite: no stale file of the old run may outlive the new one
        os.unlink(os.path.join(out, f))
    cfg = run_config_to_dict(rc)
    cfg["meta"] = {"n_items": split.n_items, "n_users": data.n_users, "source": os.path.abspath(data.source),
                   "echorec": __import__("echorec").__version__, "torch": torch.__version__,
                   "machine": f"{platform.node()} {machine()}"}
    save_json(os.path.join(out, "config.json"), cfg)
    write_id_maps(out, data)
    res = train_model(rc, split, out, quiet)
    return _finish_run(rc, out, res)


def _finish_run(rc: RunConfig, out: str, res: TrainResult) -> dict:
    save_weights(os.path.join(out, "model.safetensors"), res.model.state_dict())
    eval_label = f"sampled ({rc.eval.sampled} negatives)" if rc.eval.sampled else "full ranking"
    metrics = {"valid": res.valid, "test": res.test, "best_epoch": res.best_epoch,
               "epochs_run": len(res.history), "train_seconds": round(res.train_seconds, 3),
               "seconds_per_epoch": round(sum(h["seconds"] for h in res.history) / max(len(res.history), 1), 3),
               "evaluation": eval_label, "exclude_history": rc.eval.exclude_history}
    save_json(os.path.join(out, "metrics.json"), metrics)
    return metrics
