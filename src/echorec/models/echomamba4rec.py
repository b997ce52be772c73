"""EchoMamba4Rec (Wang, He, Zhu 2024): spectral filter + bidirectional Mamba + GLU, per layer.

Per layer, on left-padded sequences (pads masked):
  1. x = LN(x + drop(SpectralFilter(x)))
  2. f = LN(drop(Mamba_f(x)) + x);  b = unreverse(LN(drop(Mamba_b(reverse(x))) + reverse(x)))
     x = combine(f, b)   (sum by default)
  3. x = GLU(x) with residual and LayerNorm
The user representation (the readout) scores every item through the tied item embedding:
  last   the last block's output at the last real position (column -1): the authors' model. There the
         backward branch has read one token (the pads before it are masked), so in a one-layer model
         the backward recurrence over the history never reaches the score.
  both   the forward branch's output at the last position and the backward branch's at the first real
         position (which has read the whole history, newest to oldest), joined by a learned projection
         of the two, then the block's GLU.
  mean   the last block's output averaged over the real positions.

Faithfulness options (the authors' code, for reproducing their numbers):
  reverse="padded"     the authors flip the right-padded batch, so their backward Mamba reads the
                       padding before the real tokens and its state depends on the padding length;
                       here that means the backward Mamba reads the pads unmasked. "real" (default)
                       reverses only the real tokens and masks the pads exactly.
  glu_dropout="authors" LN(drop(GLU(x) + x)) as in their code; "standard" is LN(x + drop(GLU(x))).
  init="authors"       N(0, 0.02) on every Linear/Embedding, Mamba's inner ones too (overrides Mamba's
                       dt-bias init); "mamba" keeps Mamba's own init inside the Mamba blocks.
Ablations: filter, backward, glu (glu|ffn|none), combine (sum|gated|concat),
share_direction_weights. Each changes only what it names.
Note: the authors' code nests its layer loop and so builds n_layers^2 blocks; here there are exactly
n_layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from echorec.errors import EchorecError
from echorec.fields import setting
from echorec.models.base import INITS, BlockStack, MambaSettings, init_like_authors
from echorec.nn.dropout import Dropout
from echorec.nn.ffn import FFNResidual, GLUResidual
from echorec.nn.mamba import Mamba
from echorec.nn.spectral import SpectralFilter
from echorec.nn.ssm import SCAN_BACKENDS
from echorec.registry import register


@dataclass
class EchoMamba4RecConfig(MambaSettings):
    position: bool = setting(False, "learned position embedding (off in the paper)")
    filter: bool = setting(True, "ablation: the learnable spectral filter")
    backward: bool = setting(True, "ablation: the backward Mamba branch")
    glu: str = setting("glu", "ablation: channel mixer (ffn: 4x GELU)", choices=("glu", "ffn", "none"))
    combine: str = setting("sum", "ablation: how the two directions meet (concat: concatenate then project)",
                           choices=("sum", "gated", "concat"))
    share_direction_weights: bool = setting(False, "ablation: one Mamba for both directions")
    reverse: str = setting("real", "real: reverse the real tokens only | padded: the authors' reversal of the "
                           "padded batch", choices=("real", "padded"))
    glu_dropout: str = setting("authors", "authors: LN(drop(out + x)) | standard: LN(x + drop(out))",
                               choices=("authors", "standard"))
    init: str = setting("authors", "authors: N(0, 0.02) on every Linear/Embedding | mamba: keep Mamba's own init",
                        choices=INITS)
    backend: str = setting("auto", "selective-scan backend (auto: the fastest one for the device the model is on, "
                           "chosen when it is built or moved)", choices=SCAN_BACKENDS)
    readout: str = setting("last", "user representation: last (the authors': last position) | both (forward "
                           "branch's last + backward branch's first real position) | mean (over real positions)",
                           choices=("last", "both", "mean"))

    def check(self) -> None:
        if self.readout == "both" and not self.backward:
            raise EchorecError("--readout both reads the backward branch: it needs --backward true")


def reverse_index(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) -> gather index that reverses each row's real tokens in place (left padding kept).

    A row with n real tokens holds them at columns L-n .. L-1; column j >= L-n takes 2L-n-1-j.
    The map is its own inverse, so the same index maps the result back.
    """
    B, L = mask.shape
    n = mask.sum(1, keepdim=True)  # (B, 1)
    j = torch.arange(L, device=mask.device)[None, :]
    return torch.where(j >= L - n, 2 * L - n - 1 - j, j)  # (B, L)


