"""Export a run folder's model with its top-k: TorchScript or ONNX, item ids (B, L) in, (scores, item ids) out.

Both graphs are plain torch: the model's `prepare_export()` switches parts with untraceable fast paths (the numba
scan kernels) to plain torch ops. TorchScript: left-padded ids (B, max_len), loaded with `torch.jit.load(path)`,
no echorec import needed. ONNX (torch.onnx's exporter, opset 18): any batch size and any history length; a row
longer than max_len keeps its last max_len items and a shorter one is left-padded inside the graph, so the model
inside always sees max_len columns (exact, since every model ignores padding) and the selective scan of the Mamba
models unrolls over a fixed number of steps. Ids are the run's internal ones (1-based, 0 = padding); the id map is
written beside the model as <name>.items.tsv (internal_id, raw_id, count), for the serving side to translate.
"""

from __future__ import annotations

import os
import shutil
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from echorec.errors import EchorecError
from echorec.runfolder import ITEMS, RunFolder

FORMATS = ("torchscript", "onnx")


class TopK(nn.Module):
    def __init__(self, model, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, seq: torch.Tensor):
        scores = self.model.predict(seq)  # (B, n_items)
        values, idx = torch.topk(scores, self.k, dim=-1)
        return values, idx + 1  # internal item ids (1-based; see items.tsv for raw ids)


def export_torchscript(run_dir: str, out: str, k: int = 10, device="cpu") -> str:
    """Trace the run's model + top-k on `device` (the traced graph runs on that device type) and save it to `out`."""
    from echorec.device import resolve_device

    dev = resolve_device(str(device))
    rc, model, meta = RunFolder(run_dir).load_model(dev)
    model.prepare_export()
    L = rc.data.max_len
    g = torch.Generator().manual_seed(0)
    example = torch.randint(1, int(meta["n_items"]) + 1, (2, L), generator=g).to(dev)
    example[1, : L // 2] = 0  # padding in the example: the masked path is traced
    wrapper = TopK(model, min(k, int(meta["n_items"]))).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    traced.save(out)
    return out


class WindowTopK(nn.Module):
    """TopK for any history length: crop to the last max_len ids, left-pad to max_len, then score."""

    def __init__(self, model, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, seq: torch.Tensor):
        L = self.model.max_len
        seq = seq[:, -L:]
        seq = F.pad(seq, (L - seq.shape[1], 0))  # (B, max_len), left padding
        values, idx = torch.topk(self.model.predict(seq), self.k, dim=-1)
        return values, idx + 1


def export_format(out: str, fmt: str | None) -> str:
    fmt = fmt or ("onnx" if out.lower().endswith(".onnx") else "torchscript")
    if fmt not in FORMATS:
        raise EchorecError(f"--format {fmt}: use {' or '.join(FORMATS)}")
    return fmt


def export_onnx(run_dir: str, out: str, k: int = 10) -> str:
    """The run's model and top-k as ONNX at `out` (CPU graph; dynamic batch and length), its id map beside it as
    <out without .onnx>.items.tsv. A model the exporter cannot express is one EchorecError naming it."""
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise EchorecError("ONNX export needs onnx and onnxscript: pip install 'echorec[onnx]'") from None
    folder = RunFolder(run_dir)
    rc, model, meta = folder.load_model("cpu")
    model.prepare_export()
    L, n = rc.data.max_len, int(meta["n_items"])
    example = torch.randint(1, n + 1, (2, L), generator=torch.Generator().manual_seed(0))
    example[1, : L // 2] = 0
    wrapper = WindowTopK(model, min(k, n)).eval()
    dims = {"seq": {0: torch.export.Dim("batch"), 1: torch.export.Dim("length")}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (example,), out, dynamo=True, dynamic_shapes=dims, input_names=["seq"],
                              output_names=["scores", "items"], opset_version=18, verbose=False)
    except Exception as e:  # the exporter's errors are many pages long: one line names the model and the cause
        msg = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise EchorecError(f"{rc.model}: cannot be exported to ONNX ({type(e).__name__}: {msg[:200]})") from None
    shutil.copyfile(folder.file(ITEMS), items_beside(out))
    return out


def items_beside(out: str) -> str:
    stem = out[: -len(".onnx")] if out.lower().endswith(".onnx") else out
    return f"{stem}.{ITEMS}"


def check_out(out: str, overwrite: bool) -> None:
    """Refuse, before any work, to write where a file would be lost or the write must fail."""
    if os.path.isdir(out):
        raise EchorecError(f"--out {out}: is a folder; give the model file's name")
    if os.path.exists(out) and not overwrite:
        raise EchorecError(f"--out {out}: exists; pass --overwrite to replace it")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise EchorecError(f"--out {out}: its folder does not exist")
    if not os.access(folder, os.W_OK):
        raise EchorecError(f"--out {out}: its folder is not writable")
