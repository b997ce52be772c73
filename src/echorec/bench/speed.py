"""`echorec bench speed`: training time, inference latency and memory of each model vs sequence length.

Each (model, length) cell runs in a fresh subprocess, so its peak memory is its own (CPU: peak RSS
over the RSS before the first step; CUDA: torch's max_memory_allocated). Inputs are synthetic:
full-length sequences of random items over a fixed catalogue, so every model does the same work
per sample. Per cell:

- training: ms per 1,000 samples of a full step (forward, CE over all items, backward, Adam),
  prefix protocol (one target per sample), the trainer's autocast, median over repeats;
- inference: latency per user of encode + score all items + top-10, at batch 1 (p50/p99 over
  many calls) and batch 256 (p50/p99 over repeats, divided by 256);
- peak memory of the training steps; parameter count.

Writes speed.csv, speed.md and speed_time.png / speed_memory.png / speed_latency.png (log-log,
one line per model) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

FIELDS = ["model", "length", "params", "train_ms_per_1000", "b1_p50_ms", "b1_p99_ms", "b256_p50_ms_per_user",
          "b256_p99_ms_per_user", "peak_mib", "device", "threads"]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[i]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _timed(fn, sync, n: int, per: int = 1) -> list[float]:
    """Seconds of each of n calls of fn (after the device finishes), divided by `per`."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t) / per)
    return out


