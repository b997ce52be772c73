"""Optimisation for catalogues that outgrow dense updates (--sparse-items): an Adam that updates only the
item-table rows a step touches, and gradient clipping that accepts row-sparse gradients.

Dense Adam visits every row of the item table on every step (moment decay, update), so with a sampled
softmax a step still costs O(n_items x hidden), and an epoch grows with the catalogue times the log. Here
a parameter whose gradient is sparse (nn.Embedding(sparse=True), F.embedding(sparse=True)) is updated
lazily, as torch's SparseAdam does: the rows in the gradient get Adam's update with their moments; the other
rows and their moments stay as they are (so their moments do not decay while unused: the known difference
of lazy Adam). Dense parameters get the same arithmetic as torch.optim.Adam (no weight decay, no amsgrad).
"""

from __future__ import annotations

import math

import torch


class RowSparseAdam(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float32)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["step"] += 1
                t = float(st["step"])
                step_size, bc2_sqrt = lr / (1 - b1 ** t), math.sqrt(1 - b2 ** t)
                g, m, v = p.grad, st["exp_avg"], st["exp_avg_sq"]
                if g.is_sparse:
                    g = g.coalesce()  # one row per index (a row used twice in a batch sums its gradients)
                    rows, vals = g.indices()[0], g.values()
                    m_rows = m.index_select(0, rows).mul_(b1).add_(vals, alpha=1 - b1)
                    v_rows = v.index_select(0, rows).mul_(b2).addcmul_(vals, vals, value=1 - b2)
                    m.index_copy_(0, rows, m_rows)
                    v.index_copy_(0, rows, v_rows)
                    denom = v_rows.sqrt().div_(bc2_sqrt).add_(eps)
                    p.index_add_(0, rows, m_rows.div(denom).mul_(-step_size))
                else:
                    m.lerp_(g, 1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    p.addcdiv_(m, v.sqrt().div_(bc2_sqrt).add_(eps), value=-step_size)


@torch.no_grad()
def clip_grad_norm(params, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ (L2, all gradients as one vector) for a mix of dense and row-sparse
    gradients; a sparse gradient is coalesced first (one entry per row), and its norm is its values'."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    sq = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            sq.append(p.grad._values().float().pow(2).sum())
        else:
            sq.append(p.grad.float().pow(2).sum())
    total = torch.stack(sq).sum().sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        (p.grad._values() if p.grad.is_sparse else p.grad).mul_(coef.to(p.grad.dtype))
    return total
