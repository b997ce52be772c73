"""Mamba4Rec (Liu et al. 2024): a causal selective-SSM recommender.

Per layer: Mamba -> dropout -> residual -> LayerNorm -> 4x GELU FFN (residual, LayerNorm). The
authors' code drops the residual around Mamba when there is a single layer; `single_layer_residual`
restores it. Their code also re-initialises every Linear and Embedding, Mamba's own included, with
N(0, 0.02) and zero bias (`init="authors"`, the default), which replaces Mamba's dt-bias init;
`init="mamba"` keeps Mamba's own initialisation of its layers.
Defaults are the authors': hidden 64, 1 layer, d_state 32, d_conv 4, expand 2, dropout 0.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from echorec.fields import setting
from echorec.models.base import INITS, BlockStack, MambaSettings, init_like_authors
from echorec.nn.dropout import Dropout
from echorec.nn.ffn import FFNResidual
from echorec.nn.mamba import Mamba
from echorec.nn.ssm import SCAN_BACKENDS
from echorec.registry import register


@dataclass
class Mamba4RecConfig(MambaSettings):
    inner_mult: int = setting(4, "FFN width = inner_mult * hidden", low=1)
    single_layer_residual: bool = setting(False, "keep the residual around Mamba with one layer (the authors' "
                                          "code skips it)")
    init: str = setting("authors", "authors: N(0, 0.02) on every Linear/Embedding | mamba: keep Mamba's own init",
                        choices=INITS)
    backend: str = setting("auto", "selective-scan backend (auto: the fastest one for the device the model is on, "
                           "chosen when it is built or moved)", choices=SCAN_BACKENDS)


class MambaLayer(nn.Module):
    def __init__(self, cfg: Mamba4RecConfig, residual: bool):
        super().__init__()
        self.mamba = Mamba(cfg.hidden, cfg.d_state, cfg.d_conv, cfg.expand, backend=cfg.backend)
        self.drop = Dropout(cfg.dropout)
        self.ln = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.ffn = FFNResidual(cfg.hidden, cfg.inner_mult * cfg.hidden, cfg.dropout)
        self.residual = residual

    def forward(self, x, mask):
        h = self.drop(self.mamba(x, mask))
        h = self.ln(h + x if self.residual else h)
        return self.ffn(h)

    def forward_last(self, x, mask):
        """(B, L, D) -> (B, D) at the last position: after the Mamba everything is pointwise."""
        h = self.drop(self.mamba(x, mask)[:, -1])
        h = self.ln(h + x[:, -1] if self.residual else h)
        return self.ffn(h)


@register("mamba4rec")
class Mamba4Rec(BlockStack):
    Config = Mamba4RecConfig
    causal = True
    description = "Mamba4Rec (Liu et al. 2024): selective SSM (Mamba) layers + FFN"

    def __init__(self, n_items: int, max_len: int, cfg: Mamba4RecConfig):
        super().__init__(n_items, max_len, cfg.hidden)
        self.cfg = cfg
        self.drop = Dropout(cfg.dropout)
        self.ln = nn.LayerNorm(cfg.hidden, eps=1e-12)
        residual = cfg.layers > 1 or cfg.single_layer_residual
        self.blocks = nn.ModuleList(MambaLayer(cfg, residual) for _ in range(cfg.layers))
        init_like_authors(self, cfg.init)

    def _embed(self, seq):
        seq = seq[:, -self.max_len:]
        return self.ln(self.drop(self.item_emb(seq))), seq > 0  # (B, L, D); the authors drop out before LN

    # Streaming: each layer's Mamba keeps its recurrence (conv tail + SSM state); all else is pointwise.
    incremental = True

    def init_state(self, batch: int):
        return [layer.mamba.allocate_state(batch, self.item_emb.weight.device) for layer in self.blocks]

    @torch.no_grad()
    def step(self, state, item):
        x = self.ln(self.item_emb(item))  # (B, D); dropout is the identity in eval
        new = []
        for layer, st in zip(self.blocks, state):
            h, st = layer.mamba.step(x, st)
            h = layer.ln(h + x if layer.residual else h)
            x = layer.ffn(h)
            new.append(st)
        return new, self.score(x)


