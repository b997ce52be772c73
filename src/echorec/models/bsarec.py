"""BSARec (Shin et al., AAAI 2024): "beyond self-attention" — each layer mixes a frequency-based
inductive bias with causal self-attention, alpha * freq(x) + (1 - alpha) * attn(x), then an FFN.

freq(x): keep the lowest c//2 + 1 rFFT bins, add back the high frequencies scaled by a learned
beta^2 (per channel), dropout, residual, LN. attn(x): post-LN multi-head self-attention with the
causal + padding mask. Defaults from the official code and its LastFM log (yehjin-shin/BSARec):
hidden 64, 2 layers, 1 head, dropout 0.5 (hidden and attention), c 3, alpha 0.9, max_len 50; as
there, sequences are left-padded to max_len with positions learned over the window.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from echorec.fields import setting
from echorec.models.base import WindowEmbedding, check_heads
from echorec.nn.attention import MultiHeadAttention, attention_mask
from echorec.nn.dropout import Dropout
from echorec.nn.ffn import FFNResidual
from echorec.nn.spectral import FrequencyMix
from echorec.registry import register


@dataclass
class BSARecConfig:
    hidden: int = setting(64, "width of the item embedding and of every layer", low=1)
    layers: int = setting(2, "BSARec blocks", low=1)
    heads: int = setting(1, "attention heads (must divide --hidden)", low=1)
    dropout: float = setting(0.5, "dropout on hidden states", low=0, high=1, high_open=True)
    attn_dropout: float = setting(0.5, "dropout on attention weights", low=0, high=1, high_open=True)
    c: int = setting(3, "low-pass cut: c // 2 + 1 frequency bins are kept", low=1)
    alpha: float = setting(0.9, "weight of the frequency branch against attention", low=0, high=1)

    def check(self) -> None:
        check_heads(self.hidden, self.heads)


class BSARecBlock(nn.Module):
    def __init__(self, cfg: BSARecConfig):
        super().__init__()
        self.freq = FrequencyMix(cfg.hidden, cfg.c, cfg.dropout)
        self.attn = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.attn_dropout)
        self.attn_drop = Dropout(cfg.dropout)
        self.attn_ln = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.ffn = FFNResidual(cfg.hidden, 4 * cfg.hidden, cfg.dropout, inner_dropout=False)
        self.alpha = cfg.alpha

    def forward(self, x, mask):
        gsp = self.attn_ln(x + self.attn_drop(self.attn(x, mask, causal=True)))
        return self.ffn(self.alpha * self.freq(x) + (1 - self.alpha) * gsp)


@register("bsarec")
class BSARec(WindowEmbedding):
    Config = BSARecConfig
    causal = False  # the frequency branch mixes every position of the window
    description = "BSARec (Shin et al. 2024): frequency inductive bias mixed with self-attention"

    def __init__(self, n_items: int, max_len: int, cfg: BSARecConfig):
        super().__init__(n_items, max_len, cfg.hidden, cfg.dropout)
        self.cfg = cfg
        self.blocks = nn.ModuleList(BSARecBlock(cfg) for _ in range(cfg.layers))
        self.init_weights()

    def encode(self, seq):
        seq, x = self._window(seq)  # (B, max_len, D)
        mask = attention_mask(seq > 0, causal=True)
        for blk in self.blocks:
            x = blk(x, mask)
        return x
