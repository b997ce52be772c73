"""`Recommender`: a trained run folder answering "what next?" for raw item ids.

    rec = Recommender.from_run("runs/demo")
    rec.recommend(["242", "302"], k=10)          # {"items": [{"item": "50", "score": 7.1}, ...], ...}

Input rules: unknown items are dropped and reported; an empty or fully unknown history gets the
most popular items, flagged `fallback: true`; only the most recent max_len items are used; items in
the history are not recommended again unless exclude_seen=False. Business rules (serve/filters.py): an
`allow` list (only these items, ranked exactly among themselves), a `deny` list, and a server-wide deny file
(`rec.deny_file = DenyFile(path, rec.index)`, re-read when it changes) apply inside the top-k.

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
from echorec.serve.filters import DenyFile, mask_scores, to_internal, top_k


class Recommender:
    def __init__(self, model, item_raw: list[str], counts: np.ndarray, max_len: int, info: dict):
        self.model = model.eval()
        self.item_raw = item_raw  # internal id i -> item_raw[i - 1]
        self.index = {r: i + 1 for i, r in enumerate(item_raw)}
        self.max_len = max_len
        self.counts = counts
        self.popular = np.argsort(-counts, kind="stable") + 1  # internal ids, most popular first
        self.info = info
        self.deny_file: DenyFile | None = None  # the server-wide deny list, if any
        self.config = None  # the run's RunConfig (from_run sets it)

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
        # The data's name without its folder: the service may face people who should not learn the server's layout.
        info = {"model": rc.model, "dataset": os.path.basename(rc.data.dataset.rstrip("/\\")) or rc.data.dataset,
                "n_items": len(item_raw), "max_len": rc.data.max_len,
                "causal": bool(model.causal), "metrics": metrics, "run": os.path.abspath(run_dir)}
        rec = cls(model, item_raw, counts, rc.data.max_len, info)
        rec.config = rc
        return rec

    @property
    def n_items(self) -> int:
        return len(self.item_raw)

    def _check_k(self, k: int) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.n_items:
            raise EchorecError(f"k must be an integer in 1..{self.n_items}, got {k!r}")

    def _encode_history(self, history) -> tuple[list[int], list[str]]:
        if isinstance(history, (str, bytes)):  # "i12" would otherwise be read as the items "i", "1", "2"
            raise EchorecError(f"history must be a list of item ids, got the string {history[:40]!r}; "
                               f"write [{history[:40]!r}] for one item")
        known, dropped = [], []
        for item in history:
            i = self.index.get(str(item))
            if i is None:
                dropped.append(str(item))
            else:
                known.append(i)
        return known, dropped

    def _denied(self, deny: np.ndarray | None) -> np.ndarray | None:
        """The request's deny ids joined with the server-wide list."""
        server = self.deny_file.check() if self.deny_file is not None else None
        if server is None or not len(server):
            return deny
        return server if deny is None or not len(deny) else np.union1d(deny, server)

    def _answer(self, scores: torch.Tensor | None, known: list[int], dropped, k, exclude_seen, allow=None,
                deny=None) -> dict:
        """One answer from one row of scores (None: the popularity fallback), under the rules: `allow` / `deny`
        are internal ids (None: no rule)."""
        deny = self._denied(deny)
        seen = sorted(set(known)) if exclude_seen else []
        if scores is None:  # popularity fallback, under the same rules
            blocked = set(seen) | (set(deny.tolist()) if deny is not None else set())
            pool = self.popular if allow is None else allow[np.argsort(-self.counts[allow - 1], kind="stable")]
            ids = [int(i) for i in pool if int(i) not in blocked][:k]
            return {"items": [{"item": self.item_raw[i - 1], "score": float(self.counts[i - 1])} for i in ids],
                    "dropped": dropped, "fallback": True, "used": 0}
        row = scores.float()[None].clone()  # (1, n_items)
        mask_scores(row, deny, np.zeros(len(seen), dtype=np.int64), np.array(seen, dtype=np.int64))
        values, ids = top_k(row, k, allow)
        keep = ids[0] > 0
        return {"items": [{"item": self.item_raw[int(i) - 1], "score": float(v)}
                          for v, i in zip(values[0][keep], ids[0][keep])],
                "dropped": dropped, "fallback": False, "used": min(len(known), self.max_len)}

    def recommend_batch(self, histories: list[list], k: int = 10, exclude_seen: bool = True, allow: list | None = None,
                        deny: list | None = None) -> list[dict]:
        """One forward pass for many users; each answer as in `recommend` (the same allow / deny for all)."""
        return self.answer_many([(h, k, exclude_seen, allow, deny) for h in histories])

    @torch.no_grad()
    def answer_many(self, requests: list[tuple]) -> list[dict]:
        """(history, k, exclude_seen[, allow, deny]) per request, all scored in one forward pass; allow / deny are
        raw item ids (unknown ones are ignored) or None."""
        for r in requests:
            self._check_k(r[1])
        parsed = [self._encode_history(r[0]) for r in requests]
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
        for (known, dropped), r in zip(parsed, requests):
            k, exclude_seen = r[1], r[2]
            allow, deny = (to_internal(self.index, r[3]), to_internal(self.index, r[4])) if len(r) > 3 else (None, None)
            out.append(self._answer(scores[j] if known else None, known, dropped, k, exclude_seen, allow, deny))
            j += bool(known)
        return out

    def recommend(self, history: list, k: int = 10, exclude_seen: bool = True, allow: list | None = None,
                  deny: list | None = None) -> dict:
        """Top-k next items for one history of raw ids (oldest first); `allow`: only these raw ids may be
        recommended, `deny`: never these (both besides the server-wide deny file, if any)."""
        return self.recommend_batch([history], k, exclude_seen, allow, deny)[0]

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

    def recommend(self, k: int = 10, exclude_seen: bool = True, allow: list | None = None,
                  deny: list | None = None) -> dict:
        self.rec._check_k(k)
        out = self.rec._answer(self.scores(), self.history, list(self.dropped), k, exclude_seen,
                               to_internal(self.rec.index, allow), to_internal(self.rec.index, deny))
        out["incremental"] = self.incremental
        return out
