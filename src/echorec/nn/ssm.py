"""Selective scan (the S6 recurrence of Mamba) with one dispatcher over its backends.

    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None, backend=None)

Shapes and meaning follow mamba_ssm's `selective_scan_fn`: u, delta, z (batch, dim, L); A (dim, N);
B, C (batch, N, L); D, delta_bias (dim,). With dt = softplus(delta + delta_bias) (or without the
softplus), the state h (batch, dim, N) runs
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t,    y_t = <C_t, h_t> + D * u_t,
and the output is y * silu(z) when z is given. `initial_state` (batch, dim, N) starts h (0 by
default); `return_last_state` also returns h_L.

Backends (the choice is logged once; `backend=` forces one):
  "mamba_ssm"  fused CUDA kernels, for CUDA tensors when mamba_ssm is installed (no initial_state)
  "numba"      our CPU kernels (_scan_cpu.py): parallel over (batch, dim), O(L) memory, own backward
  "torch"      the recurrence in plain torch ops, any device, autograd through the loop
  "ref"        `selective_scan_ref`: a sequential fp32 loop, the test oracle
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from echorec.nn import _kernels

log = logging.getLogger("echorec.ssm")
_announced: set[str] = set()


def _announce(backend: str, why: str) -> None:
    if backend not in _announced:
        _announced.add(backend)
        log.info("selective_scan backend: %s (%s)", backend, why)


def pick_backend(u: torch.Tensor, initial_state=None) -> str:
    if u.is_cuda and _kernels.mamba_ssm_scan is not None and initial_state is None:
        _announce("mamba_ssm", "CUDA tensors and mamba_ssm importable")
        return "mamba_ssm"
    if u.device.type == "cpu" and _kernels.numba_scan is not None:
        _announce("numba", "CPU tensors")
        return "numba"
    _announce("torch", f"{u.device.type} tensors, no compiled kernel for them")
    return "torch"


def _prepare_delta(delta, delta_bias, delta_softplus):
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    return F.softplus(delta) if delta_softplus else delta


def _finish(y, u, D, z):
    if D is not None:
        y = y + u * D[None, :, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, initial_state=None):
    """The oracle: a plain sequential loop over time, in float32."""
    dtype = u.dtype
    u, delta, A, B, C = (t.float() for t in (u, delta, A, B, C))
    dt = _prepare_delta(delta, None if delta_bias is None else delta_bias.float(), delta_softplus)
    b, d, L = u.shape
    h = u.new_zeros(b, d, A.shape[1]) if initial_state is None else initial_state.float()
    ys = []
    for t in range(L):
        a = torch.exp(dt[:, :, t, None] * A)  # (b, d, N)
        h = a * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))  # (b, d)
    y = torch.stack(ys, dim=-1)  # (b, d, L)
    y = _finish(y, u, None if D is None else D.float(), None if z is None else z.float()).to(dtype)
    return (y, h) if return_last_state else y


def _scan_torch(u, dt, A, B, C, h0):
    """h-recurrence in torch ops (any device); returns (y, h_last). Autograd runs through the loop."""
    b, d, L = u.shape
    h = h0
    ys = []
    for t in range(L):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return torch.stack(ys, -1), h


class _NumbaScan(torch.autograd.Function):
    """(u, dt, A, Bt, Ct, h0) -> (y, h_last) with the numba forward and hand-written backward.
    Bt, Ct are time-major (b, L, N)."""

    @staticmethod
    def forward(ctx, u, dt, A, Bt, Ct, h0):
        k = _kernels.numba_scan
        k.set_threads(torch.get_num_threads())
        u, dt, A, Bt, Ct, h0 = (t.detach().float().contiguous() for t in (u, dt, A, Bt, Ct, h0))
        y = torch.empty_like(u)
        h_last = torch.empty_like(h0)
        k.scan_fwd(u.numpy(), dt.numpy(), A.numpy(), Bt.numpy(), Ct.numpy(), h0.numpy(), y.numpy(), h_last.numpy(),
                   8 * torch.get_num_threads())
        ctx.save_for_backward(u, dt, A, Bt, Ct, h0)
        return y, h_last

    @staticmethod
    def backward(ctx, gy, gh_last):
        k = _kernels.numba_scan
        k.set_threads(torch.get_num_threads())
        u, dt, A, Bt, Ct, h0 = ctx.saved_tensors
        gy = torch.zeros_like(u) if gy is None else gy.float().contiguous()
        gh_last = torch.zeros_like(h0) if gh_last is None else gh_last.float().contiguous()
        gu, gdt = torch.empty_like(u), torch.empty_like(dt)
        gA_b = u.new_empty(u.shape[0], *A.shape)  # (b, d, N), per batch row: no write races
        gBt, gCt = torch.zeros_like(Bt), torch.zeros_like(Ct)
        gh0 = torch.empty_like(h0)
        k.scan_bwd(u.numpy(), dt.numpy(), A.numpy(), Bt.numpy(), Ct.numpy(), h0.numpy(), gy.numpy(),
                   gh_last.numpy(), gu.numpy(), gdt.numpy(), gA_b.numpy(), gBt.numpy(), gCt.numpy(), gh0.numpy())
        return gu, gdt, gA_b.sum(0), gBt, gCt, gh0


def scan_time_major(u, delta, A, Bt, Ct, D=None, z=None, delta_bias=None, delta_softplus=False,
                    initial_state=None, backend: str | None = None):
    """selective_scan with time-major Bt, Ct (batch, L, N): the layout x_proj produces, so the Mamba
    block needs no transposes. Returns (out, last_state)."""
    backend = backend or pick_backend(u, initial_state)
    if backend == "numba":
        if _kernels.numba_scan is None:
            raise RuntimeError(_kernels.missing("numba"))
        if u.device.type != "cpu":
            raise ValueError("the numba backend runs on CPU tensors only")
        b, d, _ = u.shape
        uf = u.float()
        dt = _prepare_delta(delta.float(), None if delta_bias is None else delta_bias.float(), delta_softplus)
        h0 = uf.new_zeros(b, d, A.shape[1]) if initial_state is None else initial_state.float()
        y, h = _NumbaScan.apply(uf, dt, A.float(), Bt.float(), Ct.float(), h0)
        y = _finish(y, uf, None if D is None else D.float(), None if z is None else z.float())
        return y.to(u.dtype), h
    B, C = Bt.transpose(1, 2), Ct.transpose(1, 2)
    if backend == "mamba_ssm":
        if _kernels.mamba_ssm_scan is None:
            raise RuntimeError(_kernels.missing("mamba_ssm"))
        if initial_state is not None:
            raise ValueError("the mamba_ssm backend takes no initial_state; use backend='torch' or 'numba'")
        return _kernels.mamba_ssm_scan(u, delta, A, B.contiguous(), C.contiguous(), D, z, delta_bias,
                                       delta_softplus, True)
    if backend == "ref":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, True, initial_state)
    if backend != "torch":
        raise ValueError(f"unknown selective_scan backend {backend!r}")
    dtype = u.dtype
    dt = _prepare_delta(delta.float(), None if delta_bias is None else delta_bias.float(), delta_softplus)
    uf = u.float()
    h0 = uf.new_zeros(u.shape[0], u.shape[1], A.shape[1]) if initial_state is None else initial_state.float()
    y, h = _scan_torch(uf, dt, A.float(), B.float(), C.float(), h0)
    y = _finish(y, uf, None if D is None else D.float(), None if z is None else z.float()).to(dtype)
    return y, h


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None, backend: str | None = None):
    """mamba_ssm-compatible selective scan; see the module docstring."""
    backend = backend or pick_backend(u, initial_state)
    if backend not in ("ref", "mamba_ssm", "numba", "torch"):
        raise ValueError(f"unknown selective_scan backend {backend!r}")
    y, h = scan_time_major(u, delta, A, B.transpose(1, 2), C.transpose(1, 2), D, z, delta_bias, delta_softplus,
                           initial_state, backend)
    return (y, h) if return_last_state else y
