"""The one place that try-imports optional compiled kernels.

- mamba_ssm (CUDA): its fused `selective_scan_fn`, used for CUDA tensors when importable.
- numba (CPU): our own scan kernels in `_scan_cpu.py`.
Each is None when missing; `missing(name)` says how to get it.
"""

from __future__ import annotations

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
