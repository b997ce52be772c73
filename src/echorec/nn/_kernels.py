"""The one place that try-imports optional compiled kernels.

- mamba_ssm (CUDA): its fused `selective_scan_fn`, used for CUDA tensors when importable.
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
}


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
