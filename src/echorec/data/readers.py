"""Readers that turn an interaction log on disk into plain arrays (user, item, time, rating).

Formats (auto-detected from the name and first lines; `--format` overrides):
  inter     RecBole atomic file: tab separated, typed header `user_id:token item_id:token ...`
  movielens `ratings.dat` (`u::i::r::t`) or `u.data` (tab separated, no header)
  csv, tsv  a header row naming user/item/(timestamp)/(rating) columns (names configurable)
  parquet   the same columns in a Parquet file (needs pyarrow)
  seq       one user per line, `u i1 i2 ...`, items already in time order (S3-Rec/FMLP-Rec files)
  pairs     one interaction per line, `u i`, file order = time order (SASRec files)

Every mistake in a file is an EchorecError naming `file:line` and what is wrong.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from echorec.errors import EchorecError

FORMATS = ("auto", "inter", "movielens", "csv", "tsv", "parquet", "seq", "pairs")


@dataclass
class Interactions:
    """One row per interaction; ids are the raw strings of the file."""

    users: np.ndarray  # (n,) str
    items: np.ndarray  # (n,) str
    times: np.ndarray | None  # (n,) float64, None when the file order is the time order
    ratings: np.ndarray | None  # (n,) float64 or None
    source: str

    def __len__(self) -> int:
        return len(self.users)


def detect_format(path: str) -> str:
    name = os.path.basename(path).lower()
    ext = os.path.splitext(name)[1]
    if ext == ".inter":
        return "inter"
    if name.startswith("ratings") and ext == ".dat" or name == "u.data":
        return "movielens"
    if ext in (".csv", ".tsv", ".parquet"):
        return ext[1:]
    first = _first_lines(path, 200)
    if not first:
        raise EchorecError(f"{path}: empty file")
    if "::" in first[0]:
        return "movielens"
    if ":" in first[0].split("\t")[0] and "\t" in first[0]:
        return "inter"
    token_counts = [len(line.split()) for line in first]
    users = [line.split()[0] for line in first]
    # A user on two lines, or nothing but `u i` lines, means one interaction per line.
    if max(token_counts) <= 2 or len(set(users)) < len(users):
        return "pairs"
    return "seq"


def _first_lines(path: str, n: int) -> list[str]:
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                out.append(line.rstrip("\n"))
                if len(out) >= n:
                    break
    return out


def read_interactions(
    path: str,
    fmt: str = "auto",
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    rating_col: str = "rating",
) -> Interactions:
    if not os.path.exists(path):
        raise EchorecError(f"{path}: no such file")
    if os.path.isdir(path):
        raise EchorecError(f"{path}: is a folder; pass the interaction file inside it")
    if fmt not in FORMATS:
        raise EchorecError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if os.path.getsize(path) == 0:
        raise EchorecError(f"{path}: empty file")
    if fmt == "auto":
        fmt = detect_format(path)
    cols = (user_col, item_col, time_col, rating_col)
    if fmt == "inter":
        out = _read_delimited(path, "\t", cols, typed_header=True)
    elif fmt == "movielens":
        out = _read_movielens(path)
    elif fmt in ("csv", "tsv"):
        out = _read_delimited(path, "," if fmt == "csv" else "\t", cols, typed_header=False)
    elif fmt == "parquet":
        out = _read_parquet(path, cols)
    elif fmt == "seq":
        out = _read_seq(path)
    else:
        out = _read_pairs(path)
    if len(out) == 0:
        raise EchorecError(f"{path}: no interactions")
    return out


def _float(value: str, path: str, lineno: int, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise EchorecError(f"{path}:{lineno}: {what} {value!r} is not a number") from None


def _check_int(value: str, path: str, lineno: int, what: str) -> str:
    try:
        int(value)
    except ValueError:
        raise EchorecError(f"{path}:{lineno}: {what} {value!r} is not an integer") from None
    return value


def _finish(users, items, times, ratings, path) -> Interactions:
    return Interactions(
        users=np.asarray(users, dtype=str),
        items=np.asarray(items, dtype=str),
        times=None if times is None else np.asarray(times, dtype=np.float64),
        ratings=None if ratings is None else np.asarray(ratings, dtype=np.float64),
        source=path,
    )


def _find_col(header: list[str], want: str, path: str, required: bool) -> int | None:
    # RecBole headers are `name:type`; match on the name, or on the full `name:type` string.
    names = [h.strip().split(":")[0] for h in header]
    want_name = want.split(":")[0]
    if want_name in names:
        return names.index(want_name)
    if required:
        raise EchorecError(f"{path}:1: no column {want_name!r} (columns: {', '.join(names)})")
    return None


def _read_delimited(path, sep, cols, typed_header) -> Interactions:
    user_col, item_col, time_col, rating_col = cols
    users, items, times, ratings = [], [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        try:
            header = next(reader)
        except StopIteration:
            raise EchorecError(f"{path}: empty file") from None
        if typed_header and not all(":" in h for h in header):
            raise EchorecError(f"{path}:1: expected a typed header like 'user_id:token', got {sep.join(header)!r}")
        ui = _find_col(header, user_col, path, True)
        ii = _find_col(header, item_col, path, True)
        ti = _find_col(header, time_col, path, False)
        ri = _find_col(header, rating_col, path, False)
        n = len(header)
        for lineno, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != n:
                raise EchorecError(f"{path}:{lineno}: expected {n} fields, got {len(row)}")
            u, i = row[ui].strip(), row[ii].strip()
            if not u or not i:
                raise EchorecError(f"{path}:{lineno}: empty {'user' if not u else 'item'} id")
            users.append(u)
            items.append(i)
            if ti is not None:
                times.append(_float(row[ti], path, lineno, "timestamp"))
            if ri is not None:
                ratings.append(_float(row[ri], path, lineno, "rating"))
    return _finish(users, items, times if ti is not None else None, ratings if ri is not None else None, path)


def _read_movielens(path) -> Interactions:
    users, items, times, ratings = [], [], [], []
    with open(path, encoding="latin-1") as f:
        first = f.readline()
        f.seek(0)
        sep = "::" if "::" in first else "\t"
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) != 4:
                raise EchorecError(f"{path}:{lineno}: expected 4 fields (user, item, rating, timestamp), got {len(parts)}")
            users.append(_check_int(parts[0], path, lineno, "user id"))
            items.append(_check_int(parts[1], path, lineno, "item id"))
            ratings.append(_float(parts[2], path, lineno, "rating"))
            times.append(_float(parts[3], path, lineno, "timestamp"))
    return _finish(users, items, times, ratings, path)


def _read_seq(path) -> Interactions:
    users, items = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise EchorecError(f"{path}:{lineno}: expected 'user item1 item2 ...', got only {parts[0]!r}")
            u = _check_int(parts[0], path, lineno, "user id")
            for p in parts[1:]:
                _check_int(p, path, lineno, "item id")
            users.extend([u] * (len(parts) - 1))
            items.extend(parts[1:])
    return _finish(users, items, None, None, path)


def _read_pairs(path) -> Interactions:
    users, items = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise EchorecError(f"{path}:{lineno}: expected 'user item', got {len(parts)} fields")
            users.append(_check_int(parts[0], path, lineno, "user id"))
            items.append(_check_int(parts[1], path, lineno, "item id"))
    return _finish(users, items, None, None, path)


def _read_parquet(path, cols) -> Interactions:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise EchorecError(f"{path}: reading Parquet needs pyarrow (pip install 'echorec[parquet]')") from None
    user_col, item_col, time_col, rating_col = (c.split(":")[0] for c in cols)
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    for c in (user_col, item_col):
        if c not in names:
            raise EchorecError(f"{path}: no column {c!r} (columns: {', '.join(names)})")
    want = [c for c in (user_col, item_col, time_col, rating_col) if c in names]
    parts: dict[str, list[np.ndarray]] = {c: [] for c in want}
    # Column batches keep memory bounded and never build one Python object per row for numbers.
    for batch in pf.iter_batches(columns=want, batch_size=1 << 20):
        for c in want:
            col = batch.column(batch.schema.get_field_index(c))
            if col.null_count:
                raise EchorecError(f"{path}: column {c!r} has {col.null_count} missing values")
            parts[c].append(col.to_numpy(zero_copy_only=False))
    arr = {c: np.concatenate(v) if v else np.array([]) for c, v in parts.items()}
    for c in (time_col, rating_col):
        if c in arr and not np.issubdtype(arr[c].dtype, np.number):
            raise EchorecError(f"{path}: column {c!r} is not numeric ({arr[c].dtype})")
    return _finish(
        arr[user_col].astype(str),
        arr[item_col].astype(str),
        arr.get(time_col),
        arr.get(rating_col),
        path,
    )
