"""The contract every sequential recommender meets, and the shared pieces (embedding, scoring, CE).

    encode(seq)  (B, L) int64, left-padded, 0 = pad  ->  (B, L, D)
    score(h)     (..., D)                            ->  (..., n_items) over ALL items (column j = item j+1)
    loss(batch, objective)  scalar; default: CE of the last position's scores vs. the next item, or, in
                 "all" mode (batch.targets set), CE at every real position (valid for causal models only).
                 The Objective says what a step optimises beside the data: label_smoothing moves that share
                 of the target's mass evenly onto all items, negatives (K,) switches to a sampled softmax

Streaming (serving one event at a time):
    init_state(batch)       the state of `batch` empty histories
    step(state, item)       item (B,) int64 appended to each history -> (state, scores (B, n_items))
The default keeps the last max_len ids and re-encodes them, so its scores are `predict`'s. A model
whose state carries the history in O(1) space (Mamba4Rec's recurrence, GRU4Rec's GRU) overrides both
and sets `incremental = True`; it then reads the whole history, not only the last max_len items.

Left padding puts every sequence's most recent item at column -1, so `encode(seq)[:, -1]` is the
user representation whatever the lengths in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from echorec.errors import EchorecError
from echorec.fields import setting
from echorec.nn.dropout import Dropout
from echorec.nn.mamba import Mamba, scan_summary

INITS = ("authors", "mamba")


@dataclass(frozen=True)
class Objective:
    """What a training step optimises besides its batch (the trainer's settings, drawn per step): a Batch
    carries data only."""

    label_smoothing: float = 0.0  # of the full-softmax CE target
    negatives: torch.Tensor | None = field(default=None, compare=False)  # (K,) ids shared by the batch: sampled CE


FULL_CE = Objective()  # plain cross-entropy over all items


class SequentialRecommender(nn.Module):
    name: str = "base"
    causal: bool = True  # may it train in "all" mode (outputs at t depend only on items <= t)?
    incremental: bool = False  # does step() cost O(1) in the history length?
    description: str = ""

    def __init__(self, n_items: int, max_len: int, hidden: int):
        super().__init__()
        self.n_items, self.max_len, self.hidden = n_items, max_len, hidden
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)

    # -- contract ---------------------------------------------------------------------------------
    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_last(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, D) at the last position; models override it when they can skip work."""
        return self.encode(seq)[:, -1]

    def score(self, h: torch.Tensor) -> torch.Tensor:
        # Tied output: the item embedding table, padding row excluded.
        return h @ self.item_emb.weight[1:].t()

    def score_into(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """`score(h)` written into `out` (B, n_items): batch scoring reuses one buffer, because a fresh matrix of
        that size is paged in anew on every call, which costs more than the product itself. A model (a plugin)
        that overrides `score` alone keeps its own scores here, only without the reuse."""
        if type(self).score is not SequentialRecommender.score:
            return out.copy_(self.score(h))
        return torch.matmul(h, self.item_emb.weight[1 : self.n_items + 1].t(), out=out)

    def score_items(self, h: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Scores of items lo+1 .. hi only: (B, D) -> (B, hi - lo); the memory-bounded form of `score`."""
        return h @ self.item_emb.weight[lo + 1 : hi + 1].t()

    def predict(self, seq: torch.Tensor) -> torch.Tensor:
        return self.score(self.encode_last(seq))

    def loss(self, batch, objective: Objective = FULL_CE) -> torch.Tensor:
        if objective.negatives is not None:
            return self.sampled_loss(batch, objective.negatives)
        smoothing = objective.label_smoothing
        if batch.targets is not None:
            h = self.encode(batch.seq)  # (B, L, D)
            real = batch.targets > 0
            logits = self.score(h[real])  # (n_real, n_items)
            return F.cross_entropy(logits.float(), batch.targets[real] - 1, label_smoothing=smoothing)
        logits = self.predict(batch.seq)  # (B, n_items)
        return F.cross_entropy(logits.float(), batch.target - 1, label_smoothing=smoothing)

    def sampled_loss(self, batch, negatives: torch.Tensor) -> torch.Tensor:
        """Sampled softmax: CE over the target and K uniform negatives shared by the batch, instead of
        over all items, for catalogs too large to score in full at every step. Uniform sampling needs
        no log-q correction (it is the same constant for every item); a negative that happens to be
        the target is masked out."""
        if batch.targets is not None:
            h = self.encode(batch.seq)
            real = batch.targets > 0
            h, target = h[real], batch.targets[real]  # (N, D), (N,)
        else:
            h, target = self.encode_last(batch.seq), batch.target
        # F.embedding (not emb[idx]) so that the table's gradient is row-sparse when item_emb.sparse is set
        # (--sparse-items); with it unset the two are the same computation.
        emb, sparse = self.item_emb.weight, self.item_emb.sparse
        pos = (h * F.embedding(target, emb, sparse=sparse)).sum(-1, keepdim=True)  # (N, 1)
        neg = h @ F.embedding(negatives, emb, sparse=sparse).t()  # (N, K)
        neg = neg.masked_fill(negatives[None, :] == target[:, None], float("-inf"))
        logits = torch.cat([pos, neg], dim=1).float()
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))

    def forward(self, batch, objective: Objective | None = None) -> torch.Tensor:
        # The loss is the forward pass: DistributedDataParallel syncs gradients only through forward().
        # None (the plain objective) calls loss(batch) alone, so a plugin's one-argument loss still trains.
        return self.loss(batch) if objective is None else self.loss(batch, objective)

    # -- streaming ------------------------------------------------------------------------------------
    def init_state(self, batch: int):
        """The state of `batch` empty histories; here the kept ids, (batch, 0)."""
        return torch.zeros(batch, 0, dtype=torch.long, device=self.item_emb.weight.device)

    @torch.no_grad()
    def step(self, state, item: torch.Tensor):
        """Append item (B,) to every history -> (state, scores (B, n_items)); here: re-encode the window."""
        seq = torch.cat([state, item[:, None]], dim=1)[:, -self.max_len:]  # (B, <= max_len)
        return seq, self.predict(seq)

    def prepare_export(self) -> None:
        """Switch every part that has a faster, untraceable path (Mamba's compiled scans) to plain torch ops,
        so torch.jit.trace can record the model."""
        for m in self.modules():
            if isinstance(m, Mamba):
                m.set_backend("torch")

    def scan_summary(self) -> str | None:
        """What the model's selective scans run on ("scan: numba (CPU)"), as resolved when it was built or
        moved; None for a model without Mamba blocks."""
        return scan_summary(self)

    # -- helpers ----------------------------------------------------------------------------------
    def init_weights(self, std: float = 0.02, skip: set[int] = frozenset()) -> None:
        """N(0, std^2) Linear/Embedding weights, zero biases, unit LayerNorm (BERT/RecBole style).
        Modules whose id() is in `skip` keep their own initialisation."""
        for m in self.modules():
            if id(m) in skip:
                continue
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class BlockStack(SequentialRecommender):
    """A model that embeds, then runs `self.blocks` in order. Each block has forward(x, mask) -> (B, L, D)
    and forward_last(x, mask) -> (B, D), the last position only, which the last block uses in
    `encode_last` (prefix training and ranking read nothing else)."""

    blocks: nn.ModuleList

    def _embed(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids -> (x (B, L, D), real-token mask (B, L))."""
        raise NotImplementedError

    def encode(self, seq):
        x, mask = self._embed(seq)
        for blk in self.blocks:
            x = blk(x, mask)
        return x

    def encode_last(self, seq):
        x, mask = self._embed(seq)
        for blk in self.blocks[:-1]:
            x = blk(x, mask)
        return self.blocks[-1].forward_last(x, mask)


@dataclass
class MambaSettings:
    """The settings Mamba4Rec and EchoMamba4Rec share, first in both Configs (the authors' defaults)."""

    hidden: int = setting(64, "width of the item embedding and of every layer", low=1)
    layers: int = setting(1, "layers (EchoMamba4Rec: filter + bidirectional Mamba + GLU blocks)", low=1)
    d_state: int = setting(32, "state size N of the selective SSM", low=1)
    d_conv: int = setting(4, "width of Mamba's causal depthwise convolution", low=1)
    expand: int = setting(2, "Mamba's inner width = expand * hidden", low=1)
    dropout: float = setting(0.2, "dropout on embeddings and hidden states", low=0, high=1, high_open=True)


def check_heads(hidden: int, heads: int) -> None:
    if hidden % heads:
        raise EchorecError(f"--heads {heads}: must divide --hidden {hidden}")


def init_like_authors(model: SequentialRecommender, init: str, std: float = 0.02) -> None:
    """The Mamba4Rec/EchoMamba4Rec authors' N(0, std) re-init of every Linear/Embedding ("authors"), or of all
    but Mamba's own layers ("mamba")."""
    skip = {id(m) for mb in model.modules() if isinstance(mb, Mamba) for m in mb.modules()} if init == "mamba" else set()
    model.init_weights(std, skip)


def pad_to(seq: torch.Tensor, max_len: int) -> torch.Tensor:
    """Left-pad (or crop) (B, W) ids to (B, max_len): models whose output depends on the window."""
    seq = seq[:, -max_len:]
    return F.pad(seq, (max_len - seq.shape[1], 0)) if seq.shape[1] < max_len else seq


class WindowEmbedding(SequentialRecommender):
    """FMLP-Rec/BSARec input: ids left-padded to the full max_len window, item + learned position
    embedding over that window, LayerNorm, dropout (as in their official code)."""

    def __init__(self, n_items: int, max_len: int, hidden: int, dropout: float):
        super().__init__(n_items, max_len, hidden)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = Dropout(dropout)

    def _window(self, seq):
        """(B, W) ids -> (ids (B, max_len), x (B, max_len, D))."""
        seq = pad_to(seq, self.max_len)
        return seq, self.drop(self.ln(self.item_emb(seq) + self.pos_emb.weight[None]))
