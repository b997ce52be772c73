"""GRU4Rec (Hidasi et al., ICLR 2016) as in RecBole 1.2.1: embedding -> dropout -> GRU -> Linear.

Defaults are RecBole's: embedding 64, GRU hidden 128, 1 layer, dropout 0.3, CE over all items.
The GRU has no biases (as in RecBole), so left padding (zero embeddings) keeps the state exactly 0:
outputs do not depend on how much padding a batch needed.
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
class GRU4RecConfig:
    hidden: int = setting(64, "item embedding size (RecBole: embedding_size)", low=1)
    gru_hidden: int = setting(128, "GRU state size (RecBole: hidden_size)", low=1)
    layers: int = setting(1, "GRU layers", low=1)
    dropout: float = setting(0.3, "dropout on the embeddings (RecBole: dropout_prob)", low=0, high=1, high_open=True)


@register("gru4rec")
class GRU4Rec(SequentialRecommender):
    Config = GRU4RecConfig
    causal = True
    description = "GRU4Rec (Hidasi et al. 2016): GRU over item embeddings"

    def __init__(self, n_items: int, max_len: int, cfg: GRU4RecConfig):
        super().__init__(n_items, max_len, cfg.hidden)
        self.cfg = cfg
        self.drop = Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.gru_hidden, cfg.layers, bias=False, batch_first=True)
        self.dense = nn.Linear(cfg.gru_hidden, cfg.hidden)
        nn.init.xavier_normal_(self.item_emb.weight)  # RecBole's init for GRU4Rec
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        for p in self.gru.parameters():
            nn.init.xavier_uniform_(p)

    def encode(self, seq):
        seq = seq[:, -self.max_len:]
        out, _ = self.gru(self.drop(self.item_emb(seq)))  # (B, L, gru_hidden)
        return self.dense(out)

    # Streaming: the GRU's hidden state is the whole history.
    incremental = True

    def init_state(self, batch: int):
        w = self.item_emb.weight
        return torch.zeros(self.cfg.layers, batch, self.cfg.gru_hidden, device=w.device, dtype=w.dtype)

    @torch.no_grad()
    def step(self, state, item):
        out, state = self.gru(self.drop(self.item_emb(item))[:, None], state)  # (B, 1, gru_hidden)
        return state, self.score(self.dense(out[:, 0]))
