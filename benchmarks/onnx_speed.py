"""Batch-1 latency of an exported ONNX model in ONNX Runtime beside PyTorch's, for the Mamba models (and SASRec for
reference): one history of max_len items, its top-10, median and p99 of many calls, on the CPU.

    python benchmarks/onnx_speed.py --models mamba4rec,echomamba4rec,sasrec --out benchmarks/results/onnx_speed.md

PyTorch is timed twice: with the scan backend a served model uses on a CPU (`auto`: the numba kernels) and with
the plain torch scan the ONNX graph was traced through. The run folders hold untrained weights at each model's
default settings (latency does not depend on what was learned). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from _output import emit


def make_run(model: str, out: str, n_items: int, max_len: int) -> None:
    import echorec
    from echorec.config import run_config_to_dict
    from echorec.data.preprocess import SeqData
    from echorec.models import build_model
    from echorec.runfolder import RunFolder

    rc = echorec.make_config(model=model, max_len=max_len)
    lens = np.full(20, 5)
    data = SeqData(items=np.arange(1, 101) % n_items + 1, offsets=np.concatenate([[0], np.cumsum(lens)]),
                   item_raw=np.array([f"i{j}" for j in range(1, n_items + 1)]),
                   user_raw=np.array([f"u{j}" for j in range(20)]), source="synthetic")
    folder = RunFolder(out)
    folder.start(run_config_to_dict(rc), data, n_items, data.digest())
    torch.manual_seed(0)
    folder.write_weights(build_model(model, n_items, rc.model_cfg, max_len=max_len).state_dict())


def timed(fn, n: int) -> tuple[float, float]:
    for _ in range(10):
        fn()
    t = []
    for _ in range(n):
        a = time.perf_counter()
        fn()
        t.append(time.perf_counter() - a)
    t.sort()
    return statistics.median(t) * 1000, t[int(0.99 * (len(t) - 1))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mamba4rec,echomamba4rec,sasrec")
    ap.add_argument("--n-items", type=int, default=10_000)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import onnxruntime as ort

    import echorec
    from echorec.runfolder import RunFolder

    work = tempfile.mkdtemp(prefix="echorec_onnx_")
    seq = torch.randint(1, a.n_items + 1, (1, a.max_len), generator=torch.Generator().manual_seed(0))
    rows = []
    for m in a.models.split(","):
        run = os.path.join(work, m)
        make_run(m, run, a.n_items, a.max_len)
        path = echorec.export(run, os.path.join(work, f"{m}.onnx"), k=10)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        _, model, _ = RunFolder(run).load_model("cpu")
        cells = {"model": m, "scan": model.scan_summary() or "-"}
        with torch.no_grad():
            cells["torch"] = timed(lambda: torch.topk(model.predict(seq), 10), a.calls)
            model.prepare_export()  # the torch scan: what the ONNX graph was traced through
            cells["torch_scan"] = timed(lambda: torch.topk(model.predict(seq), 10), a.calls)
        x = seq.numpy()
        cells["onnx"] = timed(lambda: sess.run(None, {"seq": x}), a.calls)
        rows.append(cells)
        print(cells, flush=True)
    from echorec.sysinfo import environment, git_commit

    lines = [f"`python benchmarks/onnx_speed.py --models {a.models} --n-items {a.n_items} --max-len {a.max_len} "
             f"--calls {a.calls}`; {environment()}, {torch.get_num_threads()} torch threads, onnxruntime "
             f"{ort.__version__}; commit {git_commit()}. Batch 1, a history of {a.max_len} items, its top-10; "
             "median / p99 of the calls, ms.", "",
             "| model | PyTorch (served scan) | PyTorch (torch scan) | ONNX Runtime | ONNX / PyTorch served |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for c in rows:
        lines.append(f"| {c['model']} ({c['scan']}) | {c['torch'][0]:.2f} / {c['torch'][1]:.2f} | "
                     f"{c['torch_scan'][0]:.2f} / {c['torch_scan'][1]:.2f} | {c['onnx'][0]:.2f} / {c['onnx'][1]:.2f} | "
                     f"{c['onnx'][0] / c['torch'][0]:.2f} |")
    text = "\n".join(lines)
    emit(text, a.out)


if __name__ == "__main__":
    main()
