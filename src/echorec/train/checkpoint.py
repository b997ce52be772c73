"""Atomic writes of run-folder files and safe (safetensors-only) weight loading.

Every file is written to a temporary name in the same folder, fsynced, then renamed over the old
one, so a crash mid-save leaves the previous file intact. Weights never go through pickle.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

from echorec.errors import EchorecError


def _atomic(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EchorecError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise EchorecError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


# -- training checkpoints (exact resume) ------------------------------------------------------------

def save_checkpoint(path: str, model, optimizer, loop: dict, config: dict, ema=None) -> None:
    """Model, Adam state, RNG state, the weight average (if any) and the loop's position in one atomically
    written file.

    Tensors go in safetensors; the loop position, optimizer hyper-parameters and the run config in its
    string metadata (JSON). Nothing is pickled."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema/{k}": v for k, v in ema.state_dict().items()})
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for name, v in st.items():
            tensors[f"opt/{idx}/{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = st
    meta = {"loop": json.dumps(loop), "param_groups": json.dumps(opt["param_groups"]), "config": json.dumps(config)}
    save_weights(path, tensors, metadata=meta)


def checkpoint_loop(path: str) -> dict | None:
    """The loop position stored in a training checkpoint (metadata only, no tensors read); None if absent."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return json.loads((f.metadata() or {})["loop"])
    except Exception:
        return None  # missing or unreadable: load_checkpoint gives the precise error


def load_checkpoint(path: str) -> dict:
    from safetensors import safe_open

    state = load_weights(path)  # validates the file; a truncated one is a clear error
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    try:
        loop, groups, config = (json.loads(meta[k]) for k in ("loop", "param_groups", "config"))
    except (KeyError, json.JSONDecodeError):
        raise EchorecError(f"{path}: not an echorec training checkpoint (metadata missing)") from None
    model = {k[len("model/"):]: v for k, v in state.items() if k.startswith("model/")}
    ema = {k[len("ema/"):]: v for k, v in state.items() if k.startswith("ema/")}
    opt_state: dict = {}
    for k, v in state.items():
        if k.startswith("opt/"):
            _, idx, name = k.split("/", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    rng = {k[len("rng/"):]: v for k, v in state.items() if k.startswith("rng/")}
    return {"model": model, "optimizer": {"state": opt_state, "param_groups": groups}, "rng": rng, "loop": loop,
            "config": config, "ema": ema or None}
