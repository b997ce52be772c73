"""The trainer, in named steps: `setup` (device, precision, model, optimiser, batches, averaging),
`run_epoch`, `validate_and_select` (best epoch, early stop, lr decay on a plateau, the weight
average), and checkpoint/resume (train/resume.py). `train_model` strings them together.

`run_training(rc, out)` does the whole job of `echorec train`: validate the settings, read and split
the data (before the run folder is touched, so a bad input writes nothing), train, and write the run
folder (runfolder.py).
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from echorec.config import RunConfig, flatten, run_config_to_dict
from echorec.data.split import BatchIterator, SampledPrefixes, Split, load_split
from echorec.device import resolve_amp, resolve_device
from echorec.errors import EchorecError
from echorec.eval.evaluate import evaluate
from echorec.fsio import remove_stale_temps
from echorec.models import build_model
from echorec.models.base import Objective
from echorec.runfolder import RunFolder, check_out_path, check_same_data
from echorec.training.optim import RowSparseAdam, clip_grad_norm
from echorec.training.resume import LoopState, check_checkpoint, check_resume_epochs, checkpoint_trainer, restore
from echorec.training.tracking import Tracker, check_logger, preflight, say
from echorec.training.warm import check_shapes, parent_meta, read_parent, warm_start


def no_samples_reason(dc) -> str:
    if dc.split == "time":
        return f"no user has two events before --valid-from {dc.valid_from}"
    return "every user has fewer than 4 items"


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
        # Torn down before the interpreter exits: torch 2.14 aborts a process that exits with the group
        # still up ("terminate called without an active exception", exit -6), after a finished run.
        atexit.register(dist.destroy_process_group)
    return dist.get_rank(), dist.get_world_size()


@dataclass
class TrainResult:
    model: torch.nn.Module
    valid: dict
    test: dict
    best_epoch: int
    history: list
    train_seconds: float
    samples_per_epoch: int  # training samples (prefix -> next item) one epoch draws


@dataclass
class Trainer:
    """What `setup` builds: everything the steps share while a run trains."""

    rc: RunConfig
    split: Split
    device: torch.device
    amp: torch.dtype | None
    model: torch.nn.Module  # the raw weights the optimizer steps
    step_model: torch.nn.Module  # the model, compiled and/or wrapped for DDP
    opt: torch.optim.Optimizer
    batches: BatchIterator
    rank: int
    world: int
    folder: RunFolder | None  # where this rank writes (rank 0 only)
    quiet: bool  # no log lines, no progress bar (ranks other than 0, studies)
    ema_model: torch.nn.Module | None = None  # the weight average (--ema), validated and saved instead
    ema_pairs: Any = None
    best_state: dict | None = None  # the selected weights so far
    last_checkpoint: float = dataclasses.field(default_factory=time.perf_counter)  # perf_counter of the last save
    tracker: Tracker | None = None  # train.log and --logger (rank 0 of a run with a folder)

    def say(self, msg: str) -> None:
        say(self.tracker, msg, self.quiet)

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema_model if self.ema_model is not None else self.model

    def evaluate(self, which: str, model: torch.nn.Module | None = None) -> dict:
        return evaluate(model or self.eval_model, self.split, which, self.rc.eval, self.rc.data.max_len, self.device,
                        shard=(self.rank, self.world) if self.world > 1 else None)


def ema_tensors(avg: torch.nn.Module, model: torch.nn.Module) -> tuple[list, list, list, list]:
    """The tensors ema_update reads and writes: (average floats, model floats, average others, model others).

    They share storage with the modules, so a run builds them once: state_dict() walks every module, which
    costs more than the update itself."""
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


# -- step 1: setup ----------------------------------------------------------------------------------

def setup(rc: RunConfig, split: Split, out: str | None, quiet: bool) -> Trainer:
    """Device, precision, the seeded model, Adam, the batch iterator and (under torchrun) DDP."""
    t, d = rc.train, rc.data
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    rank, world = distributed()
    device = resolve_device(t.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(t.seed)
    model = build_model(rc.model, split.n_items, rc.model_cfg, max_len=d.max_len).to(device)
    if (t.label_smoothing or t.loss == "sampled") and len(inspect.signature(model.loss).parameters) < 2:
        raise EchorecError(f"{rc.model}: its loss(batch) takes no objective, so --label-smoothing and --loss sampled "
                           "cannot apply; give it loss(batch, objective)")
    # Fused Adam on CUDA (a few kernels per step instead of several per parameter); the CPU keeps torch's
    # default, whose results earlier runs were measured with.
    if t.sparse_items:
        model.item_emb.sparse = True  # row-sparse gradients for the item table (lookups and sampled scores)
        opt = RowSparseAdam(model.parameters(), lr=t.lr)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                               **({"fused": True} if device.type == "cuda" else {}))
    start, end = split.train_samples(d.train_mode, d.max_len)
    if len(start) == 0:
        raise EchorecError(f"{split.data.source}: no training samples ({no_samples_reason(rc.data)})")
    multiple = t.pad_multiple or (8 if device.type == "cuda" else 1)
    if d.train_mode == "sample":
        batches = SampledPrefixes(split, d.prefixes_per_user, d.max_len, t.batch_size, draw=d.prefix_draw,
                                  bucket=t.bucket, seed=t.seed,
                                  device=device, multiple=multiple)
    else:
        batches = BatchIterator(split, start, end, d.max_len, t.batch_size, mode=d.train_mode, bucket=t.bucket,
                                seed=t.seed, device=device, multiple=multiple)
    step_model = torch.compile(model, mode=t.compile_mode) if t.compile else model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Every rank walks the same global batches (same seed) and takes its share of each, so the
        # all-reduced gradient is the global batch's, as in a single process.
        step_model = DistributedDataParallel(step_model, device_ids=[device.index] if device.type == "cuda" else None)
    return Trainer(rc, split, device, resolve_amp(t.amp, device), model, step_model, opt, batches, rank, world,
                   RunFolder(out) if out and rank == 0 else None, quiet or rank != 0)


def start_average(tr: Trainer, saved_average: dict | None, resumed: bool) -> None:
    """--ema: a copy of the (possibly resumed) weights that follows them step by step."""
    if not tr.rc.train.ema:
        return
    tr.ema_model = copy.deepcopy(tr.model).requires_grad_(False)
    if saved_average:
        tr.ema_model.load_state_dict(saved_average)
    elif resumed:
        tr.say("[echorec] the checkpoint holds no weight average: --ema starts averaging from its weights")
    tr.ema_pairs = ema_tensors(tr.ema_model, tr.model)


# -- step 2: one epoch ------------------------------------------------------------------------------

# How often the loss is read back to the host: every step on the CPU (free there), every 50 steps on a GPU,
# where each read waits for the queued kernels. A non-finite loss is still reported at the step it occurred.
SYNC_EVERY = {"cpu": 1, "cuda": 50}


def objective(tr: Trainer) -> Objective | None:
    """This step's training objective, or None for plain cross-entropy (a plugin's loss(batch) needs no more).
    The sampled loss draws its shared negatives here, one set per step."""
    t = tr.rc.train
    if t.loss == "sampled":
        return Objective(t.label_smoothing, torch.randint(1, tr.split.n_items + 1, (t.negatives,)).to(tr.device))
    return Objective(t.label_smoothing) if t.label_smoothing else None


def forward(tr: Trainer, batch) -> torch.Tensor:
    """The loss of one batch (the forward pass), under the run's precision."""
    obj = objective(tr)
    with torch.autocast(device_type=tr.device.type, dtype=tr.amp or torch.bfloat16, enabled=tr.amp is not None):
        return tr.step_model(batch) if obj is None else tr.step_model(batch, obj)


