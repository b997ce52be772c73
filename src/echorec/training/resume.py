"""Checkpoint and resume: the loop state a checkpoint holds, putting a run back where it stopped, and
the rule for which settings a resumed run may change. (train/checkpoint.py is the file format.)"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import torch

from echorec.config import run_config_from_dict, run_config_to_dict
from echorec.errors import EchorecError
from echorec.runfolder import CHECKPOINT, CONFIG, RunFolder
from echorec.training.checkpoint import checkpoint_loop, load_checkpoint, write_checkpoint


@dataclass
class LoopState:
    """The loop's whole position; with the model, optimizer and RNG it is all a checkpoint needs."""

    epoch: int = 1  # the epoch in progress (or next)
    step: int = 0  # steps of it already done
    best: float = -math.inf  # best valid metric so far
    best_epoch: int = 0
    bad: int = 0  # epochs since the best (early stopping)
    lr_bad: int = 0  # epochs since the best or the last lr decay
    history: list = field(default_factory=list)  # one row per finished epoch
    loss_sum: float = 0.0  # of this epoch so far, weighted by batch size
    n_seen: int = 0  # samples of this epoch so far
    epoch_seconds: float = 0.0  # training time of this epoch before a checkpoint
    train_seconds: float = 0.0  # of all finished epochs
    done: bool = False  # stopped early
    ema_updates: int = 0  # steps taken by the weight average

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> LoopState:
        """Missing keys keep their defaults (a checkpoint written before they were added); every value must have
        its field's type and a sane range."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) - names:
            raise EchorecError(f"{where}: the checkpoint's loop state is not echorec's")
        state = cls(**d)
        for f in dataclasses.fields(cls):
            v, default = getattr(state, f.name), getattr(cls(), f.name)
            kinds = (int, float) if isinstance(default, float) else (type(default),)
            ok = isinstance(v, kinds) and (isinstance(default, bool) or not isinstance(v, bool))
            if ok and isinstance(v, (int, float)) and not isinstance(v, bool) and f.name != "best":
                ok = math.isfinite(v) and v >= 0
            if ok and f.name == "history":
                ok = all(isinstance(row, dict) for row in v)
            if not ok:
                raise EchorecError(f"{where}: the checkpoint's loop state has {f.name} = {v!r}; the file was "
                                   "tampered with or damaged")
        if state.epoch < 1:
            raise EchorecError(f"{where}: the checkpoint's loop state has epoch {state.epoch}")
        return state

    def next_epoch(self, epoch_seconds: float) -> None:
        self.train_seconds += epoch_seconds
        self.epoch, self.step, self.loss_sum, self.n_seen, self.epoch_seconds = self.epoch + 1, 0, 0.0, 0, 0.0


# Settings a resumed run may change: how long it goes on and how it runs, never what it computes
# (an interrupted run resumed with the same settings is bit-identical to an uninterrupted one).
RESUME_MAY_CHANGE = {"train.epochs", "train.patience", "train.threads", "train.progress", "train.checkpoint_every",
                     "train.checkpoint_minutes", "train.logger"}


def check_resume_config(folder: RunFolder, asked) -> None:
    """Refuse to resume the run in `folder` with settings (a RunConfig) that change what it computes."""
    base = folder.read_config_dict()
    base.pop("meta", None)
    saved, want = run_config_to_dict(run_config_from_dict(base, folder.file(CONFIG))), run_config_to_dict(asked)
    diff = [f"{sec}.{k}" for sec in saved if isinstance(saved[sec], dict)
            for k in saved[sec] if saved[sec][k] != want[sec].get(k) and f"{sec}.{k}" not in RESUME_MAY_CHANGE]
    if saved["model"] != want["model"]:
        diff.insert(0, "model")
    if diff:
        raise EchorecError(f"--resume {folder.path}: the run was trained with another config "
                           f"(differs in {', '.join(diff)}); resume with the same settings")


def check_resume_epochs(folder: RunFolder, epochs: int) -> None:
    loop = checkpoint_loop(folder.file(CHECKPOINT))
    done = 0 if loop is None else LoopState.from_dict(loop, folder.file(CHECKPOINT)).epoch - 1
    if epochs < done:
        raise EchorecError(f"--resume {folder.path}: the run has already trained {done} epochs; --epochs must be at "
                           f"least that (it counts all epochs, not more of them)")


def checkpoint_trainer(tr, state) -> None:
    """The trainer's model, optimizer, RNG, weight average and loop state, into its run folder (rank 0)."""
    if tr.folder is not None:
        write_checkpoint(tr.folder.file(CHECKPOINT), tr.model, tr.opt, state.to_dict(), run_config_to_dict(tr.rc),
                         ema=tr.ema_model)
    tr.last_checkpoint = time.perf_counter()