class BiMamba(nn.Module):
    def __init__(self, cfg: EchoMamba4RecConfig, reads_out: bool = False):
        super().__init__()
        mk = lambda: Mamba(cfg.hidden, cfg.d_state, cfg.d_conv, cfg.expand, backend=cfg.backend)  # noqa: E731
        self.fwd = mk()
        self.ln_f = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.drop = Dropout(cfg.dropout)
        self.backward_on, self.reverse, self.combine = cfg.backward, cfg.reverse, cfg.combine
        if cfg.backward:
            self.bwd = self.fwd if cfg.share_direction_weights else mk()
            self.ln_b = nn.LayerNorm(cfg.hidden, eps=1e-12)
            if cfg.combine == "gated":
                self.gate = nn.Linear(2 * cfg.hidden, cfg.hidden)
            elif cfg.combine == "concat":
                self.proj = nn.Linear(2 * cfg.hidden, cfg.hidden)
            if reads_out and cfg.readout == "both":
                self.readout = nn.Linear(2 * cfg.hidden, cfg.hidden)

    def forward(self, x, mask):
        f = self.ln_f(self.drop(self.fwd(x, mask)) + x)
        if not self.backward_on:
            return f
        b, idx = self._backward(x, mask)
        return self._combine(f, b.gather(1, idx))  # back to the original positions

    def _backward(self, x, mask):
        """The backward branch over the reversed real tokens: (its output in reversed order (B, L, D), the
        reversing gather index (B, L, D), its own inverse)."""
        idx = reverse_index(mask)[..., None].expand_as(x)  # (B, L, D)
        xr = x.gather(1, idx)
        # "padded": the authors' model reads the pads (unmasked) before the reversed real tokens.
        hb = self.bwd(xr, None if self.reverse == "padded" else mask)
        return self.ln_b(self.drop(hb) + xr), idx

    def forward_last(self, x, mask):
        """The output at the last position only, (B, D). Exact, and about half the work: in "real"
        mode the backward branch at the last position has read that one token (the pads before it
        are masked), so it is the backward Mamba run on a length-1 sequence."""
        if self.backward_on and self.reverse == "padded":
            return self.forward(x, mask)[:, -1]
        last = x[:, -1]  # (B, D)
        f = self.ln_f(self.drop(self.fwd(x, mask)[:, -1]) + last)
        if not self.backward_on:
            return f
        b = self.ln_b(self.drop(self.bwd(x[:, -1:])[:, 0]) + last)
        return self._combine(f, b)

    def forward_both(self, x, mask):
        """(B, D): the forward branch at the last position and the backward branch at the first real
        position, projected together. In the reversed sequence the first real position is the last
        column, so the backward branch's output there is its output after reading the whole history."""
        f = self.ln_f(self.drop(self.fwd(x, mask)[:, -1]) + x[:, -1])
        b = self._backward(x, mask)[0][:, -1]
        return self.readout(torch.cat([f, b], dim=-1))  # (B, 2D) -> (B, D)

    def init_readout(self) -> None:
        """Start the readout as the sum f + b (weight [I | I], no bias): at initialisation `both` is the
        authors' sum of the two directions, read where each has seen the whole history, and training can
        then weigh or mix them per channel. (A sigmoid gate could only blend the two, never keep both at
        full scale, and would start at half of each.)"""
        d = self.readout.out_features
        with torch.no_grad():
            self.readout.weight.copy_(torch.cat([torch.eye(d), torch.eye(d)], dim=1))
            self.readout.bias.zero_()

    def _combine(self, f, b):
        if self.combine == "sum":
            return f + b
        fb = torch.cat([f, b], dim=-1)  # (..., 2D)
        if self.combine == "gated":
            g = torch.sigmoid(self.gate(fb))
            return g * f + (1 - g) * b
        return self.proj(fb)


