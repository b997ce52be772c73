"""The one place that try-imports optional compiled kernels.

- mamba_ssm (CUDA): its fused `selective_scan_fn`, used for CUDA tensors when importable.
- triton (CUDA; on CPU tensors only under TRITON_INTERPRET=1): our own scan kernels in `_scan_triton.py`,
  loaded on first use by `triton_scan()` (importing Triton costs time a CPU run need not pay).
- numba (CPU): our own scan kernels in `_scan_cpu.py`.
Each is None when missing; `missing(name)` says how to get it.
"""

from __future__ import annotations

import torch

try:  # pragma: no cover - needs a CUDA build of mamba_ssm
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_ssm_scan
except Exception:  # ImportError, or a CUDA/ABI error while loading the extension
    mamba_ssm_scan = None

try:
    from echorec.nn import _scan_cpu as numba_scan
except ImportError:  # numba not installed
    numba_scan = None

INSTALL = {
    "mamba_ssm": "pip install mamba-ssm (needs a CUDA GPU and toolkit)",
    "numba": "pip install numba",
    "triton": "pip install triton (PyTorch's Linux CUDA wheels already include it)",
}

_triton = []  # [module or None] once tried


def triton_scan():
    """The Triton scan kernels (module echorec.nn._scan_triton), or None where triton cannot be imported."""
    if not _triton:
        try:
            from echorec.nn import _scan_triton
        except Exception:  # ImportError, or a triton that fails to initialise
            _scan_triton = None
        _triton.append(_scan_triton)
    return _triton[0]


def missing(name: str) -> str:
    return f"the {name} backend is not available ({INSTALL[name]})"


_pool_started = False


def numba_threads() -> None:
    """Run the next numba kernel calls on as many threads as torch uses (torch.set_num_threads, --threads).

    numba starts its OpenMP thread pool on first use with NUMBA_NUM_THREADS threads (default: every
    core), and starting it also raises the OpenMP thread count that torch reads: a run told
    `--threads 1` went on to train on 2 threads in torch and in the kernels, and beside another job
    the spinning threads made it several times slower. So the pool is started here, once, and
    torch's count put back."""
    global _pool_started
    if not _pool_started:
        keep = torch.get_num_threads()
        numba_scan.start_pool()
        torch.set_num_threads(keep)
        _pool_started = True
    numba_scan.set_threads(torch.get_num_threads())