def backward_step(tr: Trainer, loss: torch.Tensor, state: LoopState) -> None:
    """Backward, clipping, the optimiser and the weight average for one batch's loss."""
    t = tr.rc.train
    tr.opt.zero_grad(set_to_none=True)
    loss.backward()
    if t.clip_grad > 0:
        if t.sparse_items:
            clip_grad_norm(list(tr.model.parameters()), t.clip_grad)
        else:
            torch.nn.utils.clip_grad_norm_(tr.model.parameters(), t.clip_grad)
    tr.opt.step()
    if tr.ema_model is not None:
        ema_update(tr.ema_model, tr.model, t.ema, state.ema_updates, tr.ema_pairs, t.ema_warmup)
        state.ema_updates += 1


def checkpoint_due(tr: Trainer, state: LoopState) -> bool:
    t = tr.rc.train
    return bool((t.checkpoint_every and state.step % t.checkpoint_every == 0) or
                (t.checkpoint_minutes and time.perf_counter() - tr.last_checkpoint >= 60 * t.checkpoint_minutes))


def run_epoch(tr: Trainer, state: LoopState) -> float:
    """Train the rest of epoch `state.epoch` (from `state.step` on a resume); returns its training seconds."""
    t = tr.rc.train
    tr.model.train()
    te = time.perf_counter() - state.epoch_seconds
    bar = _progress(t.progress and not tr.quiet, tr.batches.n_samples, state.epoch, state.n_seen)
    sync_every = SYNC_EVERY.get(tr.device.type, 1)
    # The loss sum and the first non-finite step stay on the device between reads (float64, as a Python sum).
    loss_sum = torch.tensor(state.loss_sum, dtype=torch.float64, device=tr.device)
    bad_step = torch.tensor(-1, device=tr.device)
    bad_loss = torch.tensor(0.0, device=tr.device)
    shard = (tr.rank, tr.world) if tr.world > 1 else None
    graphs = t.compile and t.compile_mode == "reduce-overhead" and tr.device.type == "cuda"
    for step, batch in tr.batches.epoch(state.epoch, state.step, shard):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new training step: the last step's graph outputs are done
        loss = forward(tr, batch)
        first = (bad_step < 0) & ~torch.isfinite(loss.detach())
        bad_step, bad_loss = torch.where(first, step, bad_step), torch.where(first, loss.detach().float(), bad_loss)
        if (step + 1) % sync_every == 0:
            _stop_if_not_finite(tr, state, bad_step, bad_loss)  # before a non-finite loss reaches the weights
        backward_step(tr, loss, state)
        n = len(batch)
        loss_sum += loss.detach().double() * n
        state.n_seen += n
        state.step = step + 1
        if bar is not None:
            bar.update(n)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", smp_s=f"{state.n_seen / (time.perf_counter() - te):,.0f}")
        if checkpoint_due(tr, state):
            _stop_if_not_finite(tr, state, bad_step, bad_loss)
            state.loss_sum, state.epoch_seconds = float(loss_sum), time.perf_counter() - te
            checkpoint_trainer(tr, state)
    _stop_if_not_finite(tr, state, bad_step, bad_loss)
    state.loss_sum = float(loss_sum)
    if bar is not None:
        bar.close()
    return time.perf_counter() - te


