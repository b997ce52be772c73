"""FMLP-Rec (Zhou et al., WWW 2022): learnable frequency-domain filters instead of attention.

Per layer: x = LN(x + drop(irFFT(rFFT(x) * W))), then the 4x GELU feed-forward (residual, LN).
Defaults from the official code (Woeee/FMLP-Rec) and BSARec's re-implementation: hidden 64,
2 layers, dropout 0.5, max_len 50. As in that code, sequences are left-padded to max_len, positions
are learned over the padded window and padding is not zeroed before the FFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from echorec.models.base import SequentialRecommender
from echorec.nn.dropout import Dropout
from echorec.nn.ffn import FFNResidual
from echorec.nn.spectral import SpectralFilter
from echorec.registry import register


@dataclass
class FMLPRecConfig:
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.5  # hidden_dropout_prob in the official code


class FilterBlock(nn.Module):
    def __init__(self, max_len, hidden, dropout):
        super().__init__()
        self.filter = SpectralFilter(max_len, hidden)
        self.drop = Dropout(dropout)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn = FFNResidual(hidden, 4 * hidden, dropout, inner_dropout=False)

    def forward(self, x):
        return self.ffn(self.ln(x + self.drop(self.filter(x))))


def pad_to(seq: torch.Tensor, max_len: int) -> torch.Tensor:
    """Left-pad (or crop) (B, W) ids to (B, max_len): models whose output depends on the window."""
    seq = seq[:, -max_len:]
    return F.pad(seq, (max_len - seq.shape[1], 0)) if seq.shape[1] < max_len else seq


class WindowEmbedding(SequentialRecommender):
    """FMLP-Rec/BSARec input: ids left-padded to the full max_len window, item + learned position
    embedding over that window, LayerNorm, dropout (as in their official code)."""

    def __init__(self, n_items: int, max_len: int, hidden: int, dropout: float):
        super().__init__(n_items, max_len, hidden)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = Dropout(dropout)

    def _window(self, seq):
        """(B, W) ids -> (ids (B, max_len), x (B, max_len, D))."""
        seq = pad_to(seq, self.max_len)
        return seq, self.drop(self.ln(self.item_emb(seq) + self.pos_emb.weight[None]))


@register("fmlprec")
class FMLPRec(WindowEmbedding):
    Config = FMLPRecConfig
    causal = False  # the FFT mixes every position of the window
    description = "FMLP-Rec (Zhou et al. 2022): learnable frequency filters + FFN, no attention"

    def __init__(self, n_items: int, max_len: int, cfg: FMLPRecConfig):
        super().__init__(n_items, max_len, cfg.hidden, cfg.dropout)
        self.cfg = cfg
        self.blocks = nn.ModuleList(FilterBlock(max_len, cfg.hidden, cfg.dropout) for _ in range(cfg.layers))
        self.init_weights()

    def encode(self, seq):
        _, x = self._window(seq)  # (B, max_len, D)
        for blk in self.blocks:
            x = blk(x)
        return x
