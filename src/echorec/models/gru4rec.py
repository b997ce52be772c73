"""GRU4Rec (Hidasi et al., ICLR 2016) as in RecBole 1.2.1: embedding -> dropout -> GRU -> Linear.

Defaults are RecBole's: embedding 64, GRU hidden 128, 1 layer, dropout 0.3, CE over all items.
The GRU has no biases (as in RecBole), so left padding (zero embeddings) keeps the state exactly 0:
outputs do not depend on how much padding a batch needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from echorec.models.base import SequentialRecommender
from echorec.nn.dropout import Dropout
from echorec.registry import register


@dataclass
class GRU4RecConfig:
    hidden: int = 64  # embedding size (RecBole: embedding_size 64)
    gru_hidden: int = 128  # RecBole: hidden_size 128
    layers: int = 1
    dropout: float = 0.3  # RecBole: dropout_prob 0.3 (on embeddings)


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
        with __import__("torch").no_grad():
            self.item_emb.weight[0].zero_()
        for name, p in self.gru.named_parameters():
            nn.init.xavier_uniform_(p)

    def encode(self, seq):
        seq = seq[:, -self.max_len:]
        out, _ = self.gru(self.drop(self.item_emb(seq)))  # (B, L, gru_hidden)
        return self.dense(out)
