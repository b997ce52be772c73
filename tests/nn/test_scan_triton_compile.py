"""The Triton scan kernels compiled ahead of time for real GPUs (sm_80 and sm_90), on this CPU-only machine.

The interpreter tests (test_scan_triton.py) check what the kernels compute; they cannot see what only the
compiler refuses (a loop-carried value that changes type, a non-constexpr where one is needed) nor how the
compiled kernel uses the chip. Here Triton's own NVIDIA toolchain (bundled with the triton wheel, no driver
or GPU needed) lowers every tile `launch_config` picks to a cubin, and ptxas' report must show the kernel
below the register cap (255 per thread) with at most a few bytes spilled. ptxas spills a handful of bytes
even at 40 registers, differently per arch and version, so only a real spill counts: an oversized tile
spills hundreds of bytes, local-memory traffic in the innermost loop over time.
"""

import importlib.util
import os
import re
import subprocess

import pytest

triton = pytest.importorskip("triton", reason="triton is not installed (pip install triton)")
if "nvidia" not in getattr(triton.backends, "backends", {}):
    pytest.skip("this triton build has no NVIDIA backend", allow_module_level=True)

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

KERNELS = os.path.join(os.path.dirname(__file__), "..", "..", "src", "echorec", "nn", "_scan_triton.py")
SEQ_INPUTS = ("u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr")  # take the caller's dtype; the rest are fp32
REG_CAP, FEW_BYTES = 255, 64


def pressure(report: str) -> tuple[int, int]:
    """(registers per thread, bytes of spill stores) from ptxas -v's report."""
    regs = [int(x) for x in re.findall(r"Used (\d+) registers", report)]
    spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", report)]
    assert regs and spills, report
    return max(regs), max(spills)


@pytest.fixture(scope="module")
def kernels():
    """The kernel module, decorated for compiling: another test module may have set TRITON_INTERPRET, which
    @triton.jit reads when the module is executed, so load a private copy with it unset."""
    saved = os.environ.pop("TRITON_INTERPRET", None)
    try:
        spec = importlib.util.spec_from_file_location("echorec_scan_triton_aot", KERNELS)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is not None:
            os.environ["TRITON_INTERPRET"] = saved
    assert isinstance(mod._fwd_kernel, triton.runtime.JITFunction)
    return mod


def compile_and_report(kern, consts: dict, dtype: str, cap: int, warps: int) -> tuple[object, str]:
    sig = {}
    for name in kern.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*" + (dtype if name in SEQ_INPUTS else "fp32")
        else:
            sig[name] = "i32"
    compiled = triton.compile(ASTSource(fn=kern, signature=sig, constexprs=consts), target=GPUTarget("cuda", cap, 32),
                              options={"num_warps": warps})
    ptx = compiled.asm["ptx"]
    arch = f"sm_{cap}{'a' if cap >= 90 else ''}"
    r = subprocess.run([get_ptxas(cap).path, "-v", f"--gpu-name={arch}", "-", "-o", os.devnull], input=ptx,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return compiled, r.stderr


# (dim, N): the Mamba block's channels (hidden 64 x expand 2) at the state sizes users pick, and the tests' tiny
# one. Flags off only at the default N; the other input dtypes at the default shape.
CASES = [(dim, n, "bf16", True) for dim, n in ((128, 16), (128, 32), (128, 64), (5, 16))]
CASES += [(128, 32, "bf16", False), (128, 32, "fp32", True), (128, 32, "fp16", True)]


@pytest.mark.parametrize("cap", [80, 90], ids=["sm80", "sm90"])
@pytest.mark.parametrize("which", ["fwd", "bwd"])
@pytest.mark.parametrize("dim,N,dtype,flags", CASES, ids=[f"d{d}N{n}{t}{'' if f else '-noflags'}" for d, n, t, f in CASES])
def test_kernels_compile_for_the_gpu_within_the_register_budget(kernels, cap, which, dim, N, dtype, flags):
    bd, bn, warps = kernels.launch_config(dim, N)
    consts = {"CHUNK": kernels.CHUNK, "BLOCK_D": bd, "BLOCK_N": bn, "SOFTPLUS": flags, "HAS_Z": flags}
    if which == "fwd":
        consts.update(HAS_H0=flags, SAVE=True)
    kern = kernels._fwd_kernel if which == "fwd" else kernels._bwd_kernel
    compiled, report = compile_and_report(kern, consts, dtype, cap, warps)
    assert len(compiled.asm["cubin"]) > 1000
    regs, spilled = pressure(report)
    assert regs < REG_CAP and spilled <= FEW_BYTES, f"tile ({bd}, {bn}) on {warps} warps:\n{report}"


@pytest.mark.parametrize("bn,limit", [(32, "register cap"), (64, "spill")])
def test_the_budget_check_sees_an_oversized_tile(kernels, bn, limit):
    """The check above can fail: the backward's 32-channel tile on 4 warps instead of 8 sits at the register cap
    at N = 32 and spills about a kilobyte at N = 64."""
    consts = {"CHUNK": kernels.CHUNK, "BLOCK_D": 32, "BLOCK_N": bn, "SOFTPLUS": True, "HAS_Z": True}
    _, report = compile_and_report(kernels._bwd_kernel, consts, "bf16", 90, 4)
    regs, spilled = pressure(report)
    assert regs >= REG_CAP if limit == "register cap" else spilled > 10 * FEW_BYTES


def test_launch_config_keeps_tiles_within_the_budget(kernels):
    for dim in (1, 5, 64, 128, 1024):
        for N in (1, 16, 17, 32, 64, 128, 256):
            bd, bn, warps = kernels.launch_config(dim, N)
            assert bn >= N and bn & (bn - 1) == 0 and bd & (bd - 1) == 0
            assert bd <= kernels.BLOCK_D and (bd * bn <= kernels.TILE or bd == 1)
            assert bd >= min(dim, kernels.BLOCK_D, max(1, kernels.TILE // bn))