def _stop_if_not_finite(tr: Trainer, state: LoopState, bad_step: torch.Tensor, bad_loss: torch.Tensor) -> None:
    step = int(bad_step)  # the one read back from the device
    if step >= 0:
        where = f" in {tr.folder.path}" if tr.folder else ""
        raise EchorecError(f"loss is {float(bad_loss)} at epoch {state.epoch} step {step}; training stopped, the best "
                           f"weights so far are kept{where} (try a lower --lr or --amp off)")


# -- step 3: validate and select --------------------------------------------------------------------

def validate_and_select(tr: Trainer, state: LoopState, epoch_s: float, callback=None) -> None:
    """Validate the epoch's weights (the average under --ema), keep the best, and decide on early stopping
    and on lr decay."""
    t, e = tr.rc.train, tr.rc.eval
    epoch = state.epoch
    t0 = time.perf_counter()
    valid = tr.evaluate("valid")  # full ranking, on the training device; it ends on the host, so the time is real
    eval_s = time.perf_counter() - t0
    score = valid[e.metric_key]
    improved = score > state.best
    row = {"epoch": epoch, "loss": state.loss_sum / max(state.n_seen, 1), "lr": tr.opt.param_groups[0]["lr"],
           "seconds": epoch_s, "samples_per_s": state.n_seen / epoch_s, "eval_seconds": eval_s,
           **{f"valid_{k}": v for k, v in valid.items()}}
    state.history.append(row)
    if tr.folder:
        tr.folder.write_history(state.history)
    if tr.tracker is not None:
        tr.tracker.epoch(row)
    if callback is not None:
        callback(epoch, tr.eval_model, row)
    hit_key = (f"sampled{e.sampled}_" if e.sampled else "") + "hit@10"
    tr.say(f"epoch {epoch:3d} | loss {row['loss']:.4f} | {epoch_s:6.1f} s ({row['samples_per_s']:,.0f} samples/s) | "
           f"valid {e.metric_key} {score:.4f} hit@10 {valid.get(hit_key, float('nan')):.4f} ({eval_s:.2f} s)"
           f"{'  *' if improved else ''}")
    if improved:
        state.best, state.best_epoch, state.bad, state.lr_bad = score, epoch, 0, 0
        tr.best_state = copy.deepcopy(tr.eval_model.state_dict())
        if tr.folder:
            tr.folder.write_weights(tr.best_state)
        return
    state.bad += 1
    state.lr_bad += 1
    if t.patience and state.bad >= t.patience:
        tr.say(f"[echorec] early stop: no valid {e.metric_key} improvement in {t.patience} epochs")
        state.done = True
    elif t.lr_decay != 1.0 and state.lr_bad >= t.lr_patience:
        # Reduce-on-plateau: the optimizer's state dict carries the lr, so a resume keeps it.
        for g in tr.opt.param_groups:
            g["lr"] *= t.lr_decay
        state.lr_bad = 0
        tr.say(f"[echorec] lr -> {tr.opt.param_groups[0]['lr']:.3g} (no valid improvement in {t.lr_patience} epochs)")


