"""Time the numba scan kernels alone (no Mamba block around them): forward and backward, in ns per
(batch, channel, step, state) element, so kernel changes can be compared without the layer's matmuls,
conv and allocations in the way.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/scan_kernels.py [--batch 32] [--length 800]
    # old vs new: PYTHONPATH=/path/to/old/src python benchmarks/scan_kernels.py, then the same without

Inputs are laid out as the Mamba block passes them: (batch, L, d_inner) memory viewed as (batch, d_inner, L).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from echorec.nn import ssm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=800)
    ap.add_argument("--d-inner", type=int, default=128)
    ap.add_argument("--d-state", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    b, L, d, N = a.batch, a.length, a.d_inner, a.d_state
    torch.manual_seed(0)
    view = lambda t: t.transpose(1, 2).requires_grad_()  # noqa: E731  (b, L, d) memory as (b, d, L)
    u, z = view(torch.randn(b, L, d)), view(torch.randn(b, L, d))
    delta = view(torch.randn(b, L, d) * 0.5 - 2)
    A = (-torch.exp(torch.randn(d, N) * 0.5)).requires_grad_()
    Bt, Ct = torch.randn(b, L, N, requires_grad=True), torch.randn(b, L, N, requires_grad=True)
    D, bias = torch.randn(d, requires_grad=True), (torch.randn(d) * 0.1).requires_grad_()
    inputs = [u, delta, A, Bt, Ct, D, z, bias]

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        y, _ = ssm.scan_time_major(u, delta, A, Bt, Ct, D, z, bias, True, backend="numba")
        t1 = time.perf_counter()
        torch.autograd.grad(y, inputs, torch.ones_like(y))
        return t1 - t0, time.perf_counter() - t1

    run()  # compile / warm up
    fwd, bwd = zip(*(run() for _ in range(a.repeats)))
    el = b * d * L * N
    print(f"batch {b}, L {L}, d_inner {d}, d_state {N}, {torch.get_num_threads()} torch threads; median of {a.repeats}")
    for name, ts in (("forward", fwd), ("backward", bwd)):
        m = statistics.median(ts)
        print(f"{name:9s} {m * 1e3:8.1f} ms  {m / el * 1e9:6.3f} ns/element")


if __name__ == "__main__":
    main()
