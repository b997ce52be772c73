"""Selective scan (the S6 recurrence of Mamba) with one dispatcher over its backends.

    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None, backend=None)

Shapes and meaning follow mamba_ssm's `selective_scan_fn`: u, delta, z (batch, dim, L); A (dim, N);
B, C (batch, N, L); D, delta_bias (dim,). With dt = softplus(delta + delta_bias) (or without the
softplus), the state h (batch, dim, N) runs
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t,    y_t = <C_t, h_t> + D * u_t,
and the output is y * silu(z) when z is given. `initial_state` (batch, dim, N) starts h (0 by
default); `return_last_state` also returns h_L.

Backends (the choice is logged once; `backend=` forces one; on CUDA: mamba_ssm, else triton, else torch):
  "mamba_ssm"  fused CUDA kernels, for CUDA tensors when mamba_ssm is installed (no initial_state)
  "triton"     our Triton kernels (_scan_triton.py): nothing to compile ahead of time, same fusion as
               numba, chunk-recomputing backward with O(L) memory
  "numba"      our fused CPU kernels (_scan_cpu.py): softplus, scan, D skip and gate in one pass,
               time-chunked, O(L) memory, own backward
  "torch"      the recurrence in plain torch ops, any device, autograd through the loop
  "ref"        `selective_scan_ref`: a sequential fp32 loop, the test oracle
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F

from echorec.nn import _kernels

SCAN_BACKENDS = ("auto", "numba", "triton", "torch", "ref", "mamba_ssm")  # auto = choose_backend's pick
log = logging.getLogger("echorec.ssm")
_announced: set[str] = set()


def _announce(backend: str, why: str) -> None:
    if backend not in _announced:
        _announced.add(backend)
        log.info("selective_scan backend: %s (%s)", backend, why)


def choose_backend(device: torch.device | str, initial_state: bool = False) -> tuple[str, str]:
    """(backend, why) for tensors on `device`: on CUDA mamba_ssm if importable, else triton, else the torch
    loop; on the CPU numba, else the torch loop."""
    kind = torch.device(device).type
    if kind == "cuda":
        if _kernels.mamba_ssm_scan is not None and not initial_state:
            return "mamba_ssm", "CUDA, mamba_ssm installed"
        if _kernels.triton_scan() is not None:
            return "triton", "CUDA, mamba_ssm not installed" if _kernels.mamba_ssm_scan is None else \
                "CUDA, an initial state (mamba_ssm takes none)"
        return "torch", f"CUDA without mamba_ssm or triton: a Python loop over time, slow; {_kernels.INSTALL['triton']}"
    if kind == "cpu" and _kernels.numba_scan is not None:
        return "numba", "CPU"
    return "torch", f"{kind} tensors, no compiled kernel for them"


def pick_backend(u: torch.Tensor, initial_state=None) -> str:
    backend, why = choose_backend(u.device, initial_state is not None)
    if backend == "torch" and u.is_cuda and "torch-cuda" not in _announced:
        _announced.add("torch-cuda")
        warnings.warn(f"selective_scan: {why}", stacklevel=2)
    _announce(backend, why)
    return backend


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
    """The oracle: a plain sequential loop over time, in float32 (float64 when given float64)."""
    dtype = u.dtype
    wide = lambda t: t.to(torch.promote_types(t.dtype, torch.float32))  # noqa: E731
    u, delta, A, B, C = (wide(t) for t in (u, delta, A, B, C))
    dt = _prepare_delta(delta, None if delta_bias is None else wide(delta_bias), delta_softplus)
    b, d, L = u.shape
    h = u.new_zeros(b, d, A.shape[1]) if initial_state is None else wide(initial_state)
    ys = []
    for t in range(L):
        a = torch.exp(dt[:, :, t, None] * A)  # (b, d, N)
        h = a * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))  # (b, d)
    y = torch.stack(ys, dim=-1)  # (b, d, L)
    y = _finish(y, u, None if D is None else wide(D), None if z is None else wide(z)).to(dtype)
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
    """The whole scan (softplus, recurrence, D skip, SiLU(z) gate) in the fused numba kernels, with
    their hand-written backward. u, delta, z (b, d, L) and Bt, Ct (b, L, N) may be strided views: the
    kernels read any layout. Outputs and gradients take the memory layout of their inputs (y that of
    delta), so a block that keeps (b, L, d) memory never transposes."""

    @staticmethod
    def forward(ctx, u, delta, A, Bt, Ct, D, z, delta_bias, h0, softplus: bool):
        k = _kernels.numba_scan
        _kernels.numba_threads()
        b, d, L = u.shape
        N = A.shape[1]
        f32 = lambda t: t.detach().float()  # noqa: E731  (a no-op for float32 tensors: views stay views)
        u_, delta_, Bt_, Ct_ = f32(u), f32(delta), f32(Bt), f32(Ct)
        A_ = f32(A).contiguous()
        zeros_d = u_.new_zeros(d)
        D_ = zeros_d if D is None else f32(D).contiguous()
        bias_ = zeros_d if delta_bias is None else f32(delta_bias).contiguous()
        z_ = u_ if z is None else f32(z)  # placeholder when there is no gate (flag off: never read)
        h0_ = u_.new_zeros(b, d, N) if h0 is None else f32(h0).contiguous()
        save = any(ctx.needs_input_grad)
        n_chunks = -(-L // k.CHUNK)
        hck = u_.new_empty(b, n_chunks, d, N) if save else u_.new_empty(1, 1, 1, 1)  # (b, L/T, d, N)
        y = torch.empty_like(delta_)
        h_last = u_.new_empty(b, d, N)
        flags = (k.SOFTPLUS if softplus else 0) | (0 if z is None else k.HAS_Z) | (k.SAVE if save else 0)
        # split channels into groups only when the batch alone cannot keep every thread busy
        threads = torch.get_num_threads()
        groups = 1 if b >= 2 * threads else min(d, -(-2 * threads // b))
        k.kernel("fwd")(u_.numpy(), delta_.numpy(), bias_.numpy(), A_.numpy(), Bt_.numpy(), Ct_.numpy(),
                        D_.numpy(), z_.numpy(), h0_.numpy(), y.numpy(), h_last.numpy(), hck.numpy(), k.CHUNK,
                        flags, groups)
        ctx.save_for_backward(u_, delta_, bias_, A_, Bt_, Ct_, D_, z_, hck)
        ctx.flags = flags
        ctx.given = (D is not None, z is not None, delta_bias is not None, h0 is not None)
        return y, h_last

    @staticmethod
    def backward(ctx, gy, gh_last):
        k = _kernels.numba_scan
        _kernels.numba_threads()
        u, delta, bias, A, Bt, Ct, D, z, hck = ctx.saved_tensors
        b, d, L = u.shape
        N = A.shape[1]
        gy = torch.zeros_like(u) if gy is None else gy.float()
        gh_last = u.new_zeros(b, d, N) if gh_last is None else gh_last.float().contiguous()
        gu, gdelta = torch.empty_like(u), torch.empty_like(delta)
        gz = torch.empty_like(z) if ctx.given[1] else u.new_empty(1, 1, 1)
        gA_b, gD_b, gbias_b = u.new_empty(b, d, N), u.new_empty(b, d), u.new_empty(b, d)  # per batch row
        gBt, gCt, gh0 = torch.empty_like(Bt), torch.empty_like(Ct), u.new_empty(b, d, N)
        k.kernel("bwd")(u.numpy(), delta.numpy(), bias.numpy(), A.numpy(), Bt.numpy(), Ct.numpy(), D.numpy(),
                        z.numpy(), hck.numpy(), gy.numpy(), gh_last.numpy(), k.CHUNK, ctx.flags,
                        gu.numpy(), gdelta.numpy(), gz.numpy(), gA_b.numpy(), gD_b.numpy(), gbias_b.numpy(),
                        gBt.numpy(), gCt.numpy(), gh0.numpy())
        has_D, has_z, has_bias, has_h0 = ctx.given
        return (gu, gdelta, gA_b.sum(0), gBt, gCt, gD_b.sum(0) if has_D else None, gz if has_z else None,
                gbias_b.sum(0) if has_bias else None, gh0 if has_h0 else None, None)


class _TritonScan(torch.autograd.Function):
    """The whole scan in the Triton kernels (_scan_triton.py), with their own chunk-recomputing backward.
    Inputs may be strided views and any float dtype; the state and every gradient are float32 inside, and
    y takes delta's layout."""

    @staticmethod
    def forward(ctx, u, delta, A, Bt, Ct, D, z, delta_bias, h0, softplus: bool):
        k = _kernels.triton_scan()
        dim, N = A.shape
        A_ = A.detach().float().contiguous()
        zeros = u.new_zeros(dim, dtype=torch.float32)
        D_ = zeros if D is None else D.detach().float().contiguous()
        bias_ = zeros if delta_bias is None else delta_bias.detach().float().contiguous()
        h0_ = None if h0 is None else h0.detach().float().contiguous()
        u_, delta_, Bt_, Ct_ = u.detach(), delta.detach(), Bt.detach(), Ct.detach()
        z_ = None if z is None else z.detach()
        save = any(ctx.needs_input_grad)
        y, h_last, hck = k.scan_fwd(u_, delta_, A_, Bt_, Ct_, D_, z_, bias_, h0_, softplus, save)
        if save:
            ctx.save_for_backward(u_, delta_, A_, Bt_, Ct_, D_, bias_, hck, *([] if z_ is None else [z_]))
        ctx.softplus = softplus
        ctx.given = (D is not None, z is not None, delta_bias is not None, h0 is not None)
        ctx.dtypes = (u.dtype, delta.dtype, A.dtype, Bt.dtype, Ct.dtype, None if z is None else z.dtype)
        return y, h_last

    @staticmethod
    def backward(ctx, gy, gh_last):
        k = _kernels.triton_scan()
        u, delta, A, Bt, Ct, D, bias, hck, *rest = ctx.saved_tensors
        z = rest[0] if rest else None
        b, dim, L = u.shape
        gy = torch.zeros(b, dim, L, device=u.device) if gy is None else gy
        gh = u.new_zeros(b, dim, A.shape[1], dtype=torch.float32) if gh_last is None else gh_last.float().contiguous()
        gu, gdelta, gz, gA, gD, gbias, gBt, gCt, gh0 = k.scan_bwd(u, delta, A, Bt, Ct, D, z, bias, hck, gy, gh,
                                                                   ctx.softplus)
        has_D, has_z, has_bias, has_h0 = ctx.given
        du, dd, dA, dB, dC, dz = ctx.dtypes
        return (gu.to(du), gdelta.to(dd), gA.to(dA), gBt.to(dB), gCt.to(dC), gD if has_D else None,
                gz.to(dz) if has_z else None, gbias if has_bias else None, gh0 if has_h0 else None, None)


