"""From raw interactions to per-user item sequences: sort, filter, k-core, remap ids, cache.

The result, `SeqData`, is a CSR layout: `items[offsets[u]:offsets[u+1]]` is user u's time-ordered
sequence of internal item ids (1..n_items; 0 is padding). Raw ids are kept so results can be
reported, and served, in the file's own ids.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass

import numpy as np

from echorec.data.readers import Interactions, read_interactions
from echorec.errors import EchorecError
from echorec.fsio import atomic_write_bytes, cache_dir

CACHE_VERSION = 2  # bump when the processed layout or the preprocessing rules change (2: times kept)


@dataclass
class SeqData:
    items: np.ndarray  # (n_interactions,) int64, internal ids 1..n_items
    offsets: np.ndarray  # (n_users + 1,) int64
    item_raw: np.ndarray  # (n_items,) str: raw id of internal id i is item_raw[i - 1]
    user_raw: np.ndarray  # (n_users,) str
    source: str = ""
    times: np.ndarray | None = None  # (n_interactions,) float64 epoch seconds beside `items`; None: file order

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_raw)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u] : self.offsets[u + 1]]


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integer ids -> (codes 0.. in order of first appearance, the id of each code).

    O(n) with one pass of np.minimum.at instead of np.unique's sort: on 10^7 rows 0.1 s against 2.4 s,
    and no sorted copies of the column."""
    n = len(values)
    first = np.full(int(values.max()) + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first, values, np.arange(n))  # each id's first row
    present = np.flatnonzero(first < n)
    order = present[np.argsort(first[present], kind="stable")]  # ids by first appearance
    rank = np.empty(len(first), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[values], order


def kcore(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the rows kept by the iterative k-core (every user and item >= k rows)."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_cnt = np.bincount(users[keep], minlength=users.max() + 1)
        i_cnt = np.bincount(items[keep], minlength=items.max() + 1)
        new = keep & (u_cnt[users] >= k) & (i_cnt[items] >= k)
        if new.sum() == keep.sum():
            return new
        keep = new


def preprocess(inter: Interactions, min_rating: float | None = None, kcore_k: int = 0) -> SeqData:
    n = len(inter)
    keep = np.ones(n, dtype=bool)
    if min_rating is not None:
        if inter.ratings is None:
            raise EchorecError(f"{inter.source}: --min-rating given but the file has no rating column")
        keep &= inter.ratings >= min_rating
        if not keep.any():
            raise EchorecError(f"{inter.source}: no interactions left after --min-rating {min_rating:g}")
    users, items, times = inter.users, inter.items, inter.times  # integer codes of the raw ids
    if not keep.all():  # no copies of a 10^7-row log that nothing filtered
        users, items = users[keep], items[keep]
        times = times[keep] if times is not None else None
    if kcore_k > 1:
        k_keep = kcore(users, items, kcore_k)
        if not k_keep.any():
            raise EchorecError(f"{inter.source}: no interactions left after --kcore {kcore_k}")
        users, items = users[k_keep], items[k_keep]
        times = times[k_keep] if times is not None else None
    # Stable sort by (user, time): ties in time keep file order. Users in order of first appearance.
    u_code, u_first = _codes(users)
    order = np.lexsort((times, u_code)) if times is not None else np.argsort(u_code, kind="stable")
    i_code, i_first = _codes(items[order])  # internal ids in order of first appearance, from 1
    counts = np.bincount(u_code, minlength=len(u_first))
    offsets = np.zeros(len(u_first) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return SeqData(
        items=(i_code + 1).astype(np.int64),
        offsets=offsets,
        item_raw=inter.item_ids[i_first].astype(str),
        user_raw=inter.user_ids[u_first].astype(str),
        source=inter.source,
        times=None if times is None else times[order],
    )


def _cache_key(path: str, options: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    h.update(json.dumps({**options, "v": CACHE_VERSION}, sort_keys=True).encode())
    return h.hexdigest()


def load_sequences(
    path: str,
    fmt: str = "auto",
    cols: tuple[str, str, str, str] = ("user_id", "item_id", "timestamp", "rating"),
    min_rating: float | None = None,
    kcore_k: int = 0,
    cache: bool = True,
) -> SeqData:
    """Read + preprocess `path`, reusing a cached result keyed by the file's bytes and the options."""
    options = {"fmt": fmt, "cols": list(cols), "min_rating": min_rating, "kcore": kcore_k}
    cfile = None
    if cache:
        cfile = os.path.join(cache_dir(), "processed", _cache_key(path, options) + ".npz")
        if os.path.exists(cfile):
            try:
                z = np.load(cfile, allow_pickle=False)
                return SeqData(z["items"], z["offsets"], z["item_raw"], z["user_raw"], source=path,
                               times=z["times"] if "times" in z.files else None)
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is rebuilt below
    data = preprocess(read_interactions(path, fmt, *cols), min_rating, kcore_k)
    if cfile is not None:
        buf = io.BytesIO()
        extra = {} if data.times is None else {"times": data.times}
        np.savez(buf, items=data.items, offsets=data.offsets, item_raw=data.item_raw, user_raw=data.user_raw, **extra)
        atomic_write_bytes(cfile, buf.getvalue())
    return data
