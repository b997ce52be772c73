"""What this machine is, in one line, for run folders and benchmark tables.

Figures from two 2-core VMs can differ by 2.5x when one has AVX-512 (and bf16 autocast) and the other
only AVX2, so every recorded figure names the CPU model and its widest vector instructions, not just
"x86_64 2 cpus".
"""

from __future__ import annotations

import os
import platform

CPUINFO = "/proc/cpuinfo"


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flag set) from /proc/cpuinfo; ("", empty set) where there is none (macOS, Windows)."""
    try:
        with open(CPUINFO) as f:
            text = f.read()
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = " ".join(value.split())
        elif key in ("flags", "Features") and not flags:  # x86 | arm64
            flags = set(value.split())
    return model, flags


def _fast_bf16(flags: set[str]) -> bool:
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), so autocast pays off."""
    return _fast_bf16(_cpuinfo()[1])


def cpu_vector_isa() -> str:
    """The widest vector extension the kernels can use: "avx512+bf16", "avx512", "avx2", "avx", "neon"..."""
    flags = _cpuinfo()[1]
    if "avx512f" in flags:
        return "avx512+bf16" if _fast_bf16(flags) else "avx512"
    for isa in ("avx2", "avx", "asimd", "neon", "sse4_2"):
        if isa in flags:
            return isa
    return "unknown isa"


def machine() -> str:
    """e.g. "x86_64 2 cpus (AMD EPYC, avx2)"."""
    model = _cpuinfo()[0] or platform.processor() or "unknown cpu"
    return f"{platform.machine()} {os.cpu_count()} cpus ({model}, {cpu_vector_isa()})"


def environment() -> str:
    """machine() with torch's version and the thread setting: what a timed result depends on."""
    import torch

    return f"{machine()}, torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}"


def git_commit(short: bool = True) -> str:
    """The checkout's commit (for results files), or "unknown" outside a git checkout."""
    import subprocess

    cmd = ["git", "rev-parse", "--short", "HEAD"] if short else ["git", "rev-parse", "HEAD"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        return r.stdout.strip() or "unknown"
    except OSError:
        return "unknown"
