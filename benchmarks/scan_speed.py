"""Forward + backward time and peak memory of one Mamba layer vs. sequence length.

Layer: batch 256, d_model 64, d_state 32, expand 2 (the Mamba4Rec/EchoMamba4Rec size), on the CPU.
Rows: echorec's fast path (numba kernels), the sequential fp32 loop (up to L = 200), mambapy's pscan
Mamba block if mambapy is installed, and a same-width causal attention layer (SASRec's block: hidden
64, 2 heads, FFN 256). Median of --repeats runs after a warm-up. Peak memory is the rise of the
resident-set high-water mark over the runs, measured in a fresh process per (layer, L) after a tiny
warm-up call (so JIT compilation and allocator caches of other runs are not counted).

    python benchmarks/scan_speed.py [--lengths 50,100,200,400,800] [--repeats 5] [--batch 256]

Writes benchmarks/results/scan_speed.{csv,md,png}.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import time

import torch

from echorec import sysinfo

HERE = os.path.dirname(os.path.abspath(__file__))


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def child(name: str, L: int, batch: int, repeats: int) -> None:
    """Runs in its own process: prints 'seconds peak_mib' for one (layer, L)."""
    layer = make_layers()[name]
    step_fn(name, layer, torch.randn(2, 4, 64))()  # compile / warm the code paths on a tiny input
    x = torch.randn(batch, L, 64)
    base = _status("VmRSS")
    fn = step_fn(name, layer, x)
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    print(statistics.median(times), max(_status("VmHWM") - base, 0) / 2**20)


def measure(name: str, L: int, batch: int, repeats: int) -> tuple[float, float]:
    import sys

    out = subprocess.run([sys.executable, __file__, "--child", name, "--lengths", str(L), "--batch", str(batch),
                          "--repeats", str(repeats)], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def make_layers(d_model=64, d_state=32):
    from echorec.nn.attention import TransformerBlock
    from echorec.nn.mamba import Mamba

    torch.manual_seed(0)
    layers = {
        "echorec (numba)": Mamba(d_model, d_state, 4, 2, backend="numba"),
        "loop (fp32 ref)": Mamba(d_model, d_state, 4, 2, backend="ref"),
        "attention (causal)": TransformerBlock(d_model, 2, 4 * d_model, 0.0, 0.0),
    }
    try:
        from mambapy.mamba import MambaBlock, MambaConfig

        layers["mambapy (pscan)"] = MambaBlock(MambaConfig(d_model=d_model, n_layers=1, d_state=d_state,
                                                           expand_factor=2, d_conv=4, pscan=True))
    except ImportError:
        pass
    return layers


def step_fn(name, layer, x):
    def run():
        layer.zero_grad(set_to_none=True)
        xi = x.detach().requires_grad_()
        if name.startswith("attention"):
            out = layer(xi, None, causal=True)
        else:
            out = layer(xi)
        out.sum().backward()

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="50,100,200,400,800")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--loop-max", type=int, default=200)
    ap.add_argument("--mambapy-max", type=int, default=200, help="mambapy materialises (B, L, D, N): ~9 GB at L=200")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--only", default="", help="comma-separated substrings of layer names to run")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    lengths = [int(v) for v in args.lengths.split(",")]
    if args.child:
        return child(args.child, lengths[0], args.batch, args.repeats)
    layers = make_layers()
    rows = []
    for L in lengths:
        for name in layers:
            if args.only and not any(k in name for k in args.only.split(",")):
                continue
            if name.startswith("loop") and L > args.loop_max or name.startswith("mambapy") and L > args.mambapy_max:
                continue
            sec, mem = measure(name, L, args.batch, args.repeats)
            rows.append({"layer": name, "L": L, "seconds": sec, "peak_mib": mem})
            print(f"L={L:4d}  {name:20s} {sec * 1000:9.1f} ms   peak +{mem:8.1f} MiB", flush=True)
    machine = write_tables(args, lengths, rows)
    plot(args, lengths, rows, machine)


def write_tables(args, lengths: list[int], rows: list[dict]) -> str:
    """scan_speed.csv and scan_speed.md in args.out; returns the machine line."""
    commit = sysinfo.git_commit()
    machine = f"{sysinfo.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scan_speed.csv"), "w", newline="") as f:
        f.write(f"# machine: {machine}; commit {commit}; batch {args.batch}, d_model 64, d_state 32, expand 2; "
                f"median of {args.repeats}\n")
        w = csv.DictWriter(f, fieldnames=["layer", "L", "seconds", "peak_mib"])
        w.writeheader()
        w.writerows(rows)
    names = list(dict.fromkeys(r["layer"] for r in rows))
    get = {(r["layer"], r["L"]): r for r in rows}
    md = [f"Forward+backward of one layer, batch {args.batch}, d_model 64, d_state 32, expand 2; median of "
          f"{args.repeats}; {machine}; commit {commit}.", "",
          "| layer | " + " | ".join(f"L={L}" for L in lengths) + " |", "| --- |" + " ---: |" * len(lengths)]
    for n in names:
        md.append(f"| {n} | " + " | ".join(
            f"{get[(n, L)]['seconds'] * 1000:.0f} ms / {get[(n, L)]['peak_mib']:.0f} MiB" if (n, L) in get else "—"
            for L in lengths) + " |")
    ours = "echorec (numba)"
    notes = []
    if (ours, 200) in get and (ours, 800) in get:
        notes.append(f"echorec time(L=800)/time(L=200) = {get[(ours, 800)]['seconds'] / get[(ours, 200)]['seconds']:.2f}")
    for L in (50, 200):
        if ("mambapy (pscan)", L) in get and (ours, L) in get:
            notes.append(f"speed-up over mambapy at L={L}: "
                         f"{get[('mambapy (pscan)', L)]['seconds'] / get[(ours, L)]['seconds']:.1f}x")
    if ("attention (causal)", 800) in get and (ours, 800) in get:
        notes.append(f"attention / echorec at L=800: "
                     f"{get[('attention (causal)', 800)]['seconds'] / get[(ours, 800)]['seconds']:.2f}x")
    md += [""] + [f"- {n}" for n in notes]
    text = "\n".join(md) + "\n"
    print("\n" + text)
    with open(os.path.join(args.out, "scan_speed.md"), "w") as f:
        f.write(text)
    return machine


def plot(args, lengths: list[int], rows: list[dict], machine: str) -> None:
    """scan_speed.png: time and peak memory rise against L, log-log."""
    names = list(dict.fromkeys(r["layer"] for r in rows))
    get = {(r["layer"], r["L"]): r for r in rows}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for n in names:
            Ls = [L for L in lengths if (n, L) in get]
            a1.plot(Ls, [get[(n, L)]["seconds"] for L in Ls], marker="o", label=n)
            a2.plot(Ls, [max(get[(n, L)]["peak_mib"], 0.1) for L in Ls], marker="o", label=n)
        for a, yl in ((a1, "seconds (fwd+bwd)"), (a2, "peak memory rise (MiB)")):
            a.set_xscale("log")
            a.set_yscale("log")
            a.set_xlabel("sequence length L")
            a.set_ylabel(yl)
            a.grid(True, which="both", alpha=0.3)
        a1.legend(fontsize=8)
        fig.suptitle(f"One layer, batch {args.batch}, d=64, N=32 — {machine}", fontsize=9)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "scan_speed.png"), dpi=110)
    except ImportError:
        print("(matplotlib not installed: no plot)")


if __name__ == "__main__":
    main()
