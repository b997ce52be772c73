"""Reload a run folder: rebuild the model from config.json and its weights from model.safetensors."""

from __future__ import annotations

import os

import torch

from echorec.config import RunConfig, run_config_from_dict
from echorec.errors import EchorecError
from echorec.registry import build_model
from echorec.train.checkpoint import load_weights, read_json


def load_model(run_dir: str, device="cpu") -> tuple[RunConfig, torch.nn.Module, dict]:
    if not os.path.isdir(run_dir):
        raise EchorecError(f"{run_dir}: no such run folder")
    cfg_path = os.path.join(run_dir, "config.json")
    raw = read_json(cfg_path)
    rc = run_config_from_dict(raw, where=cfg_path)
    meta = raw.get("meta", {})
    if "n_items" not in meta:
        raise EchorecError(f"{cfg_path}: missing meta.n_items")
    model = build_model(rc.model, int(meta["n_items"]), rc.model_cfg, max_len=rc.data.max_len)
    wpath = os.path.join(run_dir, "model.safetensors")
    state = load_weights(wpath)
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise EchorecError(f"{wpath}: weights do not fit {rc.model} (missing {sorted(missing)[:3]}, "
                           f"unexpected {sorted(unexpected)[:3]})")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise EchorecError(f"{wpath}: weights do not fit the model in config.json ({str(e).splitlines()[-1]})") from None
    return rc, model.to(device).eval(), meta


def evaluate_run(run_dir: str, which: str = "test") -> tuple[dict, dict | None]:
    from echorec.eval.evaluate import evaluate
    from echorec.train.loop import load_data, resolve_device

    rc, model, meta = load_model(run_dir)
    data, split = load_data(rc)
    if split.n_items != int(meta["n_items"]):
        raise EchorecError(f"{run_dir}: the data now has {split.n_items} items, the run was trained on {meta['n_items']}")
    device = resolve_device(rc.train.device)
    model.to(device)
    e = rc.eval
    m = evaluate(model, split, which, rc.data.max_len, e.eval_batch_size, e.ks, e.exclude_history, e.sampled, device,
                        item_chunk=e.item_chunk)
    mpath = os.path.join(run_dir, "metrics.json")
    saved = read_json(mpath).get(which) if os.path.exists(mpath) else None
    return m, saved
