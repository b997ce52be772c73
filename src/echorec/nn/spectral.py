"""Learnable spectral filter (FMLP-Rec, EchoMamba4Rec): rFFT over the sequence, times a learned
complex weight per (frequency, channel), inverse rFFT back to max_len positions.

The transform length is always `max_len`: a batch narrower than that is left-padded back to it,
so a sequence's output does not depend on the width its batch happened to be cropped to. Padding
positions are zeroed before the FFT, so padding contributes nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpectralFilter(nn.Module):
    def __init__(self, max_len: int, hidden: int, std: float = 0.02):
        super().__init__()
        self.max_len = max_len
        # (freq, channel, re/im), N(0, std^2) as in the authors' code
        self.weight = nn.Parameter(torch.randn(max_len // 2 + 1, hidden, 2) * std)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, W, D) left-padded, W <= max_len -> (B, W, D)."""
        B, W, D = x.shape
        dtype = x.dtype
        x = x.float()
        if mask is not None:
            x = x * mask[..., None]
        if W < self.max_len:
            x = F.pad(x, (0, 0, self.max_len - W, 0))  # (B, max_len, D), zeros on the left
        spec = torch.fft.rfft(x, dim=1, norm="ortho")  # (B, max_len//2+1, D) complex
        spec = spec * torch.view_as_complex(self.weight.float())
        y = torch.fft.irfft(spec, n=self.max_len, dim=1, norm="ortho")  # (B, max_len, D)
        return y[:, self.max_len - W:].to(dtype)


class FrequencyMix(nn.Module):
    """BSARec's frequency layer: keep the lowest c//2 + 1 rFFT bins (low pass), add back the rest
    (x - low) scaled by a learned beta^2 per channel, then dropout, residual and LayerNorm."""

    def __init__(self, hidden: int, c: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        from echorec.nn.dropout import Dropout

        self.keep = c // 2 + 1
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, hidden))
        self.drop = Dropout(dropout)
        self.ln = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x):
        L = x.shape[1]
        spec = torch.fft.rfft(x.float(), dim=1, norm="ortho")  # (B, L//2+1, D)
        # The high bins zeroed by a mask rather than an in-place slice assignment, which ONNX export cannot
        # trace on complex tensors; the kept bins are multiplied by exactly 1.
        keep = torch.arange(spec.shape[1], device=spec.device) < self.keep
        spec = spec * keep[None, :, None]
        low = torch.fft.irfft(spec, n=L, dim=1, norm="ortho").to(x.dtype)
        mixed = low + self.sqrt_beta ** 2 * (x - low)
        return self.ln(x + self.drop(mixed))
