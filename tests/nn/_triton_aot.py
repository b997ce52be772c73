"""Helper of test_scan_triton_compile.py, run in its own process: Triton's interpreter (TRITON_INTERPRET=1,
used by test_scan_triton.py) patches triton.language while it runs kernels, and a compile in the same
process then fails; so the ahead-of-time compiles run here, with the interpreter off.

    python _triton_aot.py compile '<json list of cases>'   -> json list of {regs, spills, cubin_bytes, tile}
    python _triton_aot.py variants                         -> json {"fwd": n, "bwd": n} or {"skip": why}
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

os.environ.pop("TRITON_INTERPRET", None)  # before triton reads it

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "echorec", "nn", "_scan_triton.py")
SEQ_INPUTS = ("u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr")  # take the caller's dtype; the rest are fp32


def load():
    spec = importlib.util.spec_from_file_location("echorec_scan_triton_aot", KERNELS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert isinstance(mod._fwd_kernel, triton.runtime.JITFunction)
    return mod


def compile_one(S, case: dict) -> dict:
    """case: which (fwd|bwd), cap, dtype, flags, and either dim and N (launch_config picks the tile) or tile."""
    bd, bn, warps = case.get("tile") or S.launch_config(case["dim"], case["N"])
    flags = case["flags"]
    consts = {"CHUNK": S.CHUNK, "BLOCK_D": bd, "BLOCK_N": bn, "SOFTPLUS": flags, "HAS_Z": flags}
    if case["which"] == "fwd":
        consts.update(HAS_H0=flags, SAVE=True)
    kern = S._fwd_kernel if case["which"] == "fwd" else S._bwd_kernel
    sig = {}
    for name in kern.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*" + (case["dtype"] if name in SEQ_INPUTS else "fp32")
        else:
            sig[name] = "i32"
    cap = case["cap"]
    compiled = triton.compile(ASTSource(fn=kern, signature=sig, constexprs=consts), target=GPUTarget("cuda", cap, 32),
                              options={"num_warps": warps})
    arch = f"sm_{cap}{'a' if cap >= 90 else ''}"
    from triton.backends.nvidia.compiler import get_ptxas

    r = subprocess.run([get_ptxas(cap).path, "-v", f"--gpu-name={arch}", "-", "-o", os.devnull],
                       input=compiled.asm["ptx"], capture_output=True, text=True, timeout=120)
    regs = [int(x) for x in re.findall(r"Used (\d+) registers", r.stderr)]
    spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", r.stderr)]
    return {"rc": r.returncode, "regs": max(regs, default=-1), "spills": max(spills, default=-1),
            "cubin_bytes": len(compiled.asm["cubin"]), "tile": [bd, bn, warps], "report": r.stderr[-1500:]}


def variants(S) -> dict:
    """Distinct compiled variants of each kernel over one epoch's batch widths (multiples of 8 up to 50), as
    Triton's own argument binder keys them for an sm_90 target; launches recorded with the Mamba block's
    layouts ((batch, L, dim) memory seen as (batch, dim, L))."""
    import torch

    try:
        from triton.compiler.compiler import make_backend
        from triton.runtime.jit import create_function_from_signature
    except ImportError as e:  # internal API: absent in other triton releases
        return {"skip": f"this triton has no argument binder to check against ({e})"}
    backend = make_backend(GPUTarget("cuda", 90, 32))
    keys: dict = {"fwd": set(), "bwd": set()}

    class Record:
        def __init__(self, name, kern):
            self.name, self.kern = name, kern

        def __getitem__(self, grid):
            def launch(*args, **kw):
                binder = create_function_from_signature(self.kern.signature, self.kern.params, backend)
                _, specialization, options = binder(*args, **kw)
                keys[self.name].add((str(specialization), str(sorted(options.items()))))

            return launch

    S._fwd_kernel, S._bwd_kernel = Record("fwd", S._fwd_kernel), Record("bwd", S._bwd_kernel)
    b, d, N = 4, 128, 32
    for L in (8, 16, 24, 32, 40, 48, 50):
        seq = lambda: torch.randn(b, L, d).transpose(1, 2)  # noqa: E731
        u, delta, z, gy = seq(), seq(), seq(), seq()
        A, D, bias = -torch.rand(d, N), torch.randn(d), torch.randn(d)
        Bt, Ct = torch.randn(b, L, N), torch.randn(b, L, N)
        S.scan_fwd(u, delta, A, Bt, Ct, D, z, bias, None, True, True)
        hck = torch.zeros(b, triton.cdiv(L, S.CHUNK), d, N)
        S.scan_bwd(u, delta, A, Bt, Ct, D, z, bias, hck, gy, torch.zeros(b, d, N), True)
    return {k: len(v) for k, v in keys.items()}


if __name__ == "__main__":
    if "nvidia" not in getattr(triton.backends, "backends", {}):
        print(json.dumps({"skip": "this triton build has no NVIDIA backend"}))
        sys.exit(0)
    S = load()
    if sys.argv[1] == "compile":
        print(json.dumps([compile_one(S, c) for c in json.loads(sys.argv[2])]))
    else:
        print(json.dumps(variants(S)))
