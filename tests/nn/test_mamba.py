"""Mamba block: exact padding (left or right, any width, any batch mates) and step == forward."""

import os
import subprocess
import sys

import pytest
import torch

from echorec.nn import _kernels
from echorec.nn.mamba import Mamba

BACKENDS = ["torch", "ref"] + (["numba"] if _kernels.numba_scan is not None else [])


def block(backend):
    torch.manual_seed(0)
    return Mamba(16, d_state=8, d_conv=4, expand=2, backend=backend).eval()


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_is_exact(backend):
    m = block(backend)
    g = torch.Generator().manual_seed(1)
    real = torch.randn(1, 13, 16, generator=g)
    with torch.no_grad():
        alone = m(real)
        for width in (50, 200):
            for side in ("left", "right"):
                x = torch.randn(3, width, 16, generator=g)  # garbage everywhere, batch mates included
                mask = torch.zeros(3, width, dtype=torch.bool)
                sl = slice(width - 13, width) if side == "left" else slice(0, 13)
                x[1, sl] = real[0]
                mask[1, sl] = True
                mask[0, :5] = True
                mask[2] = True
                out = m(x, mask)
                torch.testing.assert_close(out[1, sl], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_equals_forward(backend):
    m = block(backend)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        full, (conv, h) = m(x, return_state=True)
        state = m.allocate_state(2)
        outs = []
        for t in range(9):
            y, state = m.step(x[:, t], state)
            outs.append(y)
    torch.testing.assert_close(torch.stack(outs, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state[1], h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state[0], conv, atol=1e-6, rtol=1e-6)


def test_init_follows_mamba():
    m = Mamba(32, d_state=16, dt_min=0.001, dt_max=0.1)
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.001 * 0.99 and dt.max() <= 0.1 * 1.01
    torch.testing.assert_close(-torch.exp(m.A_log[0]), -torch.arange(1, 17).float())
    assert m.dt_rank == 2 and m.d_inner == 64


@pytest.mark.skipif(_kernels.numba_scan is None, reason="needs numba")
@pytest.mark.parametrize("L", [1, 3, 50, 130])
def test_fused_cpu_block_matches_reference_outputs_and_every_gradient(L):
    # The numba path fuses the conv + SiLU and the softplus/D/gate into its kernels, on (B, L, d)
    # memory; the "ref" path is torch's conv1d and the plain fp32 loop. Same weights, same answers.
    torch.manual_seed(L)
    fast = Mamba(16, d_state=8, d_conv=4, expand=2, backend="numba")
    ref = Mamba(16, d_state=8, d_conv=4, expand=2, backend="ref")
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, L, 16)
    mask = torch.ones(3, L, dtype=torch.bool)
    mask[1, : L // 2] = False  # left padding in one row
    outs, grads = [], []
    for m in (fast, ref):
        xi = x.clone().requires_grad_()
        y = m(xi, mask)
        (y * torch.sin(y.detach())).sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad] + [p.grad for p in m.parameters()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)
    names = ["x"] + [n for n, _ in fast.named_parameters()]
    for name, a, b in zip(names, grads[0], grads[1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda msg: f"grad of {name}: {msg}")


@pytest.mark.skipif(_kernels.numba_scan is None, reason="numba not installed")
def test_kernels_keep_the_thread_count_torch_was_given():
    # A fresh process, as a `--threads 1` training is: numba's pool starts on the first kernel call,
    # sized NUMBA_NUM_THREADS (2 here, whatever the cores), and once raised torch's count with it.
    code = ("import torch; torch.set_num_threads(1); import numba; from echorec.nn.mamba import Mamba; "
            "x = torch.randn(4, 9, 16, requires_grad=True); Mamba(16, d_state=4).forward(x).sum().backward(); "
            "print(torch.get_num_threads(), numba.get_num_threads())")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "1"]


def test_the_backend_is_resolved_when_built_or_moved_never_in_forward(monkeypatch):
    import echorec.nn.mamba as mamba_mod
    from echorec.nn import _kernels

    m = Mamba(16, d_state=8, backend="auto")
    cpu = "numba" if _kernels.numba_scan is not None else "torch"
    assert (m.backend_choice, m.backend) == ("auto", cpu)
    calls = []
    real = mamba_mod.choose_backend
    monkeypatch.setattr(mamba_mod, "choose_backend", lambda *a, **k: calls.append(a) or real(*a, **k))
    x = torch.randn(2, 5, 16)
    for _ in range(3):
        m(x, torch.ones(2, 5, dtype=torch.bool))
    assert calls == []  # no forward pass picks
    m.to("meta")
    assert len(calls) == 1 and m.backend == "torch"  # moved: picked again, once
    m.to_empty(device="cpu")
    assert m.backend == cpu
    m.set_backend("ref")
    assert (m.backend, m.backend_why) == ("ref", "set by --backend")
    m.to("cpu")
    assert m.backend == "ref"  # a forced backend stays through moves
    with pytest.raises(ValueError, match="unknown selective_scan backend"):
        m.set_backend("")


def test_models_report_their_scan_and_old_configs_read_the_empty_backend_as_auto():
    from echorec.config import run_config_from_dict
    from echorec.models import build_model

    rc = run_config_from_dict({"model": "mamba4rec", "model_cfg": {"backend": ""}})
    assert rc.model_cfg.backend == "auto"
    model = build_model("mamba4rec", 20, rc.model_cfg, max_len=10)
    assert model.scan_summary().startswith("scan: ")
    model.prepare_export()
    assert model.scan_summary() == "scan: torch (set by --backend)"
    assert build_model("sasrec", 20, run_config_from_dict({"model": "sasrec"}).model_cfg, max_len=10).scan_summary() is None
