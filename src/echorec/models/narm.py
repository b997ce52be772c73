"""NARM (Li et al., CIKM 2017) as in RecBole 1.2.1: a GRU encoder with a global (last state) and a
local (attention over all states) representation, concatenated and projected.

Defaults are RecBole's: embedding 64, GRU hidden 128, 1 layer, dropout 0.25 (embeddings) and 0.5
(on the concatenated representation). `encode` gives the representation at every position t, with
attention over positions <= t only (so the model is causal); `encode_last` does the cheap last-only
computation used for training and ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from echorec.fields import setting
from echorec.models.base import SequentialRecommender
from echorec.nn.dropout import Dropout
from echorec.registry import register


@dataclass
class NARMConfig:
    hidden: int = setting(64, "item embedding size", low=1)
    gru_hidden: int = setting(128, "GRU state size", low=1)
    layers: int = setting(1, "GRU layers", low=1)
    emb_dropout: float = setting(0.25, "dropout on the embeddings", low=0, high=1, high_open=True)
    ct_dropout: float = setting(0.5, "dropout on the concatenated representation", low=0, high=1, high_open=True)


@register("narm")
class NARM(SequentialRecommender):
    Config = NARMConfig
    causal = True
    description = "NARM (Li et al. 2017): GRU with global + local attention encoder"

    def __init__(self, n_items: int, max_len: int, cfg: NARMConfig):
        super().__init__(n_items, max_len, cfg.hidden)
        self.cfg = cfg
        H = cfg.gru_hidden
        self.emb_drop, self.ct_drop = Dropout(cfg.emb_dropout), Dropout(cfg.ct_dropout)
        self.gru = nn.GRU(cfg.hidden, H, cfg.layers, bias=False, batch_first=True)
        self.a1, self.a2 = nn.Linear(H, H, bias=False), nn.Linear(H, H, bias=False)
        self.v = nn.Linear(H, 1, bias=False)
        self.b = nn.Linear(2 * H, cfg.hidden, bias=False)
        for m in self.modules():  # RecBole's NARM init: xavier_normal on Embedding and Linear
            if isinstance(m, (nn.Embedding, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def _states(self, seq):
        seq = seq[:, -self.max_len:]
        out, _ = self.gru(self.emb_drop(self.item_emb(seq)))  # (B, L, H)
        return out, (seq > 0).to(out.dtype)

    def encode_last(self, seq):
        out, mask = self._states(seq)
        ht = out[:, -1]  # (B, H) global representation
        alpha = self.v(torch.sigmoid(self.a1(out) + self.a2(ht)[:, None]) * mask[..., None])  # (B, L, 1)
        local = (alpha * out).sum(1)  # (B, H)
        return self.b(self.ct_drop(torch.cat([local, ht], dim=-1)))

    def encode(self, seq):
        out, mask = self._states(seq)
        L = out.shape[1]
        q1 = self.a1(out)  # (B, L, H) keys, one per position s
        q2 = self.a2(out)  # (B, L, H) queries, one per position t
        causal = torch.ones(L, L, dtype=out.dtype, device=out.device).tril()  # s <= t
        # alpha[b, t, s] = v . sigmoid(q1[b, s] + q2[b, t]), kept for real s <= t: (B, L, L)
        alpha = self.v(torch.sigmoid(q1[:, None, :, :] + q2[:, :, None, :])).squeeze(-1)
        alpha = alpha * causal * mask[:, None, :]
        local = alpha @ out  # (B, L, H)
        return self.b(self.ct_drop(torch.cat([local, out], dim=-1)))
