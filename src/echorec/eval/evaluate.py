"""Batched evaluation of a model on the valid or test items of a leave-one-out split.

Full ranking scores every item (never the padding id); sampled ranking (N negatives drawn once,
with a fixed seed, from items the user never interacted with) is offered for comparison with
papers that use it, and its metric names carry a `sampled{N}_` prefix so the two are never confused.
"""

from __future__ import annotations

import numpy as np
import torch

from echorec.config import EvalConfig
from echorec.data.split import Split, gather
from echorec.eval.metrics import metrics_from_ranks, target_ranks


def sample_negatives(split: Split, which: str, n_neg: int, seed: int = 0) -> torch.Tensor:
    """(E, n_neg) item ids (1-based) not in each eval user's full sequence."""
    rng = np.random.default_rng(seed + (0 if which == "valid" else 1))
    data = split.data
    users = split.eval_sample_users(which)
    out = np.empty((len(users), n_neg), dtype=np.int64)
    n = data.n_items
    for row, u in enumerate(users):
        seen = set(data.sequence(u).tolist())
        if n - len(seen) < n_neg:
            raise ValueError(f"user {data.user_raw[u]} has fewer than {n_neg} unseen items to sample")
        got: list[int] = []
        while len(got) < n_neg:
            cand = rng.integers(1, n + 1, size=2 * n_neg)
            got.extend(c for c in cand.tolist() if c not in seen and c not in got)
        out[row] = got[:n_neg]
    return torch.from_numpy(out)


