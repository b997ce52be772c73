"""Export a run folder's model as TorchScript: left-padded ids (B, max_len) -> top-k (scores, item ids).

The traced graph is plain torch: the model's `prepare_export()` switches parts with untraceable fast
paths (the numba scan kernels) to plain torch ops, and the example input carries padding so the general masking
path is the one recorded. Load it anywhere with `torch.jit.load(path)`; no echorec import needed.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from echorec.runfolder import RunFolder


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
