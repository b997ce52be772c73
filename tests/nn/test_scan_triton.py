"""The Triton selective scan against the float64 reference loop, values and every gradient, and a Mamba
block through it against the numba backend. Without a GPU the kernels run in Triton's interpreter
(TRITON_INTERPRET=1, set here before the kernels are imported); without triton the tests skip."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are decorated, so before import
pytest.importorskip("triton", reason="triton is not installed (pip install triton)")

from echorec.nn import _kernels  # noqa: E402
from echorec.nn.mamba import PAD_DELTA, Mamba  # noqa: E402
from echorec.nn.ssm import selective_scan  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.cuda  # compiled kernels on a GPU (benchmarks/gpu_check.sh runs `-m cuda`), interpreted here


def inputs(b, d, L, N, with_z=True, with_D=True, with_bias=True, with_h0=False, pad=None, dtype=torch.float32,
           time_major=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    u, delta, z = r(b, d, L), r(b, d, L) - 1.0, r(b, d, L)
    A = -torch.exp(r(d, N) * 0.5)
    B, C = r(b, N, L), r(b, N, L)
    if pad is not None:  # left padding: dt = 0 there, as the Mamba block makes it
        for row, p in enumerate(pad):
            delta[row, :, :p] = PAD_DELTA
    t = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": r(d) if with_D else None, "z": z if with_z else None,
         "delta_bias": r(d) * 0.5 if with_bias else None, "initial_state": r(b, d, N) if with_h0 else None}
    if time_major:  # (b, L, d) memory seen as (b, d, L), as the Mamba block passes it
        for k in ("u", "delta", "z"):
            if t[k] is not None:
                t[k] = t[k].transpose(1, 2).contiguous().transpose(1, 2)
    return t


def run(t, backend, dtype, grad=True):
    leaves = {k: (v.detach().to(DEV, dtype if v.dtype == torch.float64 and k not in ("A", "D", "delta_bias",
                                                                                     "initial_state") else
                                 (torch.float32 if dtype != torch.float64 else dtype)) if v is not None else None)
              for k, v in t.items()}
    for v in leaves.values():
        if v is not None and grad:
            v.requires_grad_(True)
    y, h = selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
                          leaves["z"], leaves["delta_bias"], delta_softplus=True, return_last_state=True,
                          initial_state=leaves["initial_state"], backend=backend)
    if grad:
        w = torch.Generator().manual_seed(9)
        gy = torch.randn(y.shape, generator=w, dtype=torch.float64).to(DEV)
        gh = torch.randn(h.shape, generator=w, dtype=torch.float64).to(DEV)
        ((y.double() * gy).sum() + (h.double() * gh).sum()).backward()
    return y, h, {k: (v.grad if v is not None else None) for k, v in leaves.items()}


CASES = [  # (b, d, L, N, with_z, with_D, with_bias, with_h0, pad)
    (2, 5, 1, 16, True, True, True, False, None),
    (2, 5, 2, 16, False, False, False, False, None),
    (2, 6, 17, 32, True, True, True, True, None),
    (3, 4, 17, 16, True, False, True, False, (0, 5, 16)),
    (2, 3, 64, 16, False, True, False, True, (10, 0)),
    (1, 40, 33, 32, True, True, True, False, None),  # two channel blocks, a partial chunk
    (2, 4, 200, 16, True, True, True, True, (0, 120)),
]


@pytest.mark.parametrize("case", CASES, ids=[f"b{c[0]}d{c[1]}L{c[2]}N{c[3]}" for c in CASES])
def test_values_and_gradients_match_the_float64_reference(case):
    b, d, L, N, wz, wD, wb, wh, pad = case
    t = inputs(b, d, L, N, wz, wD, wb, wh, pad, time_major=(L % 2 == 1))
    y, h, g = run(t, "triton", torch.float32)
    y_ref, h_ref, g_ref = run(t, "ref", torch.float64)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(h.double(), h_ref, rtol=1e-4, atol=1e-4)
    for k, ref in g_ref.items():
        if ref is None:
            assert g[k] is None
            continue
        scale = ref.abs().max().clamp(min=1.0)
        torch.testing.assert_close(g[k].double() / scale, ref / scale, rtol=1e-4, atol=2e-5, msg=f"grad of {k}")


def test_padding_is_exact():
    """A left-padded row's outputs at its real positions and its last state are the unpadded row's."""
    t = inputs(1, 4, 12, 16, pad=(5,))
    short = {k: (v[..., 5:] if k in ("u", "delta", "z", "B", "C") and v is not None else v) for k, v in t.items()}
    y, h, _ = run(t, "triton", torch.float32, grad=False)
    ys, hs, _ = run(short, "triton", torch.float32, grad=False)
    torch.testing.assert_close(y[..., 5:], ys, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, hs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_keep_a_float32_state(dtype):
    t = inputs(2, 4, 17, 16, with_h0=True)
    t = {k: (v.to(dtype).double() if v is not None and k in ("u", "delta", "z", "B", "C") else v) for k, v in t.items()}
    y, h, g = run(t, "triton", dtype)
    y_ref, h_ref, g_ref = run(t, "ref", torch.float64)
    assert y.dtype == dtype and h.dtype == torch.float32 and g["u"].dtype == dtype
    torch.testing.assert_close(h.double(), h_ref, rtol=1e-4, atol=1e-4)  # the state saw the same inputs, in fp32
    torch.testing.assert_close(y.double(), y_ref, rtol=2e-2, atol=2e-2)  # one rounding to the low dtype


def test_mamba_block_forward_and_backward_equal_the_other_backend():
    """Against numba on the CPU; on a GPU against the torch loop (autograd through every step)."""
    other = "numba" if DEV == "cpu" else "torch"
    if other == "numba" and _kernels.numba_scan is None:
        pytest.skip("numba is not installed")
    torch.manual_seed(0)
    m = Mamba(16, d_state=16, backend=other).to(DEV)
    x = torch.randn(3, 17, 16, device=DEV)
    mask = torch.ones(3, 17, dtype=torch.bool, device=DEV)
    mask[1, :6] = False
    mask[2, :16] = False
    outs, grads = [], []
    for backend in (other, "triton"):
        m.backend = backend
        m.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = m(xi, mask)
        (out * torch.linspace(-1, 1, out.numel(), device=DEV).view_as(out)).sum().backward()
        outs.append(out.detach())
        grads.append({"x": xi.grad, **{n: p.grad.clone() for n, p in m.named_parameters()}})
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-3, atol=1e-5, msg=f"grad of {k}")