# -- the loop ---------------------------------------------------------------------------------------

def train_model(rc: RunConfig, split: Split, out: str | None = None, quiet: bool = False,
                callback=None, resume: bool = False, tracker: Tracker | None = None) -> TrainResult:
    """Train `rc.model` on `split`; `callback(epoch, model, row)` runs after each epoch's validation.

    With `out`, a checkpoint (model, optimizer, RNG, loop position) is written atomically at every
    epoch end and every `checkpoint_every` steps; `resume=True` continues from it and ends with the
    same weights and metrics as an uninterrupted run (same machine and thread count)."""
    rc.validate()
    tr = setup(rc, split, out, quiet)
    tr.tracker = tracker
    state, saved_average = LoopState(), None
    if resume:
        state, saved_average = restore(tr, out)
    else:
        if rc.train.init_from:
            new = warm_start(tr.model, read_parent(rc.train.init_from, rc.model))
            tr.say(f"[echorec] warm start from {rc.train.init_from}: its weights, {new:,} new item(s) with fresh rows")
        scan = tr.model.scan_summary()
        tr.say(f"[echorec] {rc.model}: {sum(p.numel() for p in tr.model.parameters()):,} parameters | "
               f"{split.data.n_users:,} users, {split.n_items:,} items | {tr.batches.n_samples:,} "
               f"{rc.data.train_mode} samples/epoch | device {tr.device}, amp {tr.amp or 'off'}"
               f"{' | ' + scan if scan else ''}")
    start_average(tr, saved_average, resume)
    while not state.done and state.epoch <= rc.train.epochs:
        epoch_s = run_epoch(tr, state)
        validate_and_select(tr, state, epoch_s, callback)
        state.next_epoch(epoch_s)
        checkpoint_trainer(tr, state)
    if tr.best_state is not None:
        tr.model.load_state_dict(tr.best_state)
    elif tr.ema_model is not None:
        tr.model.load_state_dict(tr.ema_model.state_dict())
    valid, test = tr.evaluate("valid", tr.model), tr.evaluate("test", tr.model)
    return TrainResult(tr.model, valid, test, state.best_epoch, state.history, state.train_seconds,
                       tr.batches.n_samples)


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


