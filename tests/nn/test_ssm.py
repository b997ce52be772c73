"""The fast selective-scan paths against the sequential fp32 loop: outputs, last state, gradients."""

import pytest
import torch

from echorec.nn import _kernels
from echorec.nn.ssm import pick_backend, selective_scan, selective_scan_ref

BACKENDS = ["torch"] + (["numba"] if _kernels.numba_scan is not None else [])


def inputs(b, d, L, N, seed=0, double=False):
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64 if double else torch.float32
    r = lambda *s: torch.randn(*s, generator=g, dtype=dt)  # noqa: E731
    return dict(u=r(b, d, L), delta=r(b, d, L) * 0.5, A=-torch.rand(d, N, generator=g, dtype=dt) * 2 - 0.1,
                B=r(b, N, L), C=r(b, N, L), D=r(d), z=r(b, d, L), delta_bias=r(d) * 0.1, h0=r(b, d, N))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L", [1, 2, 7, 50, 64, 200, 257])
@pytest.mark.parametrize("opts", ["plain", "D", "z", "bias+softplus", "all", "h0"])
def test_matches_loop_outputs_state_and_gradients(backend, L, opts):
    x = inputs(2, 3, L, 4, seed=L)
    kw = {}
    if opts in ("D", "all"):
        kw["D"] = x["D"]
    if opts in ("z", "all"):
        kw["z"] = x["z"]
    if opts in ("bias+softplus", "all"):
        kw.update(delta_bias=x["delta_bias"], delta_softplus=True)
    else:
        x["delta"] = x["delta"].abs()  # without softplus keep dt >= 0, as a real model does
    if opts == "h0":
        kw["initial_state"] = x["h0"]
    leaves = {k: v.clone().requires_grad_() for k, v in x.items() if k in ("u", "delta", "A", "B", "C")}
    leaves.update({k: v.clone().requires_grad_() for k, v in kw.items() if isinstance(v, torch.Tensor)})
    extra = {k: leaves.get(k, v) for k, v in kw.items()}

    def run(fn, **more):
        y, h = fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], return_last_state=True,
                  **extra, **more)
        g = torch.autograd.grad((y * torch.cos(y.detach())).sum() + (h * 0.3).sum(), list(leaves.values()))
        return y, h, g

    y_ref, h_ref, g_ref = run(selective_scan_ref)
    y, h, g = run(selective_scan, backend=backend)
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(h, h_ref, atol=1e-4, rtol=1e-4)
    for name, a, b in zip(leaves, g, g_ref):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=2e-4, msg=lambda m: f"grad of {name}: {m}")


def test_reference_loop_against_float64_closed_form():
    # For one channel and one state, h_t = sum_s prod_{s<r<=t} a_r * dt_s u_s B_s: check it in float64.
    x = inputs(1, 1, 6, 1, double=True)
    x["delta"] = x["delta"].abs()
    y = selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"]).double()
    dt, u, A, B, C = x["delta"][0, 0], x["u"][0, 0], x["A"][0, 0], x["B"][0, 0], x["C"][0, 0]
    for t in range(6):
        h = sum(torch.exp(A * dt[s + 1 : t + 1].sum()) * dt[s] * u[s] * B[s] for s in range(t + 1))
        assert abs(float(y[0, 0, t]) - float(C[t] * h)) < 1e-5


def test_dispatcher_picks_compiled_cpu_kernel_when_present():
    u = torch.zeros(1, 1, 1)
    assert pick_backend(u) == ("numba" if _kernels.numba_scan is not None else "torch")
    with pytest.raises(ValueError, match="unknown selective_scan backend"):
        selective_scan(u, u, torch.zeros(1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), backend="nope")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_backends_match_reference():
    x = {k: v.cuda() for k, v in inputs(2, 8, 64, 16).items()}
    ref = selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    got = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    torch.testing.assert_close(got, ref, atol=1e-3, rtol=1e-3)
