"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Settings follow RecBole 1.2.1's SASRec defaults (the reference we validate against): hidden 64,
2 layers, 2 heads, inner 256, GELU, dropout 0.5 on hidden states and attention, LayerNorm eps 1e-12,
N(0, 0.02) init, CE over all items with tied embeddings. One deliberate difference: positions are
counted back from the most recent item (the last item always has position 0), so a sequence's
output does not depend on how much left padding its batch needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from echorec.fields import setting
from echorec.models.base import SequentialRecommender, check_heads
from echorec.nn.attention import TransformerBlock, attention_mask
from echorec.nn.dropout import Dropout
from echorec.registry import register


@dataclass
class SASRecConfig:
    hidden: int = setting(64, "width of the item embedding and of every layer", low=1)
    layers: int = setting(2, "transformer blocks", low=1)
    heads: int = setting(2, "attention heads (must divide --hidden)", low=1)
    inner: int = setting(256, "FFN width (RecBole: inner_size)", low=1)
    dropout: float = setting(0.5, "dropout on hidden states (RecBole: hidden_dropout_prob)", low=0, high=1, high_open=True)
    attn_dropout: float = setting(0.5, "dropout on attention weights (RecBole: attn_dropout_prob)", low=0, high=1, high_open=True)
    act: str = setting("gelu", "FFN activation", choices=("gelu", "relu"))
    layer_norm_eps: float = setting(1e-12, "LayerNorm epsilon", low=0, low_open=True)

    def check(self) -> None:
        check_heads(self.hidden, self.heads)


@register("sasrec")
class SASRec(SequentialRecommender):
    Config = SASRecConfig
    causal = True
    description = "SASRec (Kang & McAuley 2018): causal self-attention, learned positions"

    def __init__(self, n_items: int, max_len: int, cfg: SASRecConfig):
        super().__init__(n_items, max_len, cfg.hidden)
        self.cfg = cfg
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.ln = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.hidden, cfg.heads, cfg.inner, cfg.dropout, cfg.attn_dropout, cfg.act,
                             cfg.layer_norm_eps)
            for _ in range(cfg.layers)
        )
        self.init_weights()

    def _embed(self, seq):
        L = seq.shape[1]
        pos = torch.arange(L - 1, -1, -1, device=seq.device)  # distance from the most recent item
        x = self.item_emb(seq) + self.pos_emb(pos)[None]  # (B, L, D)
        return self.drop(self.ln(x))

    def _run(self, seq, last_only: bool):
        seq = seq[:, -self.max_len:]
        mask = attention_mask(seq > 0, causal=True)
        x = self._embed(seq)
        for i, blk in enumerate(self.blocks):
            x = blk(x, mask, causal=True, last_only=last_only and i == len(self.blocks) - 1)
        return x

    def encode(self, seq):
        return self._run(seq, last_only=False)

    # Streaming uses the base class's window re-encode, not a KV cache: positions count back from the most
    # recent item, so each new event changes the input of every earlier token and no cached key stays valid.

    def encode_last(self, seq):
        # The last block needs only the last query: skip attention rows and FFN for L - 1 positions.
        return self._run(seq, last_only=True)[:, -1]
