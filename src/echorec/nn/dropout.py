"""Dropout with a fast mask generator for the CPU.

On the CPU, torch's `bernoulli_` (behind nn.Dropout) draws each element from mt19937, a large share of a
small model's training step (benchmarks/results/kernel_choices.md). Here the mask comes from numpy's PCG64
byte stream, far cheaper per bit: 16 random bits per element, kept when >= round(p * 2^16), so the drop rate is
p to within 2^-16. Each call seeds its PCG64 from torch's generator, so `torch.manual_seed` still
fixes every mask. On CUDA, torch's own (Philox) dropout is already fast and is used as is; so it is
under torch.compile, which generates its own masks in the fused kernels (numpy would be traced, not run).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def keep_mask(shape, p: float, device=None) -> torch.Tensor:
    """Bool tensor of `shape`, True with probability 1 - p."""
    n = 1
    for s in shape:
        n *= s
    seed = int(torch.randint(0, 2**62, (1,)).item())  # from torch's generator: manual_seed governs it
    bits = np.random.Generator(np.random.PCG64(seed)).integers(0, 1 << 16, size=n, dtype=np.uint16)
    threshold = int(round(p * 65536))
    return torch.from_numpy(bits >= threshold).reshape(shape)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, True)
    if p >= 1.0:
        return x * 0.0
    scale = keep_mask(x.shape, p).to(x.dtype).mul_(1.0 / (1.0 - p))  # 0 or 1/(1-p); also the backward's factor
    return x * scale


class Dropout(nn.Module):
    """Drop-in for nn.Dropout (same semantics: zero with prob. p, scale kept values by 1/(1-p))."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
