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
import sys
import zipfile
from dataclasses import dataclass

import numpy as np

from echorec.data.readers import Interactions, check_readable, detect_format, read_interactions
from echorec.errors import EchorecError
from echorec.fsio import atomic_write_bytes, cache_dir

CACHE_VERSION = 4  # bump when the processed layout or the preprocessing rules change (2: times, 3-4: duplicates)


@dataclass
class SeqData:
    items: np.ndarray  # (n_interactions,) int64, internal ids 1..n_items
    offsets: np.ndarray  # (n_users + 1,) int64
    item_raw: np.ndarray  # (n_items,) str: raw id of internal id i is item_raw[i - 1]
    user_raw: np.ndarray  # (n_users,) str
    source: str = ""
    times: np.ndarray | None = None  # (n_interactions,) float64 epoch seconds beside `items`; None: file order
    duplicates: int = 0  # rows repeating an earlier (user, item, time) row: dropped by dedup (counted before the
    # k-core), else kept (counted among the rows the k-core keeps)
    deduped: bool = False  # whether those rows were dropped

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

    def digest(self) -> str:
        """A hash of the processed data (sequences, raw ids, times): a run folder records it, so evaluating or
        resuming on a changed file is noticed."""
        h = hashlib.blake2b(digest_size=16)
        for a in (self.items, self.offsets, self.item_raw, self.user_raw, self.times):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
                h.update(b"|")
        return h.hexdigest()


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


def duplicate_rows(users: np.ndarray, items: np.ndarray, times: np.ndarray | None,
                   order: np.ndarray | None = None) -> np.ndarray:
    """Indices of the rows that repeat an earlier row's (user, item, time); the first of each stays. Without
    times a repeated item is a new event, so there are none.

    One stable sort by (user, time) (or `order`, when the caller has it already); only rows that tie with a
    neighbour on both are compared by item, so a log with few ties costs the sort and nothing more."""
    if times is None or len(users) < 2:
        return np.zeros(0, dtype=np.int64)
    if order is None:
        order = np.lexsort((times, users))
    su, st = users[order], times[order]
    tie = (su[1:] == su[:-1]) & (st[1:] == st[:-1])
    if not tie.any():
        return np.zeros(0, dtype=np.int64)
    in_group = np.zeros(len(order), dtype=bool)
    in_group[1:] |= tie
    in_group[:-1] |= tie
    group = np.cumsum(np.concatenate([[True], ~tie]))[in_group]  # (user, time) group of each tied row
    rows = order[in_group]
    by = np.lexsort((rows, items[rows], group))  # within a group, equal items together, file order kept
    g, it = group[by], items[rows][by]
    repeat = np.zeros(len(by), dtype=bool)
    repeat[1:] = (g[1:] == g[:-1]) & (it[1:] == it[:-1])
    return np.sort(rows[by][repeat])


def preprocess(inter: Interactions, min_rating: float | None = None, kcore_k: int = 0, dedup: bool = False) -> SeqData:
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
    n_dup = None
    if dedup:  # before the k-core, whose counts the repeats would inflate
        dup = duplicate_rows(users, items, times)
        n_dup = len(dup)
        if n_dup:
            keep = np.ones(len(users), dtype=bool)
            keep[dup] = False
            users, items, times = users[keep], items[keep], times[keep]
    if kcore_k > 1:
        k_keep = kcore(users, items, kcore_k)
        if not k_keep.any():
            raise EchorecError(f"{inter.source}: no interactions left after --kcore {kcore_k}")
        users, items = users[k_keep], items[k_keep]
        times = times[k_keep] if times is not None else None
    # Stable sort by (user, time): ties in time keep file order. Users in order of first appearance.
    u_code, u_first = _codes(users)
    order = np.lexsort((times, u_code)) if times is not None else np.argsort(u_code, kind="stable")
    if n_dup is None:  # counted on the sort below rather than with a sort of their own (a sort per count)
        n_dup = len(duplicate_rows(u_code, items, times, order))
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
        duplicates=n_dup,
        deduped=bool(dedup),
    )


