"""Channel mixers used after the sequence mixers: the 4x GELU feed-forward and the GLU."""

from __future__ import annotations

import torch
from torch import nn

from echorec.nn.dropout import Dropout


class FFNResidual(nn.Module):
    """LN(x + drop(W2 drop(gelu(W1 x))))  (Mamba4Rec's FeedForward; inner = 4 * d by default)."""

    def __init__(self, d: int, inner: int, dropout: float, eps: float = 1e-12, inner_dropout: bool = True):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d, inner), nn.Linear(inner, d)
        self.act = nn.GELU()
        self.drop = Dropout(dropout)
        self.ln = nn.LayerNorm(d, eps=eps)
        self.inner_dropout = inner_dropout  # Mamba4Rec drops after the activation too; FMLP-Rec/BSARec do not

    def forward(self, x):
        h = self.act(self.w1(x))
        if self.inner_dropout:
            h = self.drop(h)
        return self.ln(x + self.drop(self.w2(h)))


class GLUResidual(nn.Module):
    """Linear(d -> 2d), value * sigmoid(gate), Linear(d -> d), residual, LayerNorm.

    dropout_after_residual=True is EchoMamba4Rec's authors' order, LN(drop(out + x)); False is the usual
    LN(x + drop(out)).
    """

    def __init__(self, d: int, dropout: float, eps: float = 1e-12, dropout_after_residual: bool = False):
        super().__init__()
        self.proj = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.drop = Dropout(dropout)
        self.ln = nn.LayerNorm(d, eps=eps)
        self.dropout_after_residual = dropout_after_residual

    def forward(self, x):
        value, gate = self.proj(x).chunk(2, dim=-1)
        h = self.out(value * torch.sigmoid(gate))
        if self.dropout_after_residual:
            return self.ln(self.drop(h + x))
        return self.ln(x + self.drop(h))
