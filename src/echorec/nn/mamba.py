"""The Mamba block (Gu & Dao 2023): in_proj -> causal depthwise conv + SiLU -> selective SSM, gated
by SiLU(z) -> out_proj, with exact padding and a recurrent `step` for streaming inference.

Padding is exact: at positions where `mask` is False the conv input is zeroed and the step size
dt is 0, so exp(dt * A) = 1 and dt * B * u = 0: the state passes through unchanged. A sequence's
outputs at its real positions are therefore the same whatever padding (left or right) or batch
mates it comes with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from echorec.nn import _kernels
from echorec.nn.ssm import SCAN_BACKENDS, choose_backend, scan_time_major

PAD_DELTA = -1e4


class _CausalConvSiLU(torch.autograd.Function):
    """silu(causal depthwise conv1d(x)) on (B, L, d) memory, in the numba kernels (CPU)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        k = _kernels.numba_scan
        _kernels.numba_threads()
        x_ = x.detach().float().contiguous()  # the kernels take C-contiguous (B, L, d)
        wT = weight.detach().float()[:, 0, :].t().contiguous()  # (d_conv, d): taps outer, channels inner
        b_ = bias.detach().float().contiguous() if bias is not None else x_.new_zeros(x.shape[-1])
        out = x_.new_empty(x.shape)  # (B, L, d)
        k.kernel("conv_fwd")(x_.numpy(), wT.numpy(), b_.numpy(), out.numpy())
        ctx.save_for_backward(x_, wT, b_)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, gout):
        k = _kernels.numba_scan
        _kernels.numba_threads()
        x, wT, b_ = ctx.saved_tensors
        B, _, d = x.shape
        gx = x.new_empty(x.shape)
        gw_b, gbias_b = x.new_empty(B, wT.shape[0], d), x.new_empty(B, d)  # per batch row: no write races
        k.kernel("conv_bwd")(x.numpy(), wT.numpy(), b_.numpy(), gout.float().contiguous().numpy(), gx.numpy(), gw_b.numpy(),
                             gbias_b.numpy())
        gw = gw_b.sum(0).t()[:, None, :].contiguous()  # (d, 1, d_conv), the Conv1d weight's shape
        return gx, gw, gbias_b.sum(0) if ctx.has_bias else None


