"""Where a run computes: the device named by `--device` and the autocast precision of `--amp`."""

from __future__ import annotations

import os

import torch

from echorec.errors import EchorecError
from echorec.sysinfo import cpu_has_fast_bf16


def resolve_device(name: str) -> torch.device:
    """auto: this process's GPU (LOCAL_RANK under torchrun) when CUDA is there, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EchorecError(f"--device {name} given but no CUDA GPU is available (use --device cpu)")
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
