"""FMLP-Rec (Zhou et al., WWW 2022): learnable frequency-domain filters instead of attention.

Per layer: x = LN(x + drop(irFFT(rFFT(x) * W))), then the 4x GELU feed-forward (residual, LN).
Defaults from the official code (Woeee/FMLP-Rec) and BSARec's re-implementation: hidden 64,
2 layers, dropout 0.5, max_len 50. As in that code, sequences are left-padded to max_len, positions
are learned over the padded window and padding is not zeroed before the FFT.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from echorec.fields import setting
from echorec.models.base import WindowEmbedding
from echorec.nn.dropout import Dropout
from echorec.nn.ffn import FFNResidual
from echorec.nn.spectral import SpectralFilter
from echorec.registry import register


@dataclass
class FMLPRecConfig:
    hidden: int = setting(64, "width of the item embedding and of every layer", low=1)
    layers: int = setting(2, "filter blocks", low=1)
    dropout: float = setting(0.5, "dropout on hidden states (the official code's hidden_dropout_prob)", low=0, high=1,
                             high_open=True)


class FilterBlock(nn.Module):
    def __init__(self, max_len, hidden, dropout):
        super().__init__()
        self.filter = SpectralFilter(max_len, hidden)
        self.drop = Dropout(dropout)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn = FFNResidual(hidden, 4 * hidden, dropout, inner_dropout=False)

    def forward(self, x):
        return self.ffn(self.ln(x + self.drop(self.filter(x))))


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
