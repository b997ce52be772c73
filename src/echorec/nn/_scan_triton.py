"""Triton kernels of the selective scan, for CUDA tensors with nothing to compile ahead of time
(PyTorch's Linux CUDA wheels ship Triton). They compute what `_scan_cpu.py` does on the CPU:

    dt[t]   = softplus(delta[t] + bias[d])            (or delta[t] + bias[d] without the softplus)
    h[t, n] = exp(dt[t] * A[d, n]) * h[t-1, n] + dt[t] * u[t] * B[t, n]
    out[t]  = (sum_n C[t, n] * h[t, n] + D[d] * u[t]) * silu(z[t])      (no gate without z)

One program owns one batch row and a block of BLOCK_D channels, keeps their (BLOCK_D, N) state in
registers and walks time in order; the state is float32 whatever the inputs' dtype.

Backward (own, with recomputation): the forward stores each program's state at the start of every
chunk of CHUNK steps, (batch, L/CHUNK, dim, N). The backward walks the chunks last to first: it
recomputes the chunk's states from that checkpoint into a (batch, CHUNK, dim, N) scratch buffer, then
runs the adjoint recurrence back through them
    lam[t] = gy[t] * C[t] + exp(dt[t+1] * A) * lam[t+1]      (lam[L-1] also gets the last state's gradient)
and reads every input's gradient off lam. Memory is linear in L, and (batch, L, dim, N) is never
stored. Sums over channels (dB, dC) and over the batch (dA, dD, dbias) are written per program and
reduced in torch, so no atomics are needed and results do not depend on scheduling.

Inputs may be strided views (the Mamba block passes (batch, L, dim) memory as (batch, dim, L)): every
pointer is built from explicit strides. Tested on CPU with Triton's interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

CHUNK = 32  # time steps per checkpoint: checkpoints are 1/32 of the states, scratch is 32 steps deep
BLOCK_D = 32  # most channels per program
# Largest (channels x state) tile per program, and the warps that hold it. The backward keeps about ten
# such fp32 tiles live: a 1024-element tile on 4 warps sits at ptxas' 255-register cap, a 2048 one
# spills about a kilobyte; on 8 warps a 1024 tile needs ~185-215 registers (sm_80, sm_90).
# tests/nn/test_scan_triton_compile.py compiles every tile this picks and checks it stays in budget.
TILE = 1024


@triton.jit
def _softplus(x):
    # max(x, 0) + log(1 + exp(-|x|)): no overflow for large x; softplus(-1e4) (padding) is exactly 0.
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _sigmoid(x):
    # exp of -|x| only: the padding's x = -1e4 would overflow exp(-x) (harmlessly, but noisily in the interpreter).
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# The sequence length and the chunk count change with every batch width; Triton would compile a variant per
# value class (multiple of 16, equal to 1), four per kernel over one epoch's widths, each a pause in the first
# epoch. They only bound loops and masks, so they are left unspecialised: one variant per kernel and layout.
_VARYING = ("L", "n_chunks")


@triton.jit(do_not_specialize=_VARYING)
def _fwd_kernel(u_ptr, delta_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, h0_ptr,
                y_ptr, hlast_ptr, hck_ptr,
                su_b, su_d, su_l, sd_b, sd_d, sd_l, sz_b, sz_d, sz_l, sy_b, sy_d, sy_l,
                sB_b, sB_l, sB_n, sC_b, sC_l, sC_n,
                L, dim, N, n_chunks,
                CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr, HAS_H0: tl.constexpr, SAVE: tl.constexpr):
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    md = offs_d < dim
    mn = offs_n < N
    m2 = md[:, None] & mn[None, :]
    dn = offs_d[:, None] * N + offs_n[None, :]  # (BLOCK_D, BLOCK_N) offsets into a contiguous (dim, N)
    A = tl.load(A_ptr + dn, mask=m2, other=0.0)
    Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0)
    bias = tl.load(bias_ptr + offs_d, mask=md, other=0.0)
    if HAS_H0:
        h = tl.load(h0_ptr + b * dim * N + dn, mask=m2, other=0.0)
    else:
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(0, n_chunks):
        if SAVE:
            tl.store(hck_ptr + (b * n_chunks + c) * dim * N + dn, h, mask=m2)  # the state before step c*CHUNK
        for tt in range(0, CHUNK):
            t = c * CHUNK + tt
            # Masks as vectors (a scalar bool mask is not accepted everywhere): channel d at step t, state n at t.
            mdt = md & ((offs_d * 0 + t) < L)
            mnt = mn & ((offs_n * 0 + t) < L)
            u = tl.load(u_ptr + b * su_b + offs_d * su_d + t * su_l, mask=mdt, other=0.0).to(tl.float32)
            dt = tl.load(delta_ptr + b * sd_b + offs_d * sd_d + t * sd_l, mask=mdt, other=0.0).to(tl.float32) + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            Bv = tl.load(B_ptr + b * sB_b + t * sB_l + offs_n * sB_n, mask=mnt, other=0.0).to(tl.float32)
            Cv = tl.load(C_ptr + b * sC_b + t * sC_l + offs_n * sC_n, mask=mnt, other=0.0).to(tl.float32)
            h_new = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bv[None, :]
            h = tl.where(mdt[:, None], h_new, h)
            y = tl.sum(h * Cv[None, :], axis=1) + Dv * u
            if HAS_Z:
                z = tl.load(z_ptr + b * sz_b + offs_d * sz_d + t * sz_l, mask=mdt, other=0.0).to(tl.float32)
                y = y * z * _sigmoid(z)
            tl.store(y_ptr + b * sy_b + offs_d * sy_d + t * sy_l, y, mask=mdt)
    tl.store(hlast_ptr + b * dim * N + dn, h, mask=m2)


@triton.jit(do_not_specialize=_VARYING)
def _bwd_kernel(u_ptr, delta_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, hck_ptr, scratch_ptr,
                gy_ptr, ghlast_ptr,
                gu_ptr, gdelta_ptr, gz_ptr, gA_ptr, gD_ptr, gbias_ptr, gB_ptr, gC_ptr, gh0_ptr,
                su_b, su_d, su_l, sd_b, sd_d, sd_l, sz_b, sz_d, sz_l, sg_b, sg_d, sg_l,
                sgu_b, sgu_d, sgu_l, sgd_b, sgd_d, sgd_l,
                sB_b, sB_l, sB_n, sC_b, sC_l, sC_n,
                L, dim, N, n_chunks, n_dblocks,
                CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr):
    b = tl.program_id(0)
    pd = tl.program_id(1)
    offs_d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    md = offs_d < dim
    mn = offs_n < N
    m2 = md[:, None] & mn[None, :]
    dn = offs_d[:, None] * N + offs_n[None, :]
    A = tl.load(A_ptr + dn, mask=m2, other=0.0)
    Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0)
    bias = tl.load(bias_ptr + offs_d, mask=md, other=0.0)
    lam = tl.load(ghlast_ptr + b * dim * N + dn, mask=m2, other=0.0)  # dLoss/dh of the state carried back
    gA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    gD = tl.zeros((BLOCK_D,), dtype=tl.float32)
    gbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    scratch = scratch_ptr + b * CHUNK * dim * N  # this row's (CHUNK, dim, N) states; this program's channels
    for cc in range(0, n_chunks):
        c = n_chunks - 1 - cc
        h_start = tl.load(hck_ptr + (b * n_chunks + c) * dim * N + dn, mask=m2, other=0.0)
        h = h_start
        for tt in range(0, CHUNK):  # recompute the chunk's states
            t = c * CHUNK + tt
            mdt = md & ((offs_d * 0 + t) < L)
            mnt = mn & ((offs_n * 0 + t) < L)
            u = tl.load(u_ptr + b * su_b + offs_d * su_d + t * su_l, mask=mdt, other=0.0).to(tl.float32)
            dt = tl.load(delta_ptr + b * sd_b + offs_d * sd_d + t * sd_l, mask=mdt, other=0.0).to(tl.float32) + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            Bv = tl.load(B_ptr + b * sB_b + t * sB_l + offs_n * sB_n, mask=mnt, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bv[None, :]
            tl.store(scratch + tt * dim * N + dn, h, mask=mdt[:, None] & mnt[None, :])
        tl.debug_barrier()
        for tt in range(0, CHUNK):  # the adjoint, last step of the chunk first
            k = CHUNK - 1 - tt
            t = c * CHUNK + k
            mdt = md & ((offs_d * 0 + t) < L)
            mnt = mn & ((offs_n * 0 + t) < L)
            m2t = mdt[:, None] & mnt[None, :]
            u = tl.load(u_ptr + b * su_b + offs_d * su_d + t * su_l, mask=mdt, other=0.0).to(tl.float32)
            x = tl.load(delta_ptr + b * sd_b + offs_d * sd_d + t * sd_l, mask=mdt, other=0.0).to(tl.float32) + bias
            if SOFTPLUS:
                dt = _softplus(x)
            else:
                dt = x
            Bv = tl.load(B_ptr + b * sB_b + t * sB_l + offs_n * sB_n, mask=mnt, other=0.0).to(tl.float32)
            Cv = tl.load(C_ptr + b * sC_b + t * sC_l + offs_n * sC_n, mask=mnt, other=0.0).to(tl.float32)
            h_t = tl.load(scratch + k * dim * N + dn, mask=m2t, other=0.0)
            later = (offs_n * 0 + k) > 0  # not the chunk's first step: h[t-1] is in the scratch, else the checkpoint
            h_prev = tl.load(scratch + (k - 1) * dim * N + dn, mask=m2t & later[None, :], other=0.0)
            h_prev = tl.where(later[None, :], h_prev, h_start)
            g = tl.load(gy_ptr + b * sg_b + offs_d * sg_d + t * sg_l, mask=mdt, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + b * sz_b + offs_d * sz_d + t * sz_l, mask=mdt, other=0.0).to(tl.float32)
                sz = _sigmoid(z)
                y = tl.sum(h_t * Cv[None, :], axis=1) + Dv * u
                tl.store(gz_ptr + b * sgu_b + offs_d * sgu_d + t * sgu_l, g * y * sz * (1.0 + z * (1.0 - sz)), mask=mdt)
                g = g * z * sz
            a = tl.exp(dt[:, None] * A)
            lam_t = lam + g[:, None] * Cv[None, :]
            lam_t = tl.where(m2t, lam_t, lam)
            ga = lam_t * h_prev * a  # dLoss/d(dt * A) through exp
            gdt = tl.sum(ga * A + lam_t * u[:, None] * Bv[None, :], axis=1)
            gu = g * Dv + tl.sum(lam_t * Bv[None, :], axis=1) * dt
            if SOFTPLUS:
                gx = gdt * _sigmoid(x)
            else:
                gx = gdt
            vf = mdt.to(tl.float32)
            gA += ga * (dt * vf)[:, None]
            gD += g * u * vf
            gbias += gx * vf
            tl.store(gu_ptr + b * sgu_b + offs_d * sgu_d + t * sgu_l, gu, mask=mdt)
            tl.store(gdelta_ptr + b * sgd_b + offs_d * sgd_d + t * sgd_l, gx, mask=mdt)
            # per-program partial sums over this program's channels: (batch, n_dblocks, L, N)
            row = ((b * n_dblocks + pd) * L + t) * N + offs_n
            tl.store(gB_ptr + row, tl.sum(lam_t * (dt * u)[:, None], axis=0), mask=mnt)
            tl.store(gC_ptr + row, tl.sum(g[:, None] * h_t, axis=0), mask=mnt)
            lam = tl.where(m2t, lam_t * a, lam)
        tl.debug_barrier()
    tl.store(gh0_ptr + b * dim * N + dn, lam, mask=m2)
    tl.store(gA_ptr + b * dim * N + dn, gA, mask=m2)
    tl.store(gD_ptr + b * dim + offs_d, gD, mask=md)
    tl.store(gbias_ptr + b * dim + offs_d, gbias, mask=md)


def launch_config(dim: int, N: int) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, num_warps) for a scan of `dim` channels with state size N."""
    bn = triton.next_power_of_2(N)
    bd = min(BLOCK_D, triton.next_power_of_2(dim), max(1, TILE // bn))
    return bd, bn, 8 if bd * bn >= 512 else 4


def scan_fwd(u, delta, A, Bt, Ct, D, z, bias, h0, softplus: bool, save: bool):
    """y (float32, delta's layout), last state (b, dim, N) and the chunk checkpoints (or None)."""
    b, dim, L = u.shape
    N = A.shape[1]
    bd, bn, warps = launch_config(dim, N)
    n_chunks = triton.cdiv(L, CHUNK)
    y = torch.empty_like(delta, dtype=torch.float32)
    h_last = u.new_empty(b, dim, N, dtype=torch.float32)
    hck = u.new_empty(b, n_chunks, dim, N, dtype=torch.float32) if save else h_last
    zz = z if z is not None else u
    h0_ = h0 if h0 is not None else h_last
    grid = (b, triton.cdiv(dim, bd))
    _fwd_kernel[grid](u, delta, bias, A, Bt, Ct, D, zz, h0_, y, h_last, hck,
                      *u.stride(), *delta.stride(), *zz.stride(), *y.stride(), *Bt.stride(), *Ct.stride(),
                      L, dim, N, n_chunks,
                      CHUNK=CHUNK, BLOCK_D=bd, BLOCK_N=bn, SOFTPLUS=softplus, HAS_Z=z is not None,
                      HAS_H0=h0 is not None, SAVE=save, num_warps=warps)
    return y, h_last, (hck if save else None)


def scan_bwd(u, delta, A, Bt, Ct, D, z, bias, hck, gy, gh_last, softplus: bool):
    """Gradients (u, delta, z or None, A, D, bias, Bt, Ct, h0), float32; u/delta/z-shaped ones in u's layout."""
    b, dim, L = u.shape
    N = A.shape[1]
    bd, bn, warps = launch_config(dim, N)
    n_chunks = hck.shape[1]
    n_db = triton.cdiv(dim, bd)
    f32 = torch.float32
    gu = torch.empty_like(u, dtype=f32)
    gdelta = torch.empty_like(delta, dtype=f32)
    gz = torch.empty_like(gu) if z is not None else None  # gu's layout: the kernel writes both with gu's strides
    gA_b, gh0 = u.new_empty(b, dim, N, dtype=f32), u.new_empty(b, dim, N, dtype=f32)
    gD_b, gbias_b = u.new_empty(b, dim, dtype=f32), u.new_empty(b, dim, dtype=f32)
    gB_p = u.new_zeros(b, n_db, L, N, dtype=f32)  # per channel block, summed below
    gC_p = u.new_zeros(b, n_db, L, N, dtype=f32)
    scratch = u.new_empty(b, CHUNK, dim, N, dtype=f32)
    zz = z if z is not None else u
    gy = gy.float()
    _bwd_kernel[(b, n_db)](u, delta, bias, A, Bt, Ct, D, zz, hck, scratch, gy, gh_last,
                           gu, gdelta, gz if gz is not None else gu, gA_b, gD_b, gbias_b, gB_p, gC_p, gh0,
                           *u.stride(), *delta.stride(), *zz.stride(), *gy.stride(), *gu.stride(), *gdelta.stride(),
                           *Bt.stride(), *Ct.stride(), L, dim, N, n_chunks, n_db,
                           CHUNK=CHUNK, BLOCK_D=bd, BLOCK_N=bn, SOFTPLUS=softplus, HAS_Z=z is not None,
                           num_warps=warps)
    return gu, gdelta, gz, gA_b.sum(0), gD_b.sum(0), gbias_b.sum(0), gB_p.sum(1), gC_p.sum(1), gh0
