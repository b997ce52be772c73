"""The prepared GPU check (run by benchmarks/gpu_check.sh): the figures of issues "GPU without compiling
anything" and "The GPU kept busy", measured in one run on one GPU and written to benchmarks/results/gpu.md.

Sections (each prints as it goes, so a run cut short still shows what it measured):
  1. the selective scan: triton vs mamba_ssm (when installed) vs the reference loop, same fp32 inputs,
     largest relative error of the output and of every gradient;
  2. one Mamba layer forward + backward at L = 50, 200, 800 per scan backend, beside one attention block;
  3. training epochs at the default recipes, bf16: SASRec and EchoMamba4Rec on ml-100k (3 epochs: the
     first and the steady ones) and Beauty (2 epochs); full-ranking evaluation time of the valid users;
  4. `echorec bench speed`'s cells: train ms per 1,000 samples at L = 50 / 200 / 800 (batch 64) and
     batch-1 inference latency (p50), SASRec and EchoMamba4Rec;
  5. the Triton scan's tile (channels per program, warps) swept around launch_config's pick, at a training
     step's shape (forward + backward) and at batch-1 inference, L 800, so the static choice meets the card;
  6. `--compile true` on ml-100k, mode default and reduce-overhead (CUDA graphs), beside section 3's eager
     epochs and metrics: whether compiling pays for itself, and whether it moves the metrics. Last, because
     it may be the slowest: its table is rewritten after every row, so a run cut short keeps what it measured.

--dry-run runs every section on the CPU with tiny sizes and synthetic data (Triton in its interpreter),
so the script is known to work before GPU time is spent on it. Nothing here is estimated: a section
that cannot run says so in the table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE_81D3349 = """\
| what | SASRec | EchoMamba4Rec |
|---|---|---|
| ml-100k epoch, epochs 2-3 | 2.8-3.0 s | 18.7-19.2 s |
| ml-100k first epoch | 9.4 s | 16.2 s |
| Beauty epoch, epochs 2-3 | 4.0 s | 11.3-11.9 s |
| bench speed train ms / 1,000 samples, L = 50 / 200 / 800 | 106 / 86 / 130 | 736 / 3,146 / 12,173 |
| bench speed batch-1 p50, L = 50 / 200 / 800 | 1.4 / 1.1 / 1.9 ms | 11.9 / 29 / 163 ms |
"""


def sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, dev, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scan_section(dev, dry: bool) -> list[str]:
    import torch

    from echorec.nn import _kernels
    from echorec.nn.ssm import selective_scan

    b, d, L, N = (2, 8, 24, 16) if dry else (8, 128, 200, 16)
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(dev)  # noqa: E731
    base = {"u": r(b, d, L), "delta": r(b, d, L) - 1, "A": -torch.exp(r(d, N) * 0.5), "B": r(b, N, L),
            "C": r(b, N, L), "D": r(d), "z": r(b, d, L), "delta_bias": r(d) * 0.5}
    gy = r(b, d, L)

    def run(backend):
        t = {k: v.clone().requires_grad_(True) for k, v in base.items()}
        y = selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"],
                           delta_softplus=True, backend=backend)
        (y * gy).sum().backward()
        return {"y": y.detach(), **{f"d{k}": v.grad for k, v in t.items()}}

    ref = run("ref")
    rows = [f"Inputs: batch {b}, dim {d}, L {L}, N {N}, fp32, z, D and delta_bias given. Largest |x - ref| / max|ref| "
            "per tensor.", "", "| backend | " + " | ".join(ref) + " |", "|---|" + "---:|" * len(ref)]
    for backend in ("triton", "mamba_ssm"):
        if backend == "mamba_ssm" and _kernels.mamba_ssm_scan is None:
            rows.append("| mamba_ssm | not installed here |" + " |" * (len(ref) - 1))
            continue
        if dev.type != "cuda" and backend == "mamba_ssm":
            continue
        got = run(backend)
        errs = [float((got[k] - ref[k]).abs().max() / ref[k].abs().max().clamp(min=1e-12)) for k in ref]
        rows.append(f"| {backend} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")
        print(f"scan {backend}: max rel err {max(errs):.2e}", flush=True)
    return rows


def layer_section(dev, dry: bool) -> list[str]:
    import torch

    from echorec.nn import _kernels
    from echorec.nn.attention import TransformerBlock
    from echorec.nn.mamba import Mamba

    lengths = (16, 32) if dry else (50, 200, 800)
    batch, D, reps = (4, 16, 2) if dry else (64, 64, 5)
    backends = ["triton", "torch"] + (["mamba_ssm"] if _kernels.mamba_ssm_scan is not None and dev.type == "cuda"
                                      else [])
    if dev.type != "cuda":
        backends = ["triton", "numba"]
    rows = [f"Batch {batch}, d_model {D} (Mamba: d_state 32, expand 2), forward + backward, median of {reps}, "
            "fp32 weights under bf16 autocast on CUDA.", "",
            "| L | " + " | ".join(f"mamba ({b}) ms" for b in backends) + " | attention block ms |",
            "|---:|" + "---:|" * (len(backends) + 1)]
    for L in lengths:
        x = torch.randn(batch, L, D, device=dev, requires_grad=True)
        mask = torch.ones(batch, L, dtype=torch.bool, device=dev)
        cells = []
        for backend in backends:
            if backend == "torch" and L > 200:
                cells.append("(slow, not run)")
                continue
            m = Mamba(D, d_state=32, backend=backend).to(dev)

            def step(m=m):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                    out = m(x, mask)
                out.float().sum().backward()

            try:
                cells.append(f"{median_time(step, dev, reps) * 1000:.2f}")
            except Exception as e:  # a backend that fails here is a finding, not a crash of the check
                cells.append(f"failed: {type(e).__name__}")
                traceback.print_exc()
        blk = TransformerBlock(D, 2, 4 * D, 0.1, 0.1).to(dev)

        def attn():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out = blk(x, None, causal=True)
            out.float().sum().backward()

        cells.append(f"{median_time(attn, dev, reps) * 1000:.2f}")
        rows.append(f"| {L} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


EAGER: dict = {}  # (dataset, model) -> section 3's _fmt_run cells, shown beside section 6's compiled runs


def _fmt_run(res) -> tuple[str, str, str]:
    """A run's table cells: epoch 1 seconds, the later epochs' seconds, the last valid NDCG@10."""
    secs = [h["seconds"] for h in res.history]
    return f"{secs[0]:.2f}", ", ".join(f"{x:.2f}" for x in (secs[1:] or secs)), f"{res.history[-1]['valid_ndcg@10']:.4f}"


def train_section(dev, data: dict, dry: bool) -> list[str]:
    import torch

    from echorec.config import RunConfig
    from echorec.data.split import load_split
    from echorec.eval.evaluate import evaluate
    from echorec.models import get_model_class
    from echorec.training.loop import train_model

    rows = ["Default recipes (batch 256, max_len 50, prefix samples, full CE), amp bf16 on CUDA; 'eval s' is one "
            "full-ranking pass over the valid users after training (median of 3).", "",
            "| dataset | model | epoch 1 s | later epochs s | samples/s (later) | eval s | valid NDCG@10 (last) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for label, (path, epochs) in data.items():
        for model in ("sasrec", "echomamba4rec"):
            rc = RunConfig(model=model, model_cfg=get_model_class(model).Config())
            rc.data.dataset = path
            rc.train.epochs, rc.train.patience, rc.train.progress = epochs, 0, False
            rc.train.device = str(dev)
            rc.eval.exclude_history = label != "ml-100k"
            if dry:
                rc.train.batch_size = 32
            _, split = load_split(rc.data)
            try:
                res = train_model(rc, split, None, quiet=True)
            except Exception as e:
                rows.append(f"| {label} | {model} | failed: {type(e).__name__}: {e} | | | | |")
                traceback.print_exc()
                continue
            first, later, ndcg = EAGER[(label, model)] = _fmt_run(res)
            ev = median_time(lambda: evaluate(res.model, split, "valid", rc.eval, rc.data.max_len, dev), dev, 3, 0)  # noqa: F821
            rows.append(f"| {label} | {model} | {first} | {later} | {res.history[-1]['samples_per_s']:,.0f} | "
                        f"{ev:.3f} | {ndcg} |")
            print(rows[-1], flush=True)
            del res
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def speed_section(dev, dry: bool) -> list[str]:
    from echorec.bench.speed import measure

    lengths = (16, 32) if dry else (50, 200, 800)
    rows = ["`echorec bench speed` cells in this process: batch 64, 5,000 items, amp auto.", "",
            "| model | L | train ms / 1,000 samples | batch-1 p50 ms | batch-1 p99 ms | peak MiB |",
            "|---|---:|---:|---:|---:|---:|"]
    for model in ("sasrec", "echomamba4rec"):
        for L in lengths:
            try:
                r = measure(model, L, 200 if dry else 5000, 8 if dry else 64, 2 if dry else 5, str(dev), "auto",
                            b1_calls=5 if dry else 50)
                rows.append(f"| {model} | {L} | {r['train_ms_per_1000']:.0f} | {r['b1_p50_ms']:.2f} | "
                            f"{r['b1_p99_ms']:.2f} | {r['peak_mib']:.0f} |")
            except Exception as e:
                rows.append(f"| {model} | {L} | failed: {type(e).__name__} | | | |")
                traceback.print_exc()
            print(rows[-1], flush=True)
    return rows


def tiles_section(dev, dry: bool) -> list[str]:
    import torch

    from echorec.nn import _kernels
    from echorec.nn.ssm import selective_scan

    S = _kernels.triton_scan()
    if S is None:
        return ["triton is not installed here"]
    # (case, batch, dim, L, N, repeats, with backward): a training step's scan, and batch-1 inference at L 800
    # (the latency target), where few programs run and fewer channels each may shorten every time step.
    cases = [("train", 1, 8, 6, 16, 1, True), ("batch-1", 1, 8, 6, 16, 1, False)] if dry else \
        [("train", 64, 128, 200, 32, 10, True), ("batch-1", 1, 128, 800, 32, 20, False)]
    tiles = ((32, 8), (32, 4), (16, 8), (16, 4), (8, 4), (4, 4), (64, 8))
    what = "; ".join(f"{c[0]}: batch {c[1]}, dim {c[2]}, L {c[3]}, N {c[4]}, "
                     f"{'forward + backward' if c[6] else 'forward only (no grad)'}, median of {c[5]}" for c in cases)
    rows = [f"selective_scan(backend='triton'), fp32, z, D and delta_bias given. {what}. "
            "(pick) marks launch_config's choice.", "",
            "| channels per program | warps | " + " | ".join(f"{c[0]} ms" for c in cases) + " |",
            "|---:|---:|" + "---:|" * len(cases)]
    real = S.launch_config
    timings = {}
    try:
        for name, b, d, L, N, reps, grad in cases:
            g = torch.Generator().manual_seed(0)
            r = lambda *s: torch.randn(*s, generator=g).to(dev)  # noqa: E731
            t = {"u": r(b, d, L), "delta": r(b, d, L) - 1, "A": -torch.exp(r(d, N) * 0.5), "B": r(b, N, L),
                 "C": r(b, N, L), "D": r(d), "z": r(b, d, L), "delta_bias": r(d) * 0.5}
            t = {k: v.requires_grad_(grad) for k, v in t.items()}
            gy = r(b, d, L)

            def step(t=t, gy=gy, grad=grad):
                with torch.set_grad_enabled(grad):
                    y = selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"],
                                       delta_softplus=True, backend="triton")
                if grad:
                    y.backward(gy)

            pick = real(d, N)
            for bd, warps in tiles:
                p2 = S.triton.next_power_of_2
                S.launch_config = lambda dim, n, bd=bd, warps=warps: (min(bd, p2(dim)), p2(n), warps)
                try:
                    cell = f"{median_time(step, dev, reps) * 1000:.2f}"
                except Exception as e:
                    cell = f"failed: {type(e).__name__}"
                    traceback.print_exc()
                timings[(bd, warps, name)] = cell + (" (pick)" if (bd, warps) == (pick[0], pick[2]) else "")
                print(f"tiles {name} {bd}x{warps}: {timings[(bd, warps, name)]}", flush=True)
    finally:
        S.launch_config = real
    for bd, warps in tiles:
        rows.append(f"| {bd} | {warps} | " + " | ".join(timings.get((bd, warps, c[0]), "") for c in cases) + " |")
    return rows


@contextlib.contextmanager
def _trace_only(dry: bool):
    """In a dry run, torch.compile with dynamo's "eager" backend: the model is traced exactly as on the GPU
    (graph breaks, guards, recompiles per shape) but no kernels are generated, which on a CPU takes minutes."""
    import torch

    real = torch.compile
    if dry:
        torch.compile = lambda model, mode=None, **kw: real(model, backend="eager")
    try:
        yield
    finally:
        torch.compile = real


def compile_section(dev, data: dict, dry: bool, flush=None) -> list[str]:
    import torch

    from echorec.config import RunConfig
    from echorec.data.split import load_split
    from echorec.models import get_model_class
    from echorec.training.loop import train_model

    label = "synthetic" if dry else "ml-100k"
    path, epochs = data[label]
    modes = ("default",) if dry else ("default", "reduce-overhead")
    rows = [f"{label}, the training section's recipe and seed, {epochs} epochs; epoch 1 includes compiling. Eager "
            "figures are section 3's, from this same run.", "",
            "| model | mode | epoch 1 s | later epochs s | valid NDCG@10 (last) | eager: epoch 1 / later s | eager NDCG@10 |",
            "|---|---|---:|---:|---:|---:|---:|"]
    split = None
    for model in ("sasrec", "echomamba4rec"):
        for mode in modes:
            rc = RunConfig(model=model, model_cfg=get_model_class(model).Config())
            rc.data.dataset = path
            rc.train.epochs, rc.train.patience, rc.train.progress = epochs, 0, False
            rc.train.device, rc.train.compile, rc.train.compile_mode = str(dev), True, mode
            if dry:
                rc.train.batch_size = 32
            if split is None:
                _, split = load_split(rc.data)
            eager = EAGER.get((label, model))
            ecells = f"{eager[0]} / {eager[1]} | {eager[2]}" if eager else "(not run) |"
            try:
                torch._dynamo.reset()  # each row compiles from scratch, as a fresh run would
                with _trace_only(dry):
                    first, later, ndcg = _fmt_run(train_model(rc, split, None, quiet=True))
                rows.append(f"| {model} | {mode} | {first} | {later} | {ndcg} | {ecells} |")
            except Exception as e:
                rows.append(f"| {model} | {mode} | failed: {type(e).__name__}: {str(e)[:120]} | | | {ecells} |")
                traceback.print_exc()
            print(rows[-1], flush=True)
            if flush:
                flush(rows)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def synthetic(folder: str) -> str:
    import numpy as np

    rng = np.random.default_rng(0)
    path = os.path.join(folder, "synthetic.txt")
    with open(path, "w") as f:
        for u in range(1, 121):
            f.write(f"{u} " + " ".join(str(int(x)) for x in rng.integers(1, 60, size=rng.integers(5, 20))) + "\n")
    return path


def header(dev, dry_run: bool) -> list[str]:
    """The report's title and the line naming the commit, GPU, library versions and host."""
    import importlib.util

    import torch

    from echorec import sysinfo

    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else "none (dry run on the CPU)"
    return [f"# GPU check{' (DRY RUN: CPU, tiny sizes; not GPU figures)' if dry_run else ''}", "",
            f"`bash benchmarks/gpu_check.sh` at commit {sysinfo.git_commit()}; GPU: {gpu}; torch {torch.__version__}; "
            f"triton {getattr(importlib.util.find_spec('triton') and __import__('triton'), '__version__', 'absent')}; "
            f"mamba_ssm {'installed' if importlib.util.find_spec('mamba_ssm') else 'not installed'}; "
            f"host {sysinfo.machine()}.", ""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, synthetic data")
    ap.add_argument("--data", default=os.path.join(HERE, "..", ".gpu", "data"),
                    help="folder with ml-100k.inter and Beauty.txt (benchmarks/gpu_prepare.sh copies them)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "gpu.md"))
    ap.add_argument("--sections", default="scan,layer,train,speed,tiles,compile")
    args = ap.parse_args()
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before the Triton kernels are imported
    import torch


    dev = torch.device("cpu" if args.dry_run else "cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    if args.dry_run:
        import tempfile

        tmp = tempfile.mkdtemp()
        data = {"synthetic": (synthetic(tmp), 2)}
    else:
        data = {"ml-100k": (os.path.join(args.data, "ml-100k.inter"), 3), "Beauty": (os.path.join(args.data, "Beauty.txt"), 2)}
    head = header(dev, args.dry_run)
    sections = {"scan": ("Selective scan: agreement with the reference", lambda: scan_section(dev, args.dry_run)),
                "layer": ("One Mamba layer vs one attention block", lambda: layer_section(dev, args.dry_run)),
                "train": ("Training epochs and evaluation", lambda: train_section(dev, data, args.dry_run)),
                "speed": ("Speed cells", lambda: speed_section(dev, args.dry_run)),
                "tiles": ("Triton scan tiles", lambda: tiles_section(dev, args.dry_run)),
                "compile": ("torch.compile and CUDA graphs", lambda: compile_section(dev, data, args.dry_run, flush))}
    body: list[str] = []

    def write(extra: list[str]) -> None:
        # Rewritten after every section (and every row of the long ones): a run cut short keeps what it measured.
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write("\n".join(head + body + extra + ["## The first GPU reading (81d3349, before this check existed)",
                                                     "", BASELINE_81D3349]))

    for name in args.sections.split(","):
        title, fn = sections[name]
        t0 = time.perf_counter()
        print(f"== {title}", flush=True)

        def flush(rows, title=title):
            write([f"## {title}", "", *rows, "", "(cut short here if nothing follows)", ""])

        try:
            rows = fn()
        except Exception as e:
            traceback.print_exc()
            rows = [f"failed: {type(e).__name__}: {e}"]
        body += [f"## {title}", "", *rows, "", f"({time.perf_counter() - t0:.0f} s)", ""]
        write([])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(HERE, "..", "src"))
    sys.exit(main())
