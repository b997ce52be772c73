"""`Recommender`: a trained run folder answering "what next?" for raw item ids.

    rec = Recommender.from_run("runs/demo")
    rec.recommend(["242", "302"], k=10)          # {"items": [{"item": "50", "score": 7.1}, ...], ...}

Input rules: unknown items are dropped and reported; an empty or fully unknown history gets the
most popular items, flagged `fallback: true`; only the most recent max_len items are used; items in
the history are not recommended again unless exclude_seen=False.

Streaming: `rec.session()` keeps one user's state through the model contract's `init_state` /
`step`. Where the model's state is its recurrence (Mamba4Rec, GRU4Rec) each new event costs O(1) in
the history length; other models re-encode the last max_len items, and `session.incremental` says
which.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from echorec.errors import EchorecError
from echorec.runfolder import ITEMS, RunFolder


class Recommender:
    def __init__(self, model, item_raw: list[str], counts: np.ndarray, max_len: int, info: dict):
        self.model = model.eval()
        self.item_raw = item_raw  # internal id i -> item_raw[i - 1]
        self.index = {r: i + 1 for i, r in enumerate(item_raw)}
        self.max_len = max_len
        self.counts = counts
        self.popular = np.argsort(-counts, kind="stable") + 1  # internal ids, most popular first
        self.info = info

    @classmethod
    def from_run(cls, run_dir: str, device="cpu") -> Recommender:
        """The run in `run_dir`, scoring on `device` (a torch device or an echorec --device name: auto, cuda:1)."""
        from echorec.device import resolve_device

        folder = RunFolder(run_dir)
        rc, model, meta = folder.load_model(resolve_device(str(device)))
        item_raw, counts = folder.read_items()
        if len(item_raw) != int(meta["n_items"]):
            raise EchorecError(f"{folder.file(ITEMS)}: {len(item_raw)} items, but the model was trained on "
                               f"{meta['n_items']}")
        metrics = (folder.read_metrics() or {}).get("test", {})
        info = {"model": rc.model, "dataset": rc.data.dataset, "n_items": len(item_raw), "max_len": rc.data.max_len,
                "causal": bool(model.causal), "metrics": metrics, "run": os.path.abspath(run_dir)}
        return cls(model, item_raw, counts, rc.data.max_len, info)

    @property
    def n_items(self) -> int:
        return len(self.item_raw)

    def _check_k(self, k: int) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.n_items:
            raise EchorecError(f"k must be an integer in 1..{self.n_items}, got {k!r}")

    def _encode_history(self, history) -> tuple[list[int], list[str]]:
        known, dropped = [], []
        for item in history:
            i = self.index.get(str(item))
            if i is None:
                dropped.append(str(item))
            else:
                known.append(i)
        return known, dropped

    def _answer(self, scores: torch.Tensor | None, known: list[int], dropped, k, exclude_seen) -> dict:
        if scores is None:  # popularity fallback
            seen = set(known) if exclude_seen else set()
            ids = [int(i) for i in self.popular[: k + len(seen)] if int(i) not in seen][:k]
            return {"items": [{"item": self.item_raw[i - 1], "score": float(self.counts[i - 1])} for i in ids],
                    "dropped": dropped, "fallback": True, "used": 0}
        scores = scores.float().clone()
        if exclude_seen and known:
            scores[torch.tensor(sorted(set(known))) - 1] = float("-inf")
        kk = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, kk)
        return {"items": [{"item": self.item_raw[int(i)], "score": float(v)} for v, i in zip(top.values, top.indices)],
                "dropped": dropped, "fallback": False, "used": min(len(known), self.max_len)}

    def recommend_batch(self, histories: list[list], k: int = 10, exclude_seen: bool = True) -> list[dict]:
        """One forward pass for many users; each answer as in `recommend`."""
        return self.answer_many([(h, k, exclude_seen) for h in histories])

    @torch.no_grad()
    def answer_many(self, requests: list[tuple[list, int, bool]]) -> list[dict]:
        """(history, k, exclude_seen) per request, all scored in one forward pass."""
        for _, k, _ in requests:
            self._check_k(k)
        parsed = [self._encode_history(h) for h, _, _ in requests]
        rows = [kn[-self.max_len:] for kn, _ in parsed if kn]
        scores = None
        if rows:
            width = max(len(r) for r in rows)
            seq = torch.zeros(len(rows), width, dtype=torch.long)
            for j, r in enumerate(rows):
                seq[j, width - len(r):] = torch.tensor(r)  # left padding
            # (n, n_items), ranked on the CPU: the rest of the answer is Python work on a few ids
            scores = self.model.predict(seq.to(self.model.item_emb.weight.device)).float().cpu()
        out, j = [], 0
        for (known, dropped), (_, k, exclude_seen) in zip(parsed, requests):
            if known:
                out.append(self._answer(scores[j], known, dropped, k, exclude_seen))
                j += 1
            else:
                out.append(self._answer(None, known, dropped, k, exclude_seen))
        return out

    def recommend(self, history: list, k: int = 10, exclude_seen: bool = True) -> dict:
        return self.recommend_batch([history], k, exclude_seen)[0]

    def session(self) -> Session:
        return Session(self)


class Session:
    """One user's running state; `add(item)` then `recommend(k)`."""

    def __init__(self, rec: Recommender):
        self.rec = rec
        self.history: list[int] = []
        self.dropped: list[str] = []
        self.incremental = bool(rec.model.incremental)
        self._state = rec.model.init_state(1)
        self._scores: torch.Tensor | None = None

    @torch.no_grad()
    def add(self, item) -> None:
        i = self.rec.index.get(str(item))
        if i is None:
            self.dropped.append(str(item))
            return
        self.history.append(i)
        device = self.rec.model.item_emb.weight.device
        self._state, scores = self.rec.model.step(self._state, torch.tensor([i], device=device))
        self._scores = scores[0].float().cpu()

    def scores(self) -> torch.Tensor | None:
        return self._scores

    def recommend(self, k: int = 10, exclude_seen: bool = True) -> dict:
        self.rec._check_k(k)
        out = self.rec._answer(self.scores(), self.history, list(self.dropped), k, exclude_seen)
        out["incremental"] = self.incremental
        return out
