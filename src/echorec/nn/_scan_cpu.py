"""numba kernels of the Mamba block on the CPU: the whole selective scan (fused, time-chunked) and the
causal depthwise conv + SiLU, each with a hand-written backward.

The scan computes, for every (batch b, channel d) and state n,
    dt[t]   = softplus(delta[t] + bias[d])            (or delta[t] + bias[d] without the softplus)
    h[t, n] = exp(dt[t] * A[d, n]) * h[t-1, n] + dt[t] * u[t] * B[t, n]
    out[t]  = (sum_n C[t, n] * h[t, n] + D[d] * u[t]) * silu(z[t])      (no gate without z)
and its backward returns the gradients of every input. Fusing the softplus, the D skip and the gate
removes six full-size (batch, dim, L) temporaries each way. At long L each such temporary is a fresh
allocation: glibc hands out blocks above 32 MB with mmap, and every page then faults on first touch. That,
not the arithmetic, made the old unfused layer superlinear between L = 200 and L = 400.

Loop order: for each batch row, time runs in chunks of CHUNK steps, and all channels of the row go
through one chunk before the next, so the chunk's B, C (T, N) stay in cache while every channel reads
them.

Memory: the forward saves each channel's state at the start of every chunk, (batch, L/T, dim, N), a
1/T fraction of the (batch, dim, L, N) states, which are never stored. The backward recomputes one
chunk of one channel's states at a time from that checkpoint (a (T + 1, N) buffer), then runs the
adjoint recurrence back through it, so peak memory is linear in L with a small constant.

Vector math: PyPI's llvmlite has no vector math library, so a plain math.exp stays a scalar libm
call. `_exp2_parts` splits 2^y into 2^k (exponent bits written as int32, read back as float32) times a
degree-6 polynomial for 2^f, f in [0, 1) (relative error 3.6e-9, below float32 rounding); log1p for
the softplus is a series in s = e / (2 + e). Both are plain arithmetic, so LLVM vectorises the loops.
(Tried and not kept, because they were slower: computing 2^k through a scalar bitcast inside the
recurrence loop, one fused reverse loop for the adjoint and the gradient sums, 512-bit vectors; the
figures are in benchmarks/results/kernel_choices.md.)
Checked in the assembly (inspect_asm) and LLVM's vectorisation remarks (llvmlite's
-pass-remarks=loop-vectorize): the polynomial must stay float32 (see _exp2_parts).

Inputs may be strided views (the Mamba block passes (batch, L, dim) memory as (batch, dim, L) views):
the kernels gather each chunk into small contiguous time-major buffers, reading along whichever axis
is contiguous.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

LOG2E = np.float32(1.4426950408889634)
# Values below TINY are flushed to 0 in the recurrences. In prefix training only the last position
# gets a gradient, which then decays backwards by up to e^-20 per step into the denormal range, where
# x86 arithmetic takes a slow microcode path (numba's threads do not inherit torch's flush-to-zero).
TINY = np.float32(1e-30)
# 2^f ~ P(f) on [0, 1]: weighted least squares on Chebyshev nodes, P(0) = 1 exactly.
P1, P2, P3 = np.float32(0.6931470036506653), np.float32(0.2402298003435135), np.float32(0.05548352375626564)
P4, P5, P6 = np.float32(0.009678472764790058), np.float32(0.0012443081941455603), np.float32(0.00021690608991775662)
F0, F1, HALF = np.float32(0.0), np.float32(1.0), np.float32(0.5)
SOFTPLUS, HAS_Z, SAVE = 1, 2, 4  # flag bits
# Time steps per chunk. Measured at L = 800 (batch 256, dim 128, N 32, one thread), fwd / bwd ms:
# T = 32: 1001 / 1634, 64: 977 / 1711, 128: 1013 / 1783. Flat; 64 keeps the checkpoints at 1/64.
CHUNK = 64

# error_model="numpy": Python's model checks every float division for a zero divisor (to raise
# ZeroDivisionError), and that early exit stops LLVM vectorising any loop with a division: the softplus
# loop, timed alone, took 2.4 ns per element instead of 0.7. No divisor here can be zero (all are 1 + e or
# 2 + e with e >= 0).
_jit = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")


@numba.njit(inline="always", **_jit)
def _exp2_scaled(a, s, frac, bits, n_items):
    """frac[i] * float32_view(bits)[i] = 2^(s * a[i]) for i < n_items. The recurrences' decays pass
    s = dt; having the scaling in this loop keeps it vectorised (a separate product loop stayed scalar)."""
    for i in range(n_items):
        y = min(max(s * a[i], np.float32(-126.0)), np.float32(127.0))
        # np.floor keeps float32: math.floor returns an int64, which made f and the whole polynomial
        # float64 (half-width vectors plus conversions; the forward kernel took 1.23x as long)
        k = np.floor(y)
        f = y - k
        frac[i] = F1 + f * (P1 + f * (P2 + f * (P3 + f * (P4 + f * (P5 + f * P6)))))
        bits[i] = (np.int32(k) + np.int32(127)) << np.int32(23)


@numba.njit(inline="always", **_jit)
def _exp2_parts(y2, frac, bits, n_items):
    """frac[i] * float32_view(bits)[i] = 2^y2[i] (y2 already scaled by log2 e); the constant 1 folds away."""
    _exp2_scaled(y2, F1, frac, bits, n_items)


@numba.njit(inline="always", **_jit)
def _sigmoid_parts(x, e, frac, bits, n_items):
    """e[i] = exp(-|x[i]|): the one exponential that both the softplus and the sigmoid need."""
    for i in range(n_items):
        e[i] = -abs(x[i]) * LOG2E
    _exp2_parts(e, frac, bits, n_items)
    two_k = bits.view(np.float32)
    for i in range(n_items):
        # flushed to exactly 0 below e^-87 (a float32 denormal), so softplus(-1e4) is exactly 0
        e[i] = frac[i] * two_k[i] if abs(x[i]) < np.float32(87.0) else F0


@numba.njit(inline="always", **_jit)
def _log1p01(e):
    """log(1 + e) for e in [0, 1]: 2 atanh(s), s = e / (2 + e) <= 1/3; error < 2e-8."""
    s = e / (np.float32(2.0) + e)
    s2 = s * s
    p = np.float32(1 / 13)
    p = np.float32(1 / 11) + s2 * p
    p = np.float32(1 / 9) + s2 * p
    p = np.float32(1 / 7) + s2 * p
    p = np.float32(1 / 5) + s2 * p
    p = np.float32(1 / 3) + s2 * p
    return np.float32(2.0) * s * (F1 + s2 * p)


@numba.njit(inline="always", **_jit)
def _gather(src, b, d0, m, t0, tl, dst, ldb):
    """dst[t * ldb + i] = src[b, d0 + i, t0 + t]: one chunk into a time-major buffer, reading along
    whichever axis of src is contiguous (a (batch, L, dim) view or a (batch, dim, L) array)."""
    if src.strides[1] <= src.strides[2]:
        for t in range(tl):
            for i in range(m):
                dst[t * ldb + i] = src[b, d0 + i, t0 + t]
    else:
        for i in range(m):
            for t in range(tl):
                dst[t * ldb + i] = src[b, d0 + i, t0 + t]


@numba.njit(inline="always", **_jit)
def _scatter(src, dst, b, d0, m, t0, tl, ldb):
    """dst[b, d0 + i, t0 + t] = src[t * ldb + i], the inverse of _gather."""
    if dst.strides[1] <= dst.strides[2]:
        for t in range(tl):
            for i in range(m):
                dst[b, d0 + i, t0 + t] = src[t * ldb + i]
    else:
        for i in range(m):
            for t in range(tl):
                dst[b, d0 + i, t0 + t] = src[t * ldb + i]


def _fwd(u, delta, bias, A, Bm, Cm, Dv, z, h0, y, h_last, hck, T, flags, groups):
    """u, delta, z, y (b, d, L) any strides; Bm, Cm (b, L, N) any strides; A (d, N); bias, Dv (d,);
    h0, h_last (b, d, N); hck (b, K, d, N) chunk-start states (written when flags & SAVE).
    Work is split over (batch row, channel group) jobs; groups > 1 only when the batch is small."""
    nb, nd, L = u.shape
    N = A.shape[1]
    K = (L + T - 1) // T
    dg = (nd + groups - 1) // groups
    AL = np.empty((nd, N), dtype=np.float32)
    for d in range(nd):
        for n in range(N):
            AL[d, n] = A[d, n] * LOG2E  # exp(dt * A) = 2^(dt * A * log2 e)
    for job in prange(nb * groups):
        b = job // groups
        d0 = (job - b * groups) * dg
        m = min(nd, d0 + dg) - d0
        if m <= 0:
            continue
        # chunk buffers are time-major (T, ldb); the row stride is padded off a power of two, so the
        # per-channel walks down a column do not all land in the same few cache sets
        ldb = m + 8
        M = T * ldb
        state = np.empty((m, N), dtype=np.float32)
        for i in range(m):
            for n in range(N):
                state[i, n] = h0[b, d0 + i, n]
        Bl = np.empty((T, N), dtype=np.float32)
        Cl = np.empty((T, N), dtype=np.float32)
        ul = np.zeros(M, dtype=np.float32)
        dl = np.zeros(M, dtype=np.float32)  # delta + bias, then dt
        yl = np.zeros(M, dtype=np.float32)
        e = np.empty(M, dtype=np.float32)
        frac = np.empty(M, dtype=np.float32)
        bits = np.empty(M, dtype=np.int32)
        fn = np.empty(N, dtype=np.float32)
        bn = np.empty(N, dtype=np.int32)
        two_k = bn.view(np.float32)
        for k in range(K):
            t0 = k * T
            tl = min(T, L - t0)
            for t in range(tl):
                for n in range(N):
                    Bl[t, n] = Bm[b, t0 + t, n]
                    Cl[t, n] = Cm[b, t0 + t, n]
            _gather(u, b, d0, m, t0, tl, ul, ldb)
            _gather(delta, b, d0, m, t0, tl, dl, ldb)
            for t in range(tl):
                for i in range(m):
                    dl[t * ldb + i] += bias[d0 + i]
            if flags & SOFTPLUS:
                _sigmoid_parts(dl, e, frac, bits, tl * ldb)
                for j in range(tl * ldb):  # only the chunk's tl rows
                    dl[j] = max(dl[j], F0) + _log1p01(e[j])
            if flags & SAVE:
                for i in range(m):
                    for n in range(N):
                        hck[b, k, d0 + i, n] = state[i, n]
            for i in range(m):
                Ad = AL[d0 + i]
                h = state[i]
                for t in range(tl):
                    dtt = dl[t * ldb + i]
                    x = dtt * ul[t * ldb + i]
                    _exp2_scaled(Ad, dtt, fn, bn, N)
                    acc = F0
                    for n in range(N):
                        hn = fn[n] * two_k[n] * h[n] + x * Bl[t, n]
                        hn = hn if abs(hn) > TINY else F0
                        h[n] = hn
                        acc += Cl[t, n] * hn
                    yl[t * ldb + i] = acc
            # D skip and SiLU(z) gate, vectorised over the chunk
            for t in range(tl):
                for i in range(m):
                    yl[t * ldb + i] += Dv[d0 + i] * ul[t * ldb + i]
            if flags & HAS_Z:
                _gather(z, b, d0, m, t0, tl, dl, ldb)  # dl is free again: reuse it for z
                _sigmoid_parts(dl, e, frac, bits, tl * ldb)
                for j in range(tl * ldb):  # only the chunk's tl rows
                    zz = dl[j]
                    sg = F1 / (F1 + e[j])
                    sg = sg if zz >= F0 else F1 - sg
                    yl[j] *= zz * sg
            _scatter(yl, y, b, d0, m, t0, tl, ldb)
        for i in range(m):
            for n in range(N):
                h_last[b, d0 + i, n] = state[i, n]


def _bwd(u, delta, bias, A, Bm, Cm, Dv, z, hck, gout, gh_last, T, flags,
         gu, gdelta, gz, gA_b, gD_b, gbias_b, gBm, gCm, gh0):
    """Gradients of sum(gout * out) + sum(gh_last * h_last). Per batch row b (one thread each): gA_b,
    gD_b, gbias_b are per-row partial sums, summed over b by the caller; gBm, gCm rows are owned by
    the thread of their row, so no two threads write the same element."""
    nb, nd, L = u.shape
    N = A.shape[1]
    K = (L + T - 1) // T
    AC = np.empty((nd, N), dtype=np.float32)  # contiguous copies: the inner loops vectorise over n
    AL = np.empty((nd, N), dtype=np.float32)
    for d in range(nd):
        for n in range(N):
            AC[d, n] = A[d, n]
            AL[d, n] = A[d, n] * LOG2E
    ldb = nd + 8
    M = T * ldb
    for b in prange(nb):
        g_state = np.empty((nd, N), dtype=np.float32)  # dLoss/dh at the current chunk's end, per channel
        for d in range(nd):
            for n in range(N):
                g_state[d, n] = gh_last[b, d, n]
        gA = np.zeros((nd, N), dtype=np.float32)
        gD = np.zeros(nd, dtype=np.float32)
        gbias = np.zeros(nd, dtype=np.float32)
        Bl = np.empty((T, N), dtype=np.float32)
        Cl = np.empty((T, N), dtype=np.float32)
        gBl = np.empty((T, N), dtype=np.float32)
        gCl = np.empty((T, N), dtype=np.float32)
        hs = np.empty((T + 1, N), dtype=np.float32)  # hs[t + 1] = h[t] of one channel in this chunk
        As = np.empty((T, N), dtype=np.float32)  # its decays
        Gs = np.empty((T, N), dtype=np.float32)  # dLoss/dh[t]
        ul = np.zeros(M, dtype=np.float32)
        dl = np.zeros(M, dtype=np.float32)  # delta + bias
        dtl = np.zeros(M, dtype=np.float32)
        sig = np.zeros(M, dtype=np.float32)  # d dt / d delta
        zl = np.zeros(M, dtype=np.float32)
        sz = np.zeros(M, dtype=np.float32)  # sigmoid(z)
        gol = np.zeros(M, dtype=np.float32)  # dLoss/d out
        gyl = np.zeros(M, dtype=np.float32)  # dLoss/d (C.h + D u)
        yl = np.zeros(M, dtype=np.float32)  # C.h, recomputed
        gul = np.zeros(M, dtype=np.float32)
        gdl = np.zeros(M, dtype=np.float32)
        e = np.empty(M, dtype=np.float32)
        frac = np.empty(M, dtype=np.float32)
        bits = np.empty(M, dtype=np.int32)
        gAd = np.empty(N, dtype=np.float32)
        g = np.empty(N, dtype=np.float32)
        fn = np.empty(N, dtype=np.float32)
        bn = np.empty(N, dtype=np.int32)
        two_k = bn.view(np.float32)
        for k in range(K - 1, -1, -1):
            t0 = k * T
            tl = min(T, L - t0)
            for t in range(tl):
                for n in range(N):
                    Bl[t, n] = Bm[b, t0 + t, n]
                    Cl[t, n] = Cm[b, t0 + t, n]
                    gBl[t, n] = F0
                    gCl[t, n] = F0
            _gather(u, b, 0, nd, t0, tl, ul, ldb)
            _gather(delta, b, 0, nd, t0, tl, dl, ldb)
            _gather(gout, b, 0, nd, t0, tl, gol, ldb)
            for t in range(tl):
                for d in range(nd):
                    dl[t * ldb + d] += bias[d]
            if flags & SOFTPLUS:
                _sigmoid_parts(dl, e, frac, bits, tl * ldb)
                for j in range(tl * ldb):  # only the chunk's tl rows
                    x = dl[j]
                    dtl[j] = max(x, F0) + _log1p01(e[j])
                    sg = F1 / (F1 + e[j])
                    sig[j] = sg if x >= F0 else F1 - sg
            else:
                for j in range(tl * ldb):  # only the chunk's tl rows
                    dtl[j] = dl[j]
                    sig[j] = F1
            if flags & HAS_Z:
                _gather(z, b, 0, nd, t0, tl, zl, ldb)
                _sigmoid_parts(zl, e, frac, bits, tl * ldb)
                for j in range(tl * ldb):  # only the chunk's tl rows
                    sg = F1 / (F1 + e[j])
                    sg = sg if zl[j] >= F0 else F1 - sg
                    sz[j] = sg
                    gyl[j] = gol[j] * zl[j] * sg
            else:
                for j in range(tl * ldb):  # only the chunk's tl rows
                    gyl[j] = gol[j]
            for d in range(nd):
                Ad = AC[d]
                ADL = AL[d]
                Dd = Dv[d]
                # 1) recompute this chunk's states of channel d from its checkpoint
                for n in range(N):
                    hs[0, n] = hck[b, k, d, n]
                for t in range(tl):
                    dtt = dtl[t * ldb + d]
                    x = dtt * ul[t * ldb + d]
                    _exp2_scaled(ADL, dtt, fn, bn, N)
                    acc = F0
                    for n in range(N):
                        a = fn[n] * two_k[n]
                        As[t, n] = a
                        hn = a * hs[t, n] + x * Bl[t, n]
                        hn = hn if abs(hn) > TINY else F0
                        hs[t + 1, n] = hn
                        acc += Cl[t, n] * hn
                    yl[t * ldb + d] = acc
                # 2) adjoint recurrence back through the chunk: Gs[t] = dLoss/dh[t] (the sequential part)
                for n in range(N):
                    g[n] = g_state[d, n]
                for t in range(tl - 1, -1, -1):
                    gyt = gyl[t * ldb + d]
                    for n in range(N):
                        gn = g[n] + gyt * Cl[t, n]
                        Gs[t, n] = gn
                        gc = gn * As[t, n]  # carried to h[t-1]
                        g[n] = gc if abs(gc) > TINY else F0
                for n in range(N):
                    g_state[d, n] = g[n]
                    gAd[n] = F0
                # 3) gradient sums, independent across t: they vectorise over n with no carried state
                for t in range(tl):
                    j = t * ldb + d
                    dtt = dtl[j]
                    ut = ul[j]
                    x = dtt * ut
                    gyt = gyl[j]
                    gx = F0
                    gdt_acc = F0
                    for n in range(N):
                        gn = Gs[t, n]
                        gCl[t, n] += gyt * hs[t + 1, n]
                        gBl[t, n] += gn * x
                        gx += gn * Bl[t, n]
                        ga = gn * hs[t, n] * As[t, n]  # dLoss/d(dt * A[n]) through a = exp(dt * A)
                        gdt_acc += ga * Ad[n]
                        gAd[n] += ga * dtt
                    gul[j] = gx * dtt + gyt * Dd
                    gdl[j] = gx * ut + gdt_acc
                for n in range(N):
                    gA[d, n] += gAd[n]
            # 4) the elementwise parts' gradients, vectorised over the chunk, then scatter
            for t in range(tl):
                for d in range(nd):
                    j = t * ldb + d
                    gD[d] += gyl[j] * ul[j]
                    gdl[j] *= sig[j]
                    gbias[d] += gdl[j]
            _scatter(gul, gu, b, 0, nd, t0, tl, ldb)
            _scatter(gdl, gdelta, b, 0, nd, t0, tl, ldb)
            if flags & HAS_Z:
                for t in range(tl):
                    for d in range(nd):
                        j = t * ldb + d
                        s = sz[j]
                        gol[j] = gol[j] * (yl[j] + Dv[d] * ul[j]) * s * (F1 + zl[j] * (F1 - s))
                _scatter(gol, gz, b, 0, nd, t0, tl, ldb)
            for t in range(tl):
                for n in range(N):
                    gBm[b, t0 + t, n] = gBl[t, n]
                    gCm[b, t0 + t, n] = gCl[t, n]
        for d in range(nd):
            gD_b[b, d] = gD[d]
            gbias_b[b, d] = gbias[d]
            for n in range(N):
                gA_b[b, d, n] = gA[d, n]
                gh0[b, d, n] = g_state[d, n]


# -- causal depthwise conv + SiLU, on (batch, L, dim) memory ---------------------------------------
# The Mamba block's conv feeds x_proj and the scan, both of which want (batch, L, dim) memory; torch's
# conv1d wants (batch, dim, L). Doing the conv here (vectorised over dim, per time step) removes the
# pad copy, two transposes and the SiLU's temporaries, each a full-size tensor both ways.


@numba.njit(inline="always", **_jit)
def _conv_step(x, wT, bias, b, t, s, sg, frac, bits):
    """One time step of the conv, shared by forward and backward: s[d] = the pre-activation,
    sg[d] = sigmoid(s[d]) (so silu = s * sg)."""
    nd = s.shape[0]
    K = wT.shape[0]
    for d in range(nd):
        s[d] = bias[d]
    for j in range(K):
        tt = t - (K - 1) + j
        if tt >= 0:
            for d in range(nd):
                s[d] += wT[j, d] * x[b, tt, d]
    _sigmoid_parts(s, sg, frac, bits, nd)  # sg = exp(-|s|) for now
    for d in range(nd):
        g = F1 / (F1 + sg[d])
        sg[d] = g if s[d] >= F0 else F1 - g


def _conv_fwd(x, wT, bias, out):
    """out[b, t, d] = silu(bias[d] + sum_j wT[j, d] * x[b, t - (K-1) + j, d]); x, out (B, L, D) C-contiguous."""
    nb, L, nd = x.shape
    for b in prange(nb):
        s = np.empty(nd, dtype=np.float32)
        e = np.empty(nd, dtype=np.float32)
        frac = np.empty(nd, dtype=np.float32)
        bits = np.empty(nd, dtype=np.int32)
        for t in range(L):
            _conv_step(x, wT, bias, b, t, s, e, frac, bits)
            for d in range(nd):
                out[b, t, d] = s[d] * e[d]


def _conv_bwd(x, wT, bias, gout, gx, gw_b, gbias_b):
    """Gradients of sum(gout * out) for _conv_fwd: gx (B, L, D); per batch row partial sums
    gw_b (B, K, D) and gbias_b (B, D), summed over b by the caller."""
    nb, L, nd = x.shape
    K = wT.shape[0]
    for b in prange(nb):
        gs = np.empty((L, nd), dtype=np.float32)  # dLoss/d(pre-activation), one row per time step
        s = np.empty(nd, dtype=np.float32)
        e = np.empty(nd, dtype=np.float32)
        frac = np.empty(nd, dtype=np.float32)
        bits = np.empty(nd, dtype=np.int32)
        gw = np.zeros((K, nd), dtype=np.float32)
        gbias = np.zeros(nd, dtype=np.float32)
        for t in range(L):
            _conv_step(x, wT, bias, b, t, s, e, frac, bits)
            for d in range(nd):
                sg = e[d]
                g = gout[b, t, d] * sg * (F1 + s[d] * (F1 - sg))  # d silu(s) / ds
                gs[t, d] = g
                gbias[d] += g
            for j in range(K):
                tt = t - (K - 1) + j
                if tt >= 0:
                    for d in range(nd):
                        gw[j, d] += gs[t, d] * x[b, tt, d]
        for t in range(L):
            for d in range(nd):
                s[d] = F0
            for j in range(K):
                tt = t + (K - 1) - j  # the output step that read x[t] through tap j
                if tt < L:
                    for d in range(nd):
                        s[d] += wT[j, d] * gs[tt, d]
            for d in range(nd):
                gx[b, t, d] = s[d]
        for d in range(nd):
            gbias_b[b, d] = gbias[d]
            for j in range(K):
                gw_b[b, j, d] = gw[j, d]


# One compiled signature each. The scan kernels type every array "any layout" (A): C-contiguous arrays
# and strided views share the machine code (typing the (batch, L, dim) arrays C-contiguous instead made the
# scan backward slower, for no forward gain). The conv kernels only ever see C-contiguous (B, L, D) arrays
# (the block's in_proj halves) and are typed so, which lets LLVM vectorise along channels. Figures for both
# choices: benchmarks/results/kernel_choices.md. numba compiles (and caches on disk) each kernel once, on
# first use, not at import.
_A1, _A2, _A3, _A4 = numba.float32[:], numba.float32[:, :], numba.float32[:, :, :], numba.float32[:, :, :, :]
_C3 = numba.float32[:, :, ::1]
_i = numba.int64
_SIG_FWD = numba.void(_A3, _A3, _A1, _A2, _A3, _A3, _A1, _A3, _A3, _A3, _A3, _A4, _i, _i, _i)
_SIG_BWD = numba.void(_A3, _A3, _A1, _A2, _A3, _A3, _A1, _A3, _A4, _A3, _A3, _i, _i,
                      _A3, _A3, _A3, _A3, _A2, _A2, _A3, _A3, _A3)
_SIG_CONV_FWD = numba.void(_C3, _A2, _A1, _C3)
_SIG_CONV_BWD = numba.void(_C3, _A2, _A1, _C3, _C3, _A3, _A2)
_compiled: dict = {}


def kernel(name: str):
    if name not in _compiled:
        fn, sig = {"fwd": (_fwd, _SIG_FWD), "bwd": (_bwd, _SIG_BWD),
                   "conv_fwd": (_conv_fwd, _SIG_CONV_FWD), "conv_bwd": (_conv_bwd, _SIG_CONV_BWD)}[name]
        _compiled[name] = numba.njit(sig, parallel=True, **_jit)(fn)
    return _compiled[name]


def start_pool() -> None:
    numba.get_num_threads()  # starts the thread pool if it is not running


def set_threads(n: int) -> None:
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
