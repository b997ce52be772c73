"""Training checkpoints for exact resume: model, Adam state, RNG, the weight average and the loop's
position in one safetensors file of the run folder, written atomically. Nothing is pickled.
"""

from __future__ import annotations

import json

import torch

from echorec.errors import EchorecError
from echorec.runfolder import load_weights, save_weights

# -- training checkpoints (exact resume) ------------------------------------------------------------

def write_checkpoint(path: str, model, optimizer, loop: dict, config: dict, ema=None) -> None:
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
        raise EchorecError(f"{path}: not an echorec training checkpoint (metadata missing or damaged)") from None
    model = {k[len("model/"):]: v for k, v in state.items() if k.startswith("model/")}
    ema = {k[len("ema/"):]: v for k, v in state.items() if k.startswith("ema/")}
    opt_state: dict = {}
    for k, v in state.items():
        if k.startswith("opt/"):
            try:
                _, idx, name = k.split("/", 2)
                opt_state.setdefault(int(idx), {})[name] = v
            except ValueError:
                raise EchorecError(f"{path}: tensor {k!r} is not an optimizer state of echorec's") from None
    rng = {k[len("rng/"):]: v for k, v in state.items() if k.startswith("rng/")}
    return {"model": model, "optimizer": {"state": opt_state, "param_groups": groups}, "rng": rng, "loop": loop,
            "config": config, "ema": ema or None}
