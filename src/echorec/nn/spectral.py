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