def check_checkpoint(rc, n_items: int, out: str) -> None:
    """Every check `restore` makes, before a resume writes anything: the file, its loop state, and its tensors
    against a model built on the meta device (no memory)."""
    from echorec.models import build_model

    path = RunFolder(out).file(CHECKPOINT)
    if not os.path.exists(path):
        raise EchorecError(f"{out}: no {CHECKPOINT} to resume from")
    c = load_checkpoint(path)
    with torch.device("meta"):
        model = build_model(rc.model, n_items, rc.model_cfg, max_len=rc.data.max_len)
    _check_tensors(model, c, path)
    LoopState.from_dict(c["loop"], path)


def _check_tensors(model, c: dict, path: str) -> None:
    """Names, shapes and finiteness of a checkpoint's tensors against `model`'s, before any is loaded: the
    model's, Adam's moments (each the shape of its parameter), the RNG state."""
    from echorec.runfolder import check_finite

    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in c["model"].items()}
    if want != got:
        bad = sorted(set(want) ^ set(got)) or [k for k in want if want[k] != got[k]]
        raise EchorecError(f"{path}: the checkpoint's model does not fit this run (first difference: {bad[0]})")
    check_finite(c["model"], path)
    if c.get("ema"):
        if {k: tuple(v.shape) for k, v in c["ema"].items()} != want:
            raise EchorecError(f"{path}: the checkpoint's weight average does not fit this run's model")
        check_finite(c["ema"], path)
    params = list(model.parameters())
    for idx, st in c["optimizer"]["state"].items():
        if not 0 <= idx < len(params):
            raise EchorecError(f"{path}: optimizer state for parameter {idx}, but the model has {len(params)}")
        for name, v in st.items():
            if name != "step" and tuple(v.shape) != tuple(params[idx].shape):
                raise EchorecError(f"{path}: optimizer state {idx}/{name} has shape {list(v.shape)}, its parameter "
                                   f"{list(params[idx].shape)}")
    groups = c["optimizer"]["param_groups"]
    if not (isinstance(groups, list) and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
        raise EchorecError(f"{path}: the checkpoint's optimizer groups are not torch's")
    rng, now = c["rng"].get("torch"), torch.get_rng_state()
    if rng is None or rng.dtype != now.dtype or rng.shape != now.shape:
        raise EchorecError(f"{path}: the checkpoint's random-number state is missing or damaged")


def restore(tr, out: str):
    """Put the trainer back where the checkpoint in `out` stopped: model, optimizer, RNG, loop state and the
    best weights so far. Returns (LoopState, the saved weight average or None)."""
    path = RunFolder(out).file(CHECKPOINT) if out else None
    if not path or not os.path.exists(path):
        raise EchorecError(f"{out}: no {CHECKPOINT} to resume from")
    c = load_checkpoint(path)
    _check_tensors(tr.model, c, path)
    try:
        tr.model.load_state_dict(c["model"])
        tr.opt.load_state_dict(c["optimizer"])
        torch.set_rng_state(c["rng"]["torch"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        raise EchorecError(f"{path}: the checkpoint does not fit this run ({str(e).splitlines()[0]})") from None
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        if f"cuda{i}" in c["rng"]:
            torch.cuda.set_rng_state(c["rng"][f"cuda{i}"], i)
    state = LoopState.from_dict(c["loop"], path)
    # The patience may have been raised on resume (to train on after an early stop): judge the
    # stop again with the current setting, as if the run had used it from the start.
    state.done = bool(tr.rc.train.patience and state.bad >= tr.rc.train.patience)
    if state.best_epoch:
        tr.best_state = RunFolder(out).read_weights()
    tr.say(f"[echorec] resuming {out} at epoch {state.epoch}, step {state.step}")
    return state, c.get("ema")
