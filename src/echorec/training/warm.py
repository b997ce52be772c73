"""Warm start (`echorec train --init-from RUN`): a new run that begins from a finished run's weights.

On a grown log, the parent's items keep their ids (the data is renumbered with them first, data/preprocess.py's
with_items_first) and their learned embedding rows; items new to the log get the fresh rows of the seeded init;
every other tensor is copied as it is. The model and every shape must be the parent's (a different hidden size,
layer count or max_len is one line naming the first tensor that differs). The optimizer starts fresh. The new
run folder records the parent and the data it was trained on (config.json meta.parent).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from echorec.errors import EchorecError
from echorec.runfolder import RunFolder


@dataclass
class Parent:
    path: str
    model: str
    n_items: int
    items: list[str]  # raw id of the parent's internal id i at [i - 1]
    meta: dict


def read_parent(path: str, model: str) -> Parent:
    """The run folder named by --init-from, checked: it loads, and it holds the same model."""
    folder = RunFolder(path)
    if not os.path.isdir(path):
        raise EchorecError(f"--init-from {path}: no such run folder")
    rc, meta = folder.read_config()
    if rc.model != model:
        raise EchorecError(f"--init-from {path}: that run is a {rc.model}, this one a {model}; a warm start needs the "
                           "same model")
    if not folder.has("model.safetensors"):
        raise EchorecError(f"--init-from {path}: the run has no weights yet (model.safetensors)")
    items, _ = folder.read_items()
    return Parent(os.path.abspath(path), rc.model, int(meta["n_items"]), items, meta)


def check_shapes(model: torch.nn.Module, parent: Parent, n_items: int) -> None:
    """Every tensor of `model` (built for `n_items`) against the parent's weights: equal, or the item table grown
    by the new items. Reads only the weights' header."""
    from echorec.runfolder import WEIGHTS, header_shapes

    have = header_shapes(os.path.join(parent.path, WEIGHTS))
    for name, t in model.state_dict().items():
        old = have.get(name)
        if old is None:
            raise EchorecError(f"--init-from {parent.path}: the parent has no tensor {name}; the model settings differ")
        new = tuple(t.shape)
        if old != new and not _grown(old, new, parent.n_items, n_items):
            raise EchorecError(f"--init-from {parent.path}: tensor {name} is {list(old)} in the parent and "
                               f"{list(new)} here; a warm start needs the same model settings (hidden size, layers, "
                               "max_len, ...)")


def _grown(old: tuple, new: tuple, n_old: int, n_new: int) -> bool:
    """A per-item tensor grown by the new items: (n_items [+ padding row [+ a special row]], ...)."""
    extra = old[0] - n_old
    return len(old) == len(new) and old[1:] == new[1:] and 0 <= extra <= 2 and new[0] == n_new + extra


@torch.no_grad()
def warm_start(model: torch.nn.Module, parent: Parent) -> int:
    """Copy the parent's weights into `model` (built for the grown catalogue and seeded): known item rows and every
    other tensor; new items keep their fresh rows. Returns the number of new items."""
    from echorec.runfolder import RunFolder, check_finite

    folder = RunFolder(parent.path)
    state = folder.read_weights()
    check_finite(state, folder.file("model.safetensors"))
    n_old = parent.n_items
    n_new = model.n_items
    for name, t in model.state_dict().items():
        old = state[name]
        if tuple(old.shape) == tuple(t.shape):
            t.copy_(old)
            continue
        extra = old.shape[0] - n_old  # 0: one value per item; 1: a padding row first; 2: and a [mask] row last
        head = n_old + min(extra, 1)
        t[:head].copy_(old[:head])
        if extra > 1:
            t[-(extra - 1):].copy_(old[-(extra - 1):])
    return n_new - n_old


def parent_meta(parent: Parent, n_items: int) -> dict:
    """What config.json's meta records of the parent."""
    return {"run": parent.path, "data_digest": parent.meta.get("data_digest"), "n_items": parent.n_items,
            "new_items": n_items - parent.n_items}
