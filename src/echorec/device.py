"""Where a run computes: the device named by `--device` and the autocast precision of `--amp`."""

from __future__ import annotations

import os

import torch

from echorec.errors import EchorecError
from echorec.sysinfo import cpu_has_fast_bf16


def resolve_device(name: str) -> torch.device:
    """auto: this process's GPU when CUDA is there, else the CPU. `cuda` without an index is this process's
    GPU too: under torchrun, LOCAL_RANK's, so every rank of a machine uses its own."""
    asked = name
    if name == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if name in ("auto", "cuda"):
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise EchorecError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EchorecError(f"--device {asked} given but no CUDA GPU is available (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EchorecError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `--amp` on `device`, or None for full precision."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp != "auto":
        raise EchorecError(f"--amp {amp!r}: use auto, off or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_fast_bf16() else None
