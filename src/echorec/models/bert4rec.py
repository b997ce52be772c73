"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained with a cloze objective.

Training (its own `loss`, through the same trainer): each training sample's items plus its target
form a sequence; every real item is replaced by the [mask] token with probability `mask_ratio`, and
the last one (the target) always is, so training includes the next-item task used at inference.
Padding is never masked. CE over all items at the masked positions.
Prediction: [mask] is appended after the history (the oldest item drops out when the window is
full) and the output at that position scores all items.
Defaults are RecBole 1.2.1's: hidden 64, 2 layers, 2 heads, inner 256, dropout 0.2/0.2, mask ratio
0.2, GELU, an output head Linear -> GELU -> LayerNorm with a per-item bias, tied item embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from echorec.fields import setting
from echorec.models.base import FULL_CE, Objective, SequentialRecommender, check_heads
from echorec.nn.attention import TransformerBlock, attention_mask
from echorec.nn.dropout import Dropout
from echorec.registry import register


@dataclass
class BERT4RecConfig:
    hidden: int = setting(64, "width of the item embedding and of every layer", low=1)
    layers: int = setting(2, "transformer blocks", low=1)
    heads: int = setting(2, "attention heads (must divide --hidden)", low=1)
    inner: int = setting(256, "FFN width", low=1)
    dropout: float = setting(0.2, "dropout on hidden states", low=0, high=1, high_open=True)
    attn_dropout: float = setting(0.2, "dropout on attention weights", low=0, high=1, high_open=True)
    mask_ratio: float = setting(0.2, "share of real items replaced by [mask] in training", low=0, high=1)

    def check(self) -> None:
        check_heads(self.hidden, self.heads)


@register("bert4rec")
class BERT4Rec(SequentialRecommender):
    Config = BERT4RecConfig
    causal = False
    description = "BERT4Rec (Sun et al. 2019): bidirectional transformer, cloze ([mask]) training"

    def __init__(self, n_items: int, max_len: int, cfg: BERT4RecConfig):
        super().__init__(n_items, max_len, cfg.hidden)
        self.cfg = cfg
        self.mask_id = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, cfg.hidden, padding_idx=0)  # 0 pad, 1..n items, n+1 [mask]
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.ln = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.hidden, cfg.heads, cfg.inner, cfg.dropout, cfg.attn_dropout)
                                    for _ in range(cfg.layers))
        self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.LayerNorm(cfg.hidden, eps=1e-12))
        self.out_bias = nn.Parameter(torch.zeros(n_items))
        self.init_weights()

    def encode(self, seq):
        seq = seq[:, -self.max_len:]
        L = seq.shape[1]
        mask = attention_mask(seq > 0, causal=False)
        pos = torch.arange(L - 1, -1, -1, device=seq.device)  # distance from the last position
        x = self.drop(self.ln(self.item_emb(seq) + self.pos_emb(pos)[None]))  # (B, L, D)
        for blk in self.blocks:
            x = blk(x, mask, causal=False)
        return x

    def score(self, h):
        return self.head(h) @ self.item_emb.weight[1 : self.n_items + 1].t() + self.out_bias

    def score_into(self, h, out):
        torch.matmul(self.head(h), self.item_emb.weight[1 : self.n_items + 1].t(), out=out)
        return out.add_(self.out_bias)

    def score_items(self, h, lo, hi):
        return self.head(h) @ self.item_emb.weight[lo + 1 : hi + 1].t() + self.out_bias[lo:hi]

    def with_mask_appended(self, seq):
        col = torch.full_like(seq[:, :1], self.mask_id)
        return torch.cat([seq, col], dim=1)[:, -self.max_len:]  # (B, <= max_len)

    def encode_last(self, seq):
        return self.encode(self.with_mask_appended(seq))[:, -1]

    def cloze(self, seq, target):
        """(inputs with [mask]s, labels with 0 where nothing is predicted), both (B, L)."""
        full = torch.cat([seq, target[:, None]], dim=1)[:, -self.max_len:]  # (B, L)
        real = full > 0
        masked = (torch.rand(full.shape, device=full.device) < self.cfg.mask_ratio) & real
        masked[:, -1] = True  # the target is always predicted
        inputs = torch.where(masked, torch.full_like(full, self.mask_id), full)
        return inputs, torch.where(masked, full, 0)

    def loss(self, batch, objective: Objective = FULL_CE):
        if batch.target is None:
            raise ValueError("BERT4Rec trains on prefix samples (it is not causal)")
        inputs, labels = self.cloze(batch.seq, batch.target)
        h = self.encode(inputs)
        sel = labels > 0
        return F.cross_entropy(self.score(h[sel]).float(), labels[sel] - 1, label_smoothing=objective.label_smoothing)
