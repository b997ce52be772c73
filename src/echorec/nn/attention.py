"""Post-LN transformer block (SASRec/BERT4Rec style) on left-padded sequences.

Attention runs through `scaled_dot_product_attention`. Padding handling: a real query never attends
to a padded key; a padded query attends only to itself (its output is never read, but an all-masked
row would give NaN). On the CPU, a causal batch with no padding takes the fused `is_causal` path and
builds no mask. Elsewhere the mask is always built: asking whether a batch has padding reads a device
value back (a host round-trip every step, and a graph break under torch.compile), and on a GPU the
widths are rounded up, so nearly every batch is padded anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from echorec.nn.dropout import Dropout, dropout


def attention_mask(real: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """(B, L) bool real-token mask -> (B, 1, L, L) bool 'may attend', or None when nothing is masked."""
    B, L = real.shape
    if causal and real.device.type == "cpu" and not torch.compiler.is_compiling() and bool(real.all()):
        return None
    eye = torch.eye(L, dtype=torch.bool, device=real.device)
    allowed = real[:, None, :] | eye  # (B, L, L): real keys, plus self for pad queries
    if causal:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=real.device).tril()
    return allowed[:, None]  # (B, 1, L, L)


class MultiHeadAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, attn_dropout: float):
        super().__init__()
        assert hidden % heads == 0, "hidden must be divisible by heads"
        self.heads, self.attn_dropout = heads, attn_dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)  # one fused projection: fewer, larger matmuls
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x, mask, causal: bool, last_only: bool = False):
        B, L, D = x.shape
        H = self.heads
        q, k, v = self.qkv(x).split(D, dim=-1)
        if last_only:
            q = q[:, -1:]  # only the last query is ever read: (B, 1, D)
        q = q.reshape(B, -1, H, D // H).transpose(1, 2)  # (B, H, Lq, D/H)
        k = k.reshape(B, L, H, D // H).transpose(1, 2)  # (B, H, L, D/H)
        v = v.reshape(B, L, H, D // H).transpose(1, 2)
        if last_only and mask is not None:
            mask = mask[:, :, -1:]  # (B, 1, 1, L): the last query may see every real key
        if last_only:
            causal = False  # one query at the end: everything before it is allowed
        if self.training and self.attn_dropout > 0 and x.device.type == "cpu":
            y = self._attend_with_dropout(q, k, v, mask, causal)
        else:
            p = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal and mask is None)
        y = y.transpose(1, 2).reshape(B, -1, D)  # (B, Lq, D)
        return self.out(y)

    def _attend_with_dropout(self, q, k, v, mask, causal):
        # SDPA would draw its dropout mask with the slow CPU bernoulli; spell attention out instead.
        att = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # (B, H, Lq, L)
        if mask is None and causal:
            L = k.shape[-2]
            mask = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        att = dropout(att.softmax(-1), self.attn_dropout, True)
        return att @ v


class FeedForward(nn.Module):
    """Linear(d -> inner), activation, Linear(inner -> d)."""

    def __init__(self, hidden: int, inner: int, act: str = "gelu"):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(hidden, inner), nn.Linear(inner, hidden)
        self.act = {"gelu": F.gelu, "relu": F.relu}[act]

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """x -> LN(x + drop(MHA(x))) -> LN(h + drop(FFN(h)))  (post-LN, as SASRec in RecBole and BERT)."""

    def __init__(self, hidden, heads, inner, dropout, attn_dropout, act="gelu", eps=1e-12):
        super().__init__()
        self.attn = MultiHeadAttention(hidden, heads, attn_dropout)
        self.ln1 = nn.LayerNorm(hidden, eps=eps)
        self.ffn = FeedForward(hidden, inner, act)
        self.ln2 = nn.LayerNorm(hidden, eps=eps)
        self.drop = Dropout(dropout)

    def forward(self, x, mask, causal: bool, last_only: bool = False):
        a = self.attn(x, mask, causal, last_only)
        res = x[:, -1:] if last_only else x
        h = self.ln1(res + self.drop(a))
        return self.ln2(h + self.drop(self.ffn(h)))