def with_items_first(data: SeqData, known: list[str]) -> tuple[SeqData, int]:
    """`data` renumbered so that the items of `known` (raw ids, in order) come first with ids 1..len(known), as in
    the run they came from, and the data's other items follow in their own order: a warm-started run's item map
    grows and never renumbers a known item. Returns (the data, how many items are new)."""
    index = {r: i + 1 for i, r in enumerate(known)}
    new = [r for r in data.item_raw if r not in index]
    index.update({r: len(known) + j + 1 for j, r in enumerate(new)})
    remap = np.array([index[r] for r in data.item_raw], dtype=np.int64)  # old internal id - 1 -> new id
    raw = np.array(list(known) + new, dtype=str)
    return SeqData(items=remap[data.items - 1], offsets=data.offsets, item_raw=raw, user_raw=data.user_raw,
                   source=data.source, times=data.times, duplicates=data.duplicates, deduped=data.deduped), len(new)


def _cache_key(path: str, options: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    h.update(json.dumps({**options, "v": CACHE_VERSION}, sort_keys=True).encode())
    return h.hexdigest()


def _checked(z, path: str) -> SeqData:
    """A cache entry as SeqData, after the checks that make it safe to use: offsets start at 0, never decrease
    and end at the item count; ids lie in 1..n_items; times (if any) line up with items. A ValueError otherwise."""
    items, offsets, item_raw, user_raw = z["items"], z["offsets"], z["item_raw"], z["user_raw"]
    times = z["times"] if "times" in z.files else None
    meta = z["meta"] if "meta" in z.files else np.zeros(2, dtype=np.int64)
    ok = (items.ndim == offsets.ndim == item_raw.ndim == user_raw.ndim == 1 and
          items.dtype.kind == "i" and offsets.dtype.kind == "i" and len(offsets) == len(user_raw) + 1 and
          len(offsets) > 0 and offsets[0] == 0 and offsets[-1] == len(items) and bool((np.diff(offsets) >= 0).all()) and
          (len(items) == 0 or (items.min() >= 1 and items.max() <= len(item_raw))) and
          (times is None or (times.shape == items.shape and bool(np.isfinite(times).all()))) and meta.shape == (2,))
    if not ok:
        raise ValueError("cache entry fails its checks")
    return SeqData(items, offsets, item_raw, user_raw, source=path, times=times, duplicates=int(meta[0]),
                   deduped=bool(meta[1]))


def _read_cache(cfile: str, path: str) -> SeqData | None:
    """The entry, or None for any entry that cannot be read or fails its checks (it is rebuilt and replaced)."""
    try:
        with np.load(cfile, allow_pickle=False) as z:
            return _checked(z, path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, TypeError, IndexError):
        return None


def _write_cache(cfile: str, data: SeqData) -> None:
    """Best effort: a cache that cannot be written costs the next run a re-read, never this run's result."""
    buf = io.BytesIO()
    extra = {} if data.times is None else {"times": data.times}
    np.savez(buf, items=data.items, offsets=data.offsets, item_raw=data.item_raw, user_raw=data.user_raw,
             meta=np.array([data.duplicates, int(data.deduped)], dtype=np.int64), **extra)
    try:
        atomic_write_bytes(cfile, buf.getvalue())
    except OSError as e:
        print(f"warning: could not write the cache {cfile} ({e.strerror or e}); the next run reads the file again",
              file=sys.stderr)


def load_sequences(
    path: str,
    fmt: str = "auto",
    cols: tuple[str, str, str, str] = ("user_id", "item_id", "timestamp", "rating"),
    min_rating: float | None = None,
    kcore_k: int = 0,
    dedup: bool = False,
    cache: bool = True,
) -> SeqData:
    """Read + preprocess `path`, reusing a cached result keyed by the file's bytes, its detected format and every
    option (the same bytes under another name can be another format)."""
    check_readable(path)
    try:
        detected = detect_format(path) if fmt == "auto" else fmt
        options = {"fmt": detected, "cols": list(cols), "min_rating": min_rating, "kcore": kcore_k, "dedup": dedup}
        key = _cache_key(path, options) if cache else None
    except OSError as e:
        raise EchorecError(f"{path}: cannot read ({e.strerror or e})") from None
    cfile = None
    if key is not None:
        try:
            cfile = os.path.join(cache_dir(), "processed", key + ".npz")
        except OSError as e:
            print(f"warning: no cache folder ({e.strerror or e}); reading the file without one", file=sys.stderr)
        if cfile is not None and os.path.exists(cfile):
            data = _read_cache(cfile, path)
            if data is not None:
                return data
    try:
        data = preprocess(read_interactions(path, detected, *cols), min_rating, kcore_k, dedup)
    except OSError as e:
        raise EchorecError(f"{path}: cannot read ({e.strerror or e})") from None
    if cfile is not None:
        _write_cache(cfile, data)
    return data