def _training(model, b, dev, dtype, repeats: int, sync) -> tuple[list[float], float]:
    """Step times of training on batch `b`, and the peak memory above the start (MiB)."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model.loss(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    model.train()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mib()
    step()  # warm-up (first-call allocations and kernel compilation are not timed)
    sync()
    times = _timed(step, sync, repeats)
    if dev.type == "cuda":
        return times, torch.cuda.max_memory_allocated() / 2**20 - base
    return times, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base


def measure(model_name: str, L: int, n_items: int, batch: int, repeats: int, device: str, amp: str,
            b1_calls: int = 50) -> dict:
    """One cell, in this process (call through a subprocess for a clean peak-memory figure)."""
    import torch

    from echorec.data.split import Batch
    from echorec.device import resolve_amp
    from echorec.models import get_model_class

    torch.manual_seed(0)
    dev = torch.device(device)
    cls = get_model_class(model_name)
    model = cls(n_items, L, cls.Config()).to(dev)
    dtype = resolve_amp(amp, dev)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, n_items + 1, (batch, L), generator=g).to(dev)
    target = torch.randint(1, n_items + 1, (batch,), generator=g).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, peak = _training(model, Batch(seq=seq, target=target), dev, dtype, repeats, sync)
    model.eval()

    def infer(s):
        with torch.no_grad(), torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return torch.topk(model.predict(s), 10).indices

    big = torch.randint(1, n_items + 1, (256, L), generator=g).to(dev)
    one = big[:1]
    infer(one), infer(big)  # warm-up
    sync()
    lat1 = _timed(lambda: infer(one), sync, b1_calls)
    lat256 = _timed(lambda: infer(big), sync, repeats, per=256)
    med = sorted(times)[len(times) // 2]
    return {"model": model_name, "length": L, "params": sum(p.numel() for p in model.parameters()),
            "train_ms_per_1000": med / batch * 1000 * 1000,
            "b1_p50_ms": _pct(lat1, 0.5) * 1000, "b1_p99_ms": _pct(lat1, 0.99) * 1000,
            "b256_p50_ms_per_user": _pct(lat256, 0.5) * 1000, "b256_p99_ms_per_user": _pct(lat256, 0.99) * 1000,
            "peak_mib": peak, "device": device, "threads": torch.get_num_threads()}


def write(out: str, rows: list[dict], cmd: str) -> None:
    from echorec.sysinfo import environment as machine
    from echorec.sysinfo import git_commit

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "speed.csv"), "w") as f:
        f.write(",".join(FIELDS) + "\n")
        for r in rows:
            f.write(",".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in FIELDS) + "\n")
    lines = ["# Speed and memory vs sequence length", "",
             f"{machine()}; device {rows[0]['device']}, {rows[0]['threads']} torch threads; commit {git_commit()}; "
             f"`{cmd}`", "",
             "Training: ms per 1,000 samples (median); inference: ms per user (encode + score all + top-10); "
             "peak: memory of the training steps over the model's own.", "",
             "| model | L | params | train ms/1k samples | b1 p50 / p99 ms | b256 p50 / p99 ms/user | peak MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['length']} | {r['params']:,} | {r['train_ms_per_1000']:.0f} | "
                     f"{r['b1_p50_ms']:.2f} / {r['b1_p99_ms']:.2f} | {r['b256_p50_ms_per_user']:.3f} / "
                     f"{r['b256_p99_ms_per_user']:.3f} | {r['peak_mib']:.0f} |")
    lines += ["", "Growth of training time (time(L) / time(shortest L)), and each model's time over SASRec's "
                  "at the same L:", "", "| model | " + " | ".join(f"L={n}" for n in
                                                                     sorted({r['length'] for r in rows})) + " |",
              "| --- | " + " | ".join("---:" for _ in {r['length'] for r in rows}) + " |"]
    by = {(r["model"], r["length"]): r for r in rows}
    lengths = sorted({r["length"] for r in rows})
    for m in dict.fromkeys(r["model"] for r in rows):
        first = by.get((m, lengths[0]))
        cells = []
        for n in lengths:
            r = by.get((m, n))
            if r is None or first is None:
                cells.append("—")
                continue
            s = f"{r['train_ms_per_1000'] / first['train_ms_per_1000']:.2f}x"
            sas = by.get(("sasrec", n))
            if sas and m != "sasrec":
                s += f" ({r['train_ms_per_1000'] / sas['train_ms_per_1000']:.2f} of SASRec)"
            cells.append(s)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    with open(os.path.join(out, "speed.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(out, rows)


def plot(out: str, rows: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return
    for key, ylabel, name in (("train_ms_per_1000", "training ms per 1,000 samples", "speed_time.png"),
                              ("peak_mib", "peak training memory (MiB)", "speed_memory.png"),
                              ("b256_p50_ms_per_user", "inference ms per user (batch 256)", "speed_latency.png")):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for m in dict.fromkeys(r["model"] for r in rows):
            pts = sorted((r["length"], r[key]) for r in rows if r["model"] == m and r[key] > 0)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m, lw=2 if m == "echomamba4rec" else 1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        lengths = sorted({r["length"] for r in rows})
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)


def main(argv=None):
    from echorec.errors import EchorecError
    from echorec.fields import Parser  # one-line errors, status 2, like every other command
    from echorec.models import model_names

    p = Parser(prog="echorec bench speed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(model_names()), help="comma-separated models; default: all")
    p.add_argument("--lengths", default="50,100,200,400,800", help="sequence lengths; default: 50,100,200,400,800")
    p.add_argument("--out", required=True, help="folder for speed.csv, speed.md and the plots")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per cell (the median is reported); default: 5")
    p.add_argument("--batch-size", type=int, default=64, help="training batch")
    p.add_argument("--n-items", type=int, default=3000, help="synthetic catalogue size")
    p.add_argument("--amp", default="auto", help="auto | off | bf16 (as in training)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        lengths = [int(x) for x in args.lengths.split(",") if x]
    except ValueError:
        raise EchorecError(f"--lengths {args.lengths!r}: comma-separated integers") from None
    models = [m for m in args.models.split(",") if m]
    _check_args(args, lengths, models)
    if args.child:  # one cell, result as a JSON line
        r = measure(models[0], lengths[0], args.n_items, args.batch_size, args.repeats, args.device, args.amp)
        print("RESULT " + json.dumps(r), flush=True)
        return
    rows = []
    cmd = "echorec bench speed " + " ".join(sys.argv[1:] if argv is None else argv)
    for m in models:
        for n in lengths:
            child = [sys.executable, "-m", "echorec.bench.speed", "--child", "--models", m, "--lengths", str(n),
                     "--out", args.out, "--device", args.device, "--repeats", str(args.repeats),
                     "--batch-size", str(args.batch_size), "--n-items", str(args.n_items), "--amp", args.amp]
            t = time.perf_counter()
            r = subprocess.run(child, capture_output=True, text=True)
            line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{m} L={n}: FAILED ({tail})", flush=True)
                continue
            row = json.loads(line[7:])
            rows.append(row)
            print(f"{m:14s} L={n:4d}  train {row['train_ms_per_1000']:8.0f} ms/1k  b1 p50 {row['b1_p50_ms']:7.2f} ms"
                  f"  b256 {row['b256_p50_ms_per_user']:6.3f} ms/user  peak {row['peak_mib']:6.0f} MiB"
                  f"  ({time.perf_counter() - t:.0f} s)", flush=True)
            write(args.out, rows, cmd)
    if not rows:
        raise EchorecError(f"every cell failed ({len(models) * len(lengths)}); the lines above say why")
    print(f"\nwrote {os.path.join(args.out, 'speed.md')} and plots")


def _check_args(args, lengths: list[int], models: list[str]) -> None:
    """Every mistake before any cell is measured (or any folder made)."""
    import re

    from echorec.errors import EchorecError
    from echorec.models import get_model_class

    if args.repeats < 5:
        raise EchorecError("--repeats: at least 5 (medians of fewer are noise)")
    if not lengths or min(lengths) < 1:
        raise EchorecError(f"--lengths {args.lengths!r}: positive integers")
    if not models:
        raise EchorecError("--models: name at least one")
    for name, value in (("--batch-size", args.batch_size), ("--n-items", args.n_items)):
        if value < 1:
            raise EchorecError(f"{name} {value}: at least 1")
    if args.amp not in ("auto", "off", "bf16"):
        raise EchorecError(f"--amp {args.amp!r}: use auto, off or bf16")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        raise EchorecError(f"--device {args.device!r}: use cpu, cuda or cuda:N")
    for m in models:
        get_model_class(m)
    if not args.child:
        from echorec.runfolder import check_out_path

        check_out_path(args.out)


if __name__ == "__main__":
    main()