@torch.no_grad()
def history_mask(shape, cols: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """(B, C) bool, True at cols[b, j] where ok[b, j]. scatter_add of counts, not scatter_ of bools:
    with repeated indices (padding maps to column 0) the winner of a bool scatter_ is unspecified."""
    counts = torch.zeros(shape, dtype=torch.int32, device=cols.device)
    counts.scatter_add_(1, cols, ok.to(torch.int32))
    return counts > 0


def chunked_ranks(model, h: torch.Tensor, target: torch.Tensor, n_items: int, chunk: int,
                  hist: torch.Tensor | None = None) -> torch.Tensor:
    """Full-ranking ranks with items scored `chunk` at a time: memory O(B * chunk), not O(B * n_items).

    Two passes over the slices: the first reads each target's own score out of the slice that holds
    it, the second counts the other items scoring at least as high (ties count against the target, as
    in `target_ranks`). Both passes score the whole batch per slice, so they use the same matmul and
    the target's score is bit-identical in both. Against unchunked scoring, ranks can differ only at
    float-level ties (BLAS rounds a slice and the full matrix alike only up to the last bits).
    `hist` (B, H) lists item ids to leave out (0 = none), never the target."""
    B = len(h)
    rows = torch.arange(B, device=h.device)
    t = torch.empty(B, device=h.device)
    for lo in range(0, n_items, chunk):  # pass 1: each target's own score, from the same matmul shape as pass 2
        hi = min(lo + chunk, n_items)
        inside = (target >= lo) & (target < hi)
        if inside.any():
            s = model.score_items(h, lo, hi).float()
            t[inside] = s[rows[inside], target[inside] - lo]
    ahead = torch.zeros(B, dtype=torch.long, device=h.device)
    for lo in range(0, n_items, chunk):  # pass 2: items other than the target scoring >= it
        hi = min(lo + chunk, n_items)
        s = model.score_items(h, lo, hi).float()  # (B, hi - lo)
        inside = (target >= lo) & (target < hi)
        s[rows[inside], target[inside] - lo] = float("-inf")  # the target never counts against itself
        if hist is not None:
            cols = hist - 1 - lo  # history items that fall in this slice
            ok = (hist > 0) & (cols >= 0) & (cols < hi - lo) & (hist - 1 != target[:, None])
            s = s.masked_fill(history_mask(s.shape, torch.where(ok, cols, 0), ok), float("-inf"))
        ahead += (s >= t[:, None]).sum(1)
    ranks = ahead + 1
    return torch.where(torch.isnan(t), torch.full_like(ranks, n_items), ranks)


def evaluate(model, split: Split, which: str = "test", cfg: EvalConfig | None = None, max_len: int = 50,
             device="cpu", return_ranks: bool = False, shard=None):
    """Metrics of `model` on every valid or test target (one per user under leave-one-out), under EvalConfig `cfg`
    (default: full ranking at K = 5, 10, 20); inputs are the last `max_len` items.

    shard=(rank, world): this process ranks every world-th user from `rank` on, and the ranks of all
    processes are gathered (torch.distributed) before the metrics are taken."""
    cfg = cfg or EvalConfig()
    batch_size, ks, exclude_history, sampled, item_chunk = (cfg.eval_batch_size, cfg.ks, cfg.exclude_history,
                                                            cfg.sampled, cfg.item_chunk)
    was_training = model.training
    model.eval()
    start, end = split.eval_samples(which)
    negatives = sample_negatives(split, which, sampled) if sampled else None
    if shard is not None:
        rank, world = shard
        start, end = start[rank::world], end[rank::world]
        negatives = negatives[rank::world] if negatives is not None else None
    # Inputs are gathered where the model runs, from the items copied there once; widths come from the host.
    items = split.items_on(device)
    start_t, end_t = torch.from_numpy(start).to(device), torch.from_numpy(end).to(device)
    span = end - start  # host copy: the widths
    ranks = []
    for lo in range(0, len(start), batch_size):
        b = slice(lo, lo + batch_size)
        s, e = start_t[b], end_t[b]
        width = int(min(span[b].max(), max_len))
        seq = gather(items, s, e, width)
        target = items[e] - 1  # score column of the target
        if item_chunk and not sampled:
            hist = gather(items, s, e, int(span[b].max())) if exclude_history else None
            ranks.append(chunked_ranks(model, model.encode_last(seq).float(), target, split.n_items, item_chunk,
                                       hist).cpu())
            continue
        scores = model.predict(seq).float()  # (B, n_items)
        if exclude_history:
            # Mask everything the user consumed before the target (the whole history, not only the
            # max_len window), but never the target itself.
            hist = gather(items, s, e, int(span[b].max()))  # (B, H)
            ok = (hist > 0) & (hist - 1 != target[:, None])
            scores = scores.masked_fill(history_mask(scores.shape, torch.where(ok, hist - 1, 0), ok), float("-inf"))
        if negatives is not None:
            cand = torch.cat([target[:, None], negatives[b].to(device) - 1], 1)  # (B, 1 + N)
            scores = scores.gather(1, cand)
            target = torch.zeros_like(target)
        ranks.append(target_ranks(scores, target).cpu())
    model.train(was_training)
    r = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)
    if shard is not None:
        import torch.distributed as dist

        parts = [None] * shard[1]
        dist.all_gather_object(parts, r)
        r = torch.cat(parts)
    m = metrics_from_ranks(r, ks)
    if sampled:
        m = {f"sampled{sampled}_{k}": v for k, v in m.items()}
    return (m, r) if return_ranks else m


def evaluate_run(run_dir: str, which: str = "test", device: str | None = None,
                 allow_data_change: bool = False) -> tuple[dict, dict | None]:
    """Reload a run folder and recompute its `which` metrics on its data: (metrics, metrics.json's or None).
    Data that changed since training is refused unless `allow_data_change`."""
    from echorec.data.split import load_split
    from echorec.device import resolve_device
    from echorec.errors import EchorecError
    from echorec.runfolder import RunFolder, check_same_data

    folder = RunFolder(run_dir)
    rc, model, meta = folder.load_model()
    dev = resolve_device(device or rc.train.device)
    model.to(dev)
    data, split = load_split(rc.data, items_first=folder.item_order())
    check_same_data(folder, data, data.digest(), allow_data_change, "evaluate")
    if split.n_items != int(meta["n_items"]):
        raise EchorecError(f"{run_dir}: the data now has {split.n_items} items, the run was trained on {meta['n_items']}")
    m = evaluate(model, split, which, rc.eval, rc.data.max_len, dev)
    saved = folder.read_metrics()
    return m, saved.get(which) if saved else None