class EchoBlock(nn.Module):
    def __init__(self, cfg: EchoMamba4RecConfig, max_len: int, reads_out: bool = False):
        super().__init__()
        self.filter = SpectralFilter(max_len, cfg.hidden) if cfg.filter else None
        if cfg.filter:
            self.ln_filter = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.drop = Dropout(cfg.dropout)
        self.bimamba = BiMamba(cfg, reads_out)  # reads_out: the last block, which holds the readout
        self.readout = cfg.readout if reads_out else "last"
        if cfg.glu == "glu":
            self.mixer = GLUResidual(cfg.hidden, cfg.dropout, dropout_after_residual=cfg.glu_dropout == "authors")
        elif cfg.glu == "ffn":
            self.mixer = FFNResidual(cfg.hidden, 4 * cfg.hidden, cfg.dropout)
        else:  # "none"
            self.mixer = nn.Identity()

    def forward(self, x, mask):
        x = self._filter(x, mask)
        return self.mixer(self.bimamba(x, mask))

    def forward_last(self, x, mask):
        """(B, L, D) -> (B, D): the user representation under the model's readout (BlockStack.encode_last
        calls it on the last block). `last` and `both` run the pointwise GLU on one vector only."""
        if self.readout == "mean":
            w = mask[..., None].to(x.dtype)  # (B, L, 1)
            return (self(x, mask) * w).sum(1) / w.sum(1).clamp(min=1)  # an empty history reads out zeros
        x = self._filter(x, mask)
        read = self.bimamba.forward_both if self.readout == "both" else self.bimamba.forward_last
        return self.mixer(read(x, mask))

    def _filter(self, x, mask):
        if self.filter is None:
            return x
        return self.ln_filter(x + self.drop(self.filter(x, mask)))


@register("echomamba4rec")
class EchoMamba4Rec(BlockStack):
    Config = EchoMamba4RecConfig
    causal = False  # the backward branch reads later items
    description = "EchoMamba4Rec (Wang et al. 2024): spectral filter + bidirectional Mamba + GLU (flagship)"

    def __init__(self, n_items: int, max_len: int, cfg: EchoMamba4RecConfig):
        super().__init__(n_items, max_len, cfg.hidden)
        self.cfg = cfg
        self.pos_emb = nn.Embedding(max_len, cfg.hidden) if cfg.position else None
        self.drop = Dropout(cfg.dropout)
        self.ln = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.blocks = nn.ModuleList(EchoBlock(cfg, max_len, i == cfg.layers - 1) for i in range(cfg.layers))
        init_like_authors(self, cfg.init)
        if cfg.readout == "both":
            self.blocks[-1].bimamba.init_readout()

    def _embed(self, seq):
        seq = seq[:, -self.max_len:]
        if self.cfg.reverse == "padded" and seq.shape[1] < self.max_len:
            # The authors' behaviour depends on the pad count up to max_len: always use the full width.
            seq = torch.nn.functional.pad(seq, (self.max_len - seq.shape[1], 0))
        mask = seq > 0
        x = self.item_emb(seq)  # (B, L, D)
        if self.pos_emb is not None:
            L = seq.shape[1]
            x = x + self.pos_emb(torch.arange(L - 1, -1, -1, device=seq.device))[None]
        return self.ln(self.drop(x)), mask
