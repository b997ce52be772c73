"""Business rules at serving time: which items may be recommended.

A request (or a batch job) may carry an `allow` list (only these items) and a `deny` list (never these), in raw
item ids; a service may also hold a server-wide deny list read from a file (items out of stock, not allowed in a
market), reloaded whenever the file changes. The rules are applied to the scores before the top-k is taken, so
an answer holds k items whenever k items pass them (never k minus the filtered ones), and an allow list is
ranked exactly: only its items are scored against each other.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

from echorec.errors import EchorecError

MAX_LIST_FILE = 64 << 20  # bytes of an item-list file read at most (a list of millions of ids fits)


def read_id_list(path: str, what: str = "item list") -> list[str]:
    """One raw id per line (UTF-8; blank lines and a leading BOM ignored), from a file of bounded size."""
    try:
        size = os.path.getsize(path)
        if size > MAX_LIST_FILE:
            raise EchorecError(f"{path}: {what} of {size} bytes; at most {MAX_LIST_FILE} are read")
        with open(path, encoding="utf-8-sig") as f:
            text = f.read(MAX_LIST_FILE + 1)
    except FileNotFoundError:
        raise EchorecError(f"{path}: no such file ({what})") from None
    except UnicodeDecodeError as e:
        raise EchorecError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
    except IsADirectoryError:
        raise EchorecError(f"{path}: is a folder, not an {what}") from None
    except OSError as e:
        raise EchorecError(f"{path}: cannot read ({e.strerror or e})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def to_internal(index: dict[str, int], raw: list | None) -> np.ndarray | None:
    """Raw ids -> sorted unique internal ids (1-based) of the items the model knows; None stays None."""
    if raw is None:
        return None
    return np.array(sorted({index[str(r)] for r in raw if str(r) in index}), dtype=np.int64)


class DenyFile:
    """A server-wide deny list from a file, re-read when the file's modification time or size changes (looked at
    before every answer, or at most once per `every` seconds), so it can be updated with no restart: a stat call
    costs far less than scoring. A file that cannot be read keeps the last good list (a half-written update never
    empties the rule)."""

    def __init__(self, path: str, index: dict[str, int], every: float = 0.0):
        self.path, self.index, self.every = path, index, every
        self.ids = np.zeros(0, dtype=np.int64)
        self._stamp = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.reloads = 0
        self.check(force=True)

    def check(self, force: bool = False) -> np.ndarray:
        """The current deny ids (internal), re-read first if the file changed."""
        import time

        now = time.monotonic()
        if not force and now - self._checked < self.every:
            return self.ids
        with self._lock:
            self._checked = now
            try:
                st = os.stat(self.path)
            except OSError:
                if force:
                    raise EchorecError(f"{self.path}: no such file (deny list)") from None
                return self.ids
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                try:
                    self.ids = to_internal(self.index, read_id_list(self.path, "deny list"))
                    self._stamp = stamp
                    self.reloads += 1
                except EchorecError:
                    if force:
                        raise
        return self.ids


def mask_scores(scores: torch.Tensor, deny: np.ndarray | None = None, seen_rows: np.ndarray | None = None,
                seen_cols: np.ndarray | None = None) -> torch.Tensor:
    """-inf, in place, at denied items (every row) and at each row's seen items ((row, internal id) pairs)."""
    if deny is not None and len(deny):
        scores[:, torch.from_numpy(deny - 1).to(scores.device)] = float("-inf")
    if seen_rows is not None and len(seen_rows):
        scores[torch.from_numpy(seen_rows).to(scores.device), torch.from_numpy(seen_cols - 1).to(scores.device)] = \
            float("-inf")
    return scores


def top_k(scores: torch.Tensor, k: int, allow: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, internal ids) of each row's top k among the items that pass (finite scores), best first; with
    `allow`, among those items only (scored against each other, exact). Rows may hold fewer than k items when
    fewer pass: their tail is -inf / 0."""
    if allow is not None:
        cols = torch.from_numpy(allow - 1).to(scores.device)
        sub = scores[:, cols]  # (B, |allow|)
        kk = min(k, sub.shape[1])
        values, idx = torch.topk(sub, kk, dim=1)
        ids = cols[idx] + 1
    else:
        kk = min(k, scores.shape[1])
        values, idx = torch.topk(scores, kk, dim=1)
        ids = idx + 1
    ids = torch.where(torch.isfinite(values), ids, torch.zeros_like(ids))
    return values, ids