class Mamba(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank="auto",
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4, dt_scale: float = 1.0,
                 conv_bias: bool = True, bias: bool = False, backend: str = "auto"):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1,
                                bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # dt_proj init: weights keep the variance of dt_rank inputs; the bias is softplus^-1 of a dt drawn
        # log-uniformly from [dt_min, dt_max], so initial step sizes span slow and fast dynamics.
        std = self.dt_rank ** -0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        # S4D-real init: A[:, n] = -(n + 1), stored as log so A stays negative during training.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.set_backend(backend or "auto")

    # -- the scan backend: one setting, resolved when the block is built or moved, never per forward pass ----
    def set_backend(self, choice: str) -> None:
        """`auto` (the fastest backend for the device the weights are on) or a backend's name."""
        if choice not in SCAN_BACKENDS:
            raise ValueError(f"unknown selective_scan backend {choice!r}; use one of {', '.join(SCAN_BACKENDS)}")
        self.backend_choice = choice
        self._resolve_backend()

    def _resolve_backend(self) -> None:
        if self.backend_choice == "auto":
            self.backend, self.backend_why = choose_backend(self.A_log.device)
        else:
            self.backend, self.backend_why = self.backend_choice, "set by --backend"

    def _apply(self, fn, recurse=True):
        # .to(), .cuda(), .cpu() all come here: a block moved to another device picks again.
        out = super()._apply(fn, recurse)
        self._resolve_backend()
        return out

    def _ssm_params(self, x):
        """(B, L, d_inner) conv output -> delta (B, L, d_inner) before softplus, Bm, Cm (B, L, N)."""
        dbc = self.x_proj(x)  # (B, L, r + 2N)
        dt, Bm, Cm = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return self.dt_proj(dt), Bm, Cm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_state: bool = False):
        """x (B, L, d_model), mask (B, L) bool (True = real token) -> (B, L, d_model)."""
        B, L, _ = x.shape
        # in_proj as two products with halves of its weight, not one product then chunk: each half comes
        # out contiguous (the conv kernels are typed for that), and the backward sums two input
        # gradients instead of concatenating two (B, L, d_inner) gradients.
        W, bias = self.in_proj.weight, self.in_proj.bias
        di = self.d_inner
        xi = F.linear(x, W[:di], None if bias is None else bias[:di])  # (B, L, d_inner)
        z = F.linear(x, W[di:], None if bias is None else bias[di:])  # (B, L, d_inner)
        if mask is not None:
            xi = xi * mask[..., None].to(xi.dtype)
        conv_in = xi.transpose(1, 2)  # (B, d_inner, L)
        # From here on every (B, L, d_inner) tensor keeps (B, L, d_inner) memory: x_proj, the scan (it
        # reads strided views) and out_proj then need no copies.
        if self.backend == "numba":
            xc = _CausalConvSiLU.apply(xi, self.conv1d.weight, self.conv1d.bias)  # (B, L, d_inner)
        else:
            # Causal depthwise conv: pad d_conv - 1 zeros on the left, so the output is exactly L long.
            xc = F.silu(F.conv1d(F.pad(conv_in, (self.d_conv - 1, 0)), self.conv1d.weight, self.conv1d.bias,
                                 groups=self.d_inner))  # (B, d_inner, L)
            xc = xc.transpose(1, 2).contiguous()  # (B, L, d_inner)
        delta, Bm, Cm = self._ssm_params(xc)
        if mask is not None:
            # softplus(-1e4) is exactly 0 in float32: dt = 0 at padding, so the state passes through
            # unchanged (a finite value, not -inf: the fastmath kernels assume no infinities).
            delta = delta.masked_fill(~mask[..., None], PAD_DELTA)
        A = -torch.exp(self.A_log.float())
        y, h = scan_time_major(xc.transpose(1, 2), delta.transpose(1, 2), A, Bm, Cm, self.D, z.transpose(1, 2),
                               delta_softplus=True, backend=self.backend)  # y (B, d_inner, L) view
        out = self.out_proj(y.transpose(1, 2).to(x.dtype))  # (B, L, d_model)
        if return_state:
            tail = F.pad(conv_in, (self.d_conv - 1, 0))[..., -(self.d_conv - 1):] if self.d_conv > 1 else conv_in[..., :0]
            return out, (tail, h)
        return out

    # -- recurrent inference --------------------------------------------------------------------
    def allocate_state(self, batch: int, device=None, dtype=torch.float32):
        conv = torch.zeros(batch, self.d_inner, self.d_conv - 1, device=device, dtype=dtype)
        ssm = torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=torch.float32)
        return conv, ssm

    @torch.no_grad()
    def step(self, x_t: torch.Tensor, state):
        """One new token per row: x_t (B, d_model), state from allocate_state/forward -> (y_t, state).

        O(1) in the sequence length: the conv keeps its last d_conv - 1 inputs, the SSM its (d_inner, N) state.
        """
        conv_state, h = state
        xz = self.in_proj(x_t)  # (B, 2 * d_inner)
        xi, z = xz.chunk(2, dim=-1)
        window = torch.cat([conv_state, xi[..., None]], dim=-1)  # (B, d_inner, d_conv)
        xc = F.silu((window * self.conv1d.weight[:, 0]).sum(-1) + (self.conv1d.bias if self.conv1d.bias is not None else 0))
        delta, Bm, Cm = self._ssm_params(xc)
        dt = F.softplus(delta)
        A = -torch.exp(self.A_log.float())
        h = torch.exp(dt.float()[..., None] * A) * h + (dt * xc).float()[..., None] * Bm.float()[:, None, :]
        y = (h * Cm.float()[:, None, :]).sum(-1) + self.D * xc
        y = y * F.silu(z)
        return self.out_proj(y.to(x_t.dtype)), (window[..., 1:], h)


def scan_summary(model: nn.Module) -> str | None:
    """"scan: triton (CUDA, mamba_ssm not installed)": what a model's Mamba blocks resolved; None without any."""
    blocks = [m for m in model.modules() if isinstance(m, Mamba)]
    if not blocks:
        return None
    return f"scan: {blocks[0].backend} ({blocks[0].backend_why})"