def scan_time_major(u, delta, A, Bt, Ct, D=None, z=None, delta_bias=None, delta_softplus=False,
                    initial_state=None, backend: str | None = None):
    """selective_scan with time-major Bt, Ct (batch, L, N): the layout x_proj produces, so the Mamba
    block needs no transposes. Returns (out, last_state). The Mamba block passes the backend it resolved
    when it was built or moved; a direct call without one picks for its tensors."""
    backend = pick_backend(u, initial_state) if backend in (None, "auto") else backend
    if backend == "numba":
        if _kernels.numba_scan is None:
            raise RuntimeError(_kernels.missing("numba"))
        if u.device.type != "cpu":
            raise ValueError("the numba backend runs on CPU tensors only")
        y, h = _NumbaScan.apply(u, delta, A, Bt, Ct, D, z, delta_bias, initial_state, bool(delta_softplus))
        return y.to(u.dtype), h
    if backend == "triton":
        if _kernels.triton_scan() is None:
            raise RuntimeError(_kernels.missing("triton"))
        y, h = _TritonScan.apply(u, delta, A, Bt, Ct, D, z, delta_bias, initial_state, bool(delta_softplus))
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
    backend = pick_backend(u, initial_state) if backend in (None, "auto") else backend
    if backend not in SCAN_BACKENDS[1:]:
        raise ValueError(f"unknown selective_scan backend {backend!r}")
    y, h = scan_time_major(u, delta, A, B.transpose(1, 2), C.transpose(1, 2), D, z, delta_bias, delta_softplus,
                           initial_state, backend)
    return (y, h) if return_last_state else y
