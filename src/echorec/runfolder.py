"""The run folder: the one module that knows its files, writes them atomically, reads them back and
rebuilds the model.

    config.json             the RunConfig, plus `meta` (n_items, n_users, source, versions, machine)
    model.safetensors       the selected weights (best valid epoch)
    metrics.json            valid/test metrics, best epoch, timings
    history.csv             one row per epoch
    checkpoint.safetensors  model, optimizer, RNG and loop position for exact resume (train/checkpoint.py)
    items.tsv, users.tsv    internal id -> raw id (and each item's count, for the popularity fallback)

Training writes it; evaluation, serving, studies and the CLI read it through `RunFolder`, and none
of them needs the others to do so. Weights never go through pickle (safetensors only).
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import torch

from echorec.config import RunConfig, run_config_from_dict
from echorec.errors import EchorecError
from echorec.fsio import atomic_write_bytes, atomic_write_text, read_json, write_json
from echorec.models import build_model

CONFIG, WEIGHTS, METRICS, HISTORY = "config.json", "model.safetensors", "metrics.json", "history.csv"
CHECKPOINT, ITEMS, USERS = "checkpoint.safetensors", "items.tsv", "users.tsv"
# The files whose presence means the folder holds a run (a new run refuses to write over them).
RUN_FILES = (CONFIG, WEIGHTS, METRICS, HISTORY, CHECKPOINT)


def save_weights(path: str, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_weights(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not os.path.exists(path):
        raise EchorecError(f"{path}: no such file")
    with open(path, "rb") as f:
        blob = f.read()
    try:
        return load(blob)
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise EchorecError(f"{path}: not a valid safetensors file ({e}); it may be truncated or tampered with") from None


class RunFolder:
    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def has(self, name: str) -> bool:
        return os.path.exists(self.file(name))

    def existing(self) -> list[str]:
        """The run files already in the folder."""
        return [f for f in RUN_FILES if self.has(f)]

    # -- config --------------------------------------------------------------------------------------
    def read_config_dict(self) -> dict:
        return read_json(self.file(CONFIG))

    def read_config(self) -> tuple[RunConfig, dict]:
        """(RunConfig, meta) from config.json."""
        if not os.path.isdir(self.path):
            raise EchorecError(f"{self.path}: no such run folder")
        raw = self.read_config_dict()
        rc = run_config_from_dict(raw, where=self.file(CONFIG))
        meta = raw.get("meta", {})
        if not isinstance(meta, dict) or "n_items" not in meta:
            raise EchorecError(f"{self.file(CONFIG)}: missing meta.n_items")
        return rc, meta

    def write_config(self, cfg: dict) -> None:
        write_json(self.file(CONFIG), cfg)

    # -- weights and the model -------------------------------------------------------------------------
    def write_weights(self, state: dict[str, torch.Tensor]) -> None:
        save_weights(self.file(WEIGHTS), state)

    def read_weights(self) -> dict[str, torch.Tensor]:
        return load_weights(self.file(WEIGHTS))

    def load_model(self, device="cpu") -> tuple[RunConfig, torch.nn.Module, dict]:
        """(RunConfig, the model with its selected weights in eval mode on `device`, meta)."""
        rc, meta = self.read_config()
        model = build_model(rc.model, int(meta["n_items"]), rc.model_cfg, max_len=rc.data.max_len)
        wpath = self.file(WEIGHTS)
        state = self.read_weights()
        missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
        if missing or unexpected:
            raise EchorecError(f"{wpath}: weights do not fit {rc.model} (missing {sorted(missing)[:3]}, "
                               f"unexpected {sorted(unexpected)[:3]})")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise EchorecError(f"{wpath}: weights do not fit the model in config.json ({str(e).splitlines()[-1]})") from None
        return rc, model.to(device).eval(), meta

    # -- metrics and history ---------------------------------------------------------------------------
    def write_metrics(self, metrics: dict) -> None:
        write_json(self.file(METRICS), metrics)

    def read_metrics(self) -> dict | None:
        """metrics.json, or None when the run has not finished."""
        return read_json(self.file(METRICS)) if self.has(METRICS) else None

    def write_history(self, history: list[dict]) -> None:
        buf = io.StringIO()
        # Union of the rows' keys in first-seen order: a run resumed from an older checkpoint has rows
        # without the columns added since (e.g. lr).
        w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
        w.writeheader()
        w.writerows(history)
        atomic_write_text(self.file(HISTORY), buf.getvalue())

    def read_history(self) -> list[dict]:
        with open(self.file(HISTORY), encoding="utf-8") as f:
            return list(csv.DictReader(f))

    # -- id maps ---------------------------------------------------------------------------------------
    def write_id_maps(self, data) -> None:
        """items.tsv (internal id, raw id, count) and users.tsv from a SeqData."""
        # The count column (interactions per item in the data) backs the popularity fallback when serving.
        counts = np.bincount(data.items, minlength=data.n_items + 1)
        atomic_write_text(self.file(ITEMS), "internal_id\traw_id\tcount\n" + "".join(
            f"{i + 1}\t{r}\t{counts[i + 1]}\n" for i, r in enumerate(data.item_raw)))
        atomic_write_text(self.file(USERS),
                          "index\traw_id\n" + "".join(f"{i}\t{r}\n" for i, r in enumerate(data.user_raw)))

    def read_items(self) -> tuple[list[str], np.ndarray]:
        """(raw id of internal id i at [i - 1], interaction count per item)."""
        path = self.file(ITEMS)
        if not os.path.exists(path):
            raise EchorecError(f"{path}: no such file (the run folder has no item map)")
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return [r["raw_id"] for r in rows], np.array([int(r.get("count") or 0) for r in rows], dtype=np.int64)