def run_training(rc: RunConfig, out: str, quiet: bool = False, resume: bool = False, overwrite: bool = False,
                 allow_data_change: bool = False, callback=None) -> dict:
    """`echorec train`: every check, then the data, then (rank 0 only) the run folder; returns metrics.json.
    `callback(epoch, model, row)` runs after each epoch's validation (train_model's).

    A resume checks that the data is the data the run started on (meta.data_digest), unless
    `allow_data_change`."""
    # Every rank runs the same checks (so a user error stops them all, not rank 0 alone while the
    # others wait in a collective); only rank 0 writes. Everything that can fail on user input
    # happens before the run folder is touched.
    rc.validate()
    check_logger(rc.train.logger)
    check_out_path(out)
    rank, world = distributed()
    folder = RunFolder(out)
    _check_existing(folder, resume, overwrite)
    if resume:
        check_resume_epochs(folder, rc.train.epochs)
    # A warm start numbers its parent's items first; a resumed one as its own item map says (the parent may
    # have moved since).
    parent = read_parent(rc.train.init_from, rc.model) if rc.train.init_from and not resume else None
    order = folder.item_order() if resume else parent.items if parent else None
    data, split = load_split(rc.data, items_first=order)
    if parent is not None:
        with torch.device("meta"):
            check_shapes(build_model(rc.model, split.n_items, rc.model_cfg, max_len=rc.data.max_len), parent,
                         split.n_items)
    if len(split.train_samples(rc.data.train_mode, rc.data.max_len)[0]) == 0:
        raise EchorecError(f"{data.source}: no training samples ({no_samples_reason(rc.data)})")
    digest = data.digest()
    if resume:
        check_same_data(folder, data, digest, allow_data_change, "--resume")
        check_checkpoint(rc, split.n_items, out)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # all ranks have checked the folder before rank 0 writes into it
    if rank != 0:
        res = train_model(rc, split, out, True, resume=resume)
        return {"valid": res.valid, "test": res.test}
    preflight(rc.train.logger, out)
    with folder.locked():
        _check_existing(folder, resume, overwrite)  # again, now that no other process can write it
        remove_stale_temps(out)
        if resume:
            folder.continue_run(run_config_to_dict(rc))
        else:
            folder.start(run_config_to_dict(rc), data, split.n_items, digest,
                         {"parent": parent_meta(parent, split.n_items)} if parent else None)
        return _train_and_record(rc, split, folder, quiet, resume, callback)


def _check_existing(folder: RunFolder, resume: bool, overwrite: bool) -> None:
    existing = folder.existing()
    if existing and not resume and not overwrite:
        raise EchorecError(f"{folder.path} already holds a run ({', '.join(existing)}); pass --overwrite to replace "
                           f"it, or --resume {folder.path} to continue it")


def _train_and_record(rc: RunConfig, split: Split, folder: RunFolder, quiet: bool, resume: bool, callback) -> dict:
    """Rank 0's part of run_training once the folder is set up: train with the tracker, write the weights and
    metrics.json, and leave the run's end (or its failure) in train.log and the logger."""
    out = folder.path
    try:
        tracker = Tracker(out, rc.train.logger, run_name=os.path.basename(os.path.abspath(out)),
                          params=flatten(run_config_to_dict(rc)) | {"model": rc.model})
    except Exception as e:  # a logger that fails to start: nothing of this attempt stays to block a rerun
        if not resume:
            folder.abandon()
        raise EchorecError(f"--logger {rc.train.logger}: could not start ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    tracker.line(f"{'resume' if resume else 'train'} {rc.model} on {rc.data.dataset} -> {out}")
    try:
        res = train_model(rc, split, out, quiet, callback=callback, resume=resume, tracker=tracker)
        folder.write_weights(res.model.state_dict())
        eval_label = f"sampled ({rc.eval.sampled} negatives)" if rc.eval.sampled else "full ranking"
        metrics = {"valid": res.valid, "test": res.test, "best_epoch": res.best_epoch,
                   "epochs_run": len(res.history), "train_seconds": round(res.train_seconds, 3),
                   "seconds_per_epoch": round(sum(h["seconds"] for h in res.history) / max(len(res.history), 1), 3),
                   "evaluation": eval_label, "exclude_history": rc.eval.exclude_history}
        folder.write_metrics(metrics)
    except BaseException as e:
        tracker.line(f"error: {e}" if isinstance(e, EchorecError) else f"stopped: {type(e).__name__} {e}")
        tracker.close("FAILED" if not isinstance(e, KeyboardInterrupt) else "KILLED")
        raise
    tracker.final(metrics)
    tracker.line(f"done: best epoch {metrics['best_epoch']} | valid {json.dumps(metrics['valid'])} | test "
                 f"{json.dumps(metrics['test'])}")
    tracker.close()
    return metrics

