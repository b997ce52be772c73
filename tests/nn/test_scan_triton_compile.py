"""The Triton scan kernels compiled ahead of time for real GPUs (sm_80 and sm_90), on this CPU-only machine.

The interpreter tests (test_scan_triton.py) check what the kernels compute; they cannot see what only the
compiler refuses (a loop-carried value that changes type, a non-constexpr where one is needed) nor how the
compiled kernel uses the chip. Here Triton's own NVIDIA toolchain (bundled with the triton wheel, no driver
or GPU needed) lowers every tile `launch_config` picks to a cubin, and ptxas' report must show the kernel
below the register cap (255 per thread) with at most a few bytes spilled. ptxas spills a handful of bytes
even at 40 registers, differently per arch and version, so only a real spill counts: an oversized tile
spills hundreds of bytes, local-memory traffic in the innermost loop over time. And one epoch's batch
widths must need one compiled variant of each kernel, not one per width class.

The compiles run in a separate process (_triton_aot.py), and this module never imports triton itself:
in one process, a compile after the interpreter has run fails (it leaves triton.language patched), and
triton imported before test_scan_triton.py turns the interpreter on breaks that module's kernels.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (pip install triton)", allow_module_level=True)

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_triton_aot.py")
REG_CAP, FEW_BYTES = 255, 64

# (dim, N): the Mamba block's channels (hidden 64 x expand 2) at the state sizes users pick, and the tests' tiny
# one. Flags off only at the default N; the other input dtypes at the default shape.
SHAPES = [(dim, n, "bf16", True) for dim, n in ((128, 16), (128, 32), (128, 64), (5, 16))]
SHAPES += [(128, 32, "bf16", False), (128, 32, "fp32", True), (128, 32, "fp16", True)]
CASES = [{"which": w, "cap": cap, "dim": d, "N": n, "dtype": t, "flags": f}
         for d, n, t, f in SHAPES for w in ("fwd", "bwd") for cap in (80, 90)]
# The same backward tile on 4 warps instead of 8: at the register cap at N = 32, a kilobyte spilled at N = 64.
OVERSIZED = [{"which": "bwd", "cap": 90, "tile": [32, bn, 4], "dtype": "bf16", "flags": True} for bn in (32, 64)]


def run_helper(*args: str):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, HELPER, *args], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    if isinstance(got, dict) and "skip" in got:
        pytest.skip(got["skip"])
    return got


@pytest.fixture(scope="module")
def compiled() -> list[dict]:
    return run_helper("compile", json.dumps(CASES + OVERSIZED))


@pytest.mark.parametrize("i", range(len(CASES)),
                         ids=[f"{c['which']}-sm{c['cap']}-d{c['dim']}N{c['N']}{c['dtype']}{'' if c['flags'] else '-noflags'}"
                              for c in CASES])
def test_kernels_compile_for_the_gpu_within_the_register_budget(compiled, i):
    got = compiled[i]
    assert got["rc"] == 0 and got["cubin_bytes"] > 1000, got["report"]
    assert got["regs"] < REG_CAP and 0 <= got["spills"] <= FEW_BYTES, f"tile {got['tile']}:\n{got['report']}"


def test_the_budget_check_sees_an_oversized_tile(compiled):
    """The check above can fail: the default backward tile on 4 warps sits at the register cap (N = 32), and
    twice that tile spills far more than a few bytes (N = 64)."""
    at_cap, spilling = compiled[len(CASES):]
    assert at_cap["regs"] >= REG_CAP, at_cap["report"]
    assert spilling["spills"] > 10 * FEW_BYTES, spilling["report"]


def test_one_epochs_batch_widths_compile_each_kernel_once():
    """Every batch width of an epoch (multiples of 8 up to max_len 50, the GPU's rounding) must map to the same
    compiled variant of each kernel: a variant per width class would be a compile pause in the first epoch."""
    got = run_helper("variants")
    assert got == {"fwd": 1, "bwd": 1}


def test_launch_config_keeps_tiles_within_the_budget():
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("run with test_scan_triton.py, which turns the interpreter on before triton is imported")
    from echorec.nn import _scan_triton as S  # launch_config is plain Python

    for dim in (1, 5, 64, 128, 1024):
        for N in (1, 16, 17, 32, 64, 128, 256):
            bd, bn, _ = S.launch_config(dim, N)
            assert bn >= N and bn & (bn - 1) == 0 and bd & (bd - 1) == 0
            assert bd <= S.BLOCK_D and (bd * bn <= S.TILE or bd == 1)
            assert bd >= min(dim, S.BLOCK_D, max(1, S.TILE // bn))
