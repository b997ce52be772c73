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
import math
import os
from dataclasses import dataclass

import numpy as np

from echorec.errors import EchorecError

FORMATS = ("auto", "inter", "movielens", "csv", "tsv", "parquet", "seq", "pairs")
# The time column's default name. A file without it is read in file order; a column named explicitly
# (--time-col) must exist, so a typo never silently drops the timestamps.
DEFAULT_TIME_COL = "timestamp"


@dataclass
class Interactions:
    """One row per interaction. Ids are integer codes into the raw ids, each raw id kept once: a log of
    10^7 rows holds two int64 arrays, not 2 x 10^7 Python strings."""

    users: np.ndarray  # (n,) int32 codes into user_ids
    items: np.ndarray  # (n,) int32 codes into item_ids
    user_ids: np.ndarray  # (distinct users,) str: the file's id of each code
    item_ids: np.ndarray  # (distinct items,) str
    times: np.ndarray | None  # (n,) float64 seconds since 1970 (see `to_seconds`), None when file order is time order
    ratings: np.ndarray | None  # (n,) float64 or None
    source: str

    def __len__(self) -> int:
        return len(self.users)

    def raw_users(self) -> np.ndarray:
        return self.user_ids[self.users]

    def raw_items(self) -> np.ndarray:
        return self.item_ids[self.items]

    @classmethod
    def from_raw(cls, users, items, times=None, ratings=None, source: str = "") -> Interactions:
        """From per-row raw ids (any sequence of str)."""
        u_codes, u_ids = _encode(users)
        i_codes, i_ids = _encode(items)
        return cls(u_codes, i_codes, u_ids, i_ids, None if times is None else np.asarray(times, dtype=np.float64),
                   None if ratings is None else np.asarray(ratings, dtype=np.float64), source)


def _encode(values) -> tuple[np.ndarray, np.ndarray]:
    """Codes by first appearance, and the distinct values in that order (as str)."""
    arr = np.asarray(values, dtype=str)
    uniq, first, inv = np.unique(arr, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inv.reshape(-1)].astype(np.int32), uniq[order]


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


def check_readable(path: str) -> None:
    """The checks before a byte is read: the path exists, is a file, and is not empty."""
    if not os.path.exists(path):
        raise EchorecError(f"{path}: no such file")
    if os.path.isdir(path):
        raise EchorecError(f"{path}: is a folder; pass the interaction file inside it")
    if os.path.getsize(path) == 0:
        raise EchorecError(f"{path}: empty file")


def _first_bad_utf8_line(path: str) -> tuple[int, int]:
    """(line number, byte column) of the first line that is not UTF-8."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                line.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                return lineno, e.start + 1
    return 1, 1


def read_interactions(
    path: str,
    fmt: str = "auto",
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    rating_col: str = "rating",
) -> Interactions:
    check_readable(path)
    if user_col.split(":")[0] == item_col.split(":")[0]:
        raise EchorecError(f"--user-col and --item-col both name the column {user_col.split(':')[0]!r}")
    if fmt not in FORMATS:
        raise EchorecError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path)
    try:
        out = _read(path, fmt, (user_col, item_col, time_col, rating_col))
    except UnicodeDecodeError:
        lineno, col = _first_bad_utf8_line(path)
        raise EchorecError(f"{path}:{lineno}: not UTF-8 text (byte {col} of the line); save the file as UTF-8") from None
    except OSError as e:
        raise EchorecError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(out) == 0:
        raise EchorecError(f"{path}: no interactions")
    return out


def _read(path: str, fmt: str, cols: tuple[str, str, str, str]) -> Interactions:
    if fmt in ("inter", "csv", "tsv"):
        sep, typed = ("," if fmt == "csv" else "\t"), fmt == "inter"
        # Columnar and multithreaded when the file is clean; anything odd goes to the row reader, which
        # either reads it the same way or names the file, line and field that is wrong.
        return _read_delimited_arrow(path, sep, cols, typed) or _read_delimited(path, sep, cols, typed)
    if fmt == "movielens":
        return _read_movielens(path)
    if fmt == "parquet":
        return _read_parquet(path, cols)
    if fmt == "seq":
        return _read_seq(path)
    return _read_pairs(path)


def _float(value: str, path: str, lineno: int, what: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise EchorecError(f"{path}:{lineno}: {what} {value!r} is not a number") from None
    if not math.isfinite(x):  # a NaN time would sort its item last and make it the test target
        raise EchorecError(f"{path}:{lineno}: {what} {value!r} is not a finite number")
    return x


def _check_int(value: str, path: str, lineno: int, what: str) -> str:
    try:
        int(value)
    except ValueError:
        raise EchorecError(f"{path}:{lineno}: {what} {value!r} is not an integer") from None
    return value


def _finish(users, items, times, ratings, path, epoch_numbers: bool = True, lines=None) -> Interactions:
    """Interactions from the row reader's lists. `epoch_numbers`: the times are numbers from the file (seconds or
    milliseconds, see to_seconds); False: they were parsed from dates, already seconds."""
    t = None if times is None else np.asarray(times, np.float64)
    if t is not None and epoch_numbers:
        t = to_seconds(t, path, lines)
    return Interactions.from_raw(users, items, t, ratings, path)


def _epoch():
    import datetime as dt

    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


EPOCH = _epoch()
MS_THRESHOLD = 1e11  # epoch numbers above this are milliseconds (1e11 s is the year 5138)


def to_seconds(t: np.ndarray, path: str = "", lines=None) -> np.ndarray:
    """Epoch numbers in seconds: a column whose every value exceeds 1e11 is milliseconds. A column with values on
    both sides of 1e11 is refused (one value must not rescale the rest): `lines[i]` names row i's line (the row
    reader), else rows are counted from 1."""
    finite = np.isfinite(t)
    big = finite & (np.abs(t) > MS_THRESHOLD)
    if not big.any():
        return t
    small = finite & ~big
    if small.any():
        i, j = int(np.flatnonzero(big)[0]), int(np.flatnonzero(small)[0])
        where = (lambda k: f"line {lines[k]}") if lines is not None else (lambda k: f"row {k + 1}")
        raise EchorecError(f"{path}: timestamps mix milliseconds and seconds ({where(i)}: {t[i]:.0f}, {where(j)}: "
                           f"{t[j]:.0f}); use one unit")
    return t / 1000.0


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class _TimeParser:
    """One column's timestamps, row by row: epoch numbers or ISO-8601 text (with or without a zone; without,
    UTC), never both in one file."""

    def __init__(self, path: str):
        self.path, self.kind = path, None

    def __call__(self, value: str, lineno: int) -> float:
        import datetime as dt

        text = value.strip()
        try:
            x, kind = _float(text, self.path, lineno, "timestamp"), "number"
        except EchorecError:
            if _is_number(text):
                raise  # a number, but not a finite one

            try:
                d = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
            except ValueError:
                raise EchorecError(f"{self.path}:{lineno}: timestamp {value!r} is not a number or an ISO-8601 "
                                   "date") from None
            d = d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)
            # whole microseconds, then seconds: the Arrow reader reaches the same float from its timestamp type
            x, kind = ((d - EPOCH) // dt.timedelta(microseconds=1)) / 1e6, "ISO-8601 date"
        if self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            raise EchorecError(f"{self.path}:{lineno}: timestamp {value!r} is an {kind} where earlier lines hold "
                               f"{'numbers' if self.kind == 'number' else 'ISO-8601 dates'}; use one form")
        return x


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
    # utf-8-sig: a byte-order mark is dropped, not read into the first column's name.
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        try:
            header = next(reader)
        except StopIteration:
            raise EchorecError(f"{path}: empty file") from None
        except csv.Error as e:
            raise EchorecError(f"{path}:1: {e}") from None
        if typed_header and not all(":" in h for h in header):
            raise EchorecError(f"{path}:1: expected a typed header like 'user_id:token', got {sep.join(header)!r}")
        ui = _find_col(header, user_col, path, True)
        ii = _find_col(header, item_col, path, True)
        ti = _find_col(header, time_col, path, time_col.split(":")[0] != DEFAULT_TIME_COL)
        ri = _find_col(header, rating_col, path, False)
        n = len(header)
        parse_time = _TimeParser(path)
        lines = []
        for lineno, row in _rows(reader, path):
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
                times.append(parse_time(row[ti], lineno))
                lines.append(lineno)
            if ri is not None:
                ratings.append(_float(row[ri], path, lineno, "rating"))
    return _finish(users, items, times if ti is not None else None, ratings if ri is not None else None, path,
                   epoch_numbers=parse_time.kind != "ISO-8601 date", lines=lines)


def _rows(reader, path):
    """(line number, fields) of a csv reader after its header; the csv module's errors (a field over its size
    limit, a stray quote) name the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise EchorecError(f"{path}:{reader.line_num}: {e}") from None
        yield reader.line_num, row


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
    with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of the first user id
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
    with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of the first user id
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise EchorecError(f"{path}:{lineno}: expected 'user item', got {len(parts)} fields")
            users.append(_check_int(parts[0], path, lineno, "user id"))
            items.append(_check_int(parts[1], path, lineno, "item id"))
    return _finish(users, items, None, None, path)


def _arrow_seconds(col, path: str) -> np.ndarray | None:
    """An Arrow time column as float64 epoch seconds: numbers (seconds, or milliseconds past 1e11), timestamps
    (with a zone: UTC instants; without: read as UTC) and dates. None for any other type (the caller then
    reads row by row, which names the first value it cannot take)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return to_seconds(col.to_numpy(zero_copy_only=False).astype(np.float64), path)
    if pa.types.is_timestamp(t):
        # whole microseconds (finer units truncated), then seconds: the row reader's rule for dates
        us = pc.cast(col, pa.timestamp("us", t.tz), safe=False)
        return pc.cast(us, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
    if pa.types.is_date32(t):
        return pc.cast(col, pa.int32()).to_numpy(zero_copy_only=False).astype(np.float64) * 86400.0
    if pa.types.is_date64(t):
        return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / 1e3
    return None


def _arrow_codes(col) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow id column (strings, dictionary-encoded strings or integers) -> (int64 codes, the distinct ids as
    str, surrounding white space stripped as the row reader does). Only the distinct ids are ever Python
    strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(col.type):
        uniq, inv = np.unique(col.to_numpy(), return_inverse=True)
        return inv.reshape(-1).astype(np.int32), uniq.astype(str)
    enc = col if pa.types.is_dictionary(col.type) else col.dictionary_encode()
    if isinstance(enc, pa.ChunkedArray):  # one dictionary per chunk: unify, then one array
        enc = enc.unify_dictionaries()
        enc = enc.combine_chunks() if enc.num_chunks != 1 else enc.chunk(0)
    indices, dictionary = enc.indices, enc.dictionary
    trimmed = pc.utf8_trim_whitespace(dictionary)
    if not trimmed.equals(dictionary):  # " a" and "a" are one id: re-encode the (small) dictionary
        remap = trimmed.dictionary_encode()
        indices, dictionary = remap.indices.take(indices), remap.dictionary
    return indices.to_numpy(zero_copy_only=False), np.asarray(dictionary.to_pylist(), dtype=str)


def _from_arrow_table(table, names: dict, path: str) -> Interactions | None:
    """Interactions from the Arrow columns `names` (role -> column name; time and rating may be missing), or
    None when a value needs the row reader's judgement (a null, an empty id, a non-finite number)."""
    import pyarrow as pa

    cols = {role: table.column(name) for role, name in names.items()}
    if any(c.null_count for c in cols.values()):
        return None
    ids = {role: _arrow_codes(cols[role]) for role in ("user", "item")}
    if any((v == "").any() for _, v in ids.values()):
        return None  # an empty id: the row reader names its line
    try:
        times = _arrow_seconds(cols["time"], path) if "time" in cols else None
    except EchorecError:
        return None  # seconds and milliseconds mixed: the row reader names the lines
    if "time" in cols and times is None:
        return None
    ratings = None
    if "rating" in cols:
        if not (pa.types.is_integer(cols["rating"].type) or pa.types.is_floating(cols["rating"].type)):
            return None
        ratings = cols["rating"].to_numpy(zero_copy_only=False).astype(np.float64)
    for x in (times, ratings):
        if x is not None and not np.isfinite(x).all():
            return None
    (u, u_ids), (i, i_ids) = ids["user"], ids["item"]
    pa.default_memory_pool().release_unused()  # the dictionary work's buffers, back to the system
    return Interactions(u, i, u_ids, i_ids, times, ratings, path)


def _read_delimited_arrow(path, sep, cols, typed_header) -> Interactions | None:
    """The fast path of csv/tsv/inter: pyarrow's multithreaded CSV reader, ids dictionary-encoded to codes as
    they are read. None (the row reader then runs) without pyarrow, or for a file it would read differently."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    with open(path, encoding="utf-8-sig", newline="") as f:
        try:
            header = next(csv.reader(f, delimiter=sep), None)
        except csv.Error:
            return None
    if not header or (typed_header and not all(":" in h for h in header)):
        return None
    user_col, item_col, time_col, rating_col = cols
    found = {role: _find_col(header, want, path, role in ("user", "item") or
                             (role == "time" and want.split(":")[0] != DEFAULT_TIME_COL))
             for role, want in (("user", user_col), ("item", item_col), ("time", time_col), ("rating", rating_col))}
    names = {role: header[i] for role, i in found.items() if i is not None}
    if len(set(names.values())) != len(names) or len(set(header)) != len(header):
        return None
    # Ids are read straight into dictionary arrays (codes + each distinct id once), never 10^7 strings.
    dict_str = pa.dictionary(pa.int32(), pa.string())
    types = {names["user"]: dict_str, names["item"]: dict_str}
    if "rating" in names:
        types[names["rating"]] = pa.float64()
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pcsv.ParseOptions(delimiter=sep),
            # The time column's type is inferred: numbers, ISO-8601 timestamps (with a zone or without) or dates.
            convert_options=pcsv.ConvertOptions(column_types=types, include_columns=list(names.values()),
                                                strings_can_be_null=False, quoted_strings_can_be_null=False),
            # malloc, not Arrow's caching allocator: the file's buffers go back to the system once read, so
            # preprocessing does not start on top of them.
            memory_pool=pa.system_memory_pool())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    return _from_arrow_table(table, names, path)


def _read_parquet(path, cols) -> Interactions:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EchorecError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    user_col, item_col, time_col, rating_col = (c.split(":")[0] for c in cols)
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        need = (user_col, item_col) + ((time_col,) if time_col != DEFAULT_TIME_COL else ())
        for c in need:
            if c not in names:
                raise EchorecError(f"{path}: no column {c!r} (columns: {', '.join(names)})")
        twice = sorted({c for c in names if names.count(c) > 1} & {user_col, item_col, time_col, rating_col})
        if twice:
            raise EchorecError(f"{path}: column {twice[0]!r} appears {names.count(twice[0])} times; name each "
                               "column once")
        roles = {"user": user_col, "item": item_col, "time": time_col, "rating": rating_col}
        roles = {r: c for r, c in roles.items() if c in names}
        strings = [c for r, c in roles.items() if r in ("user", "item") and
                   pa.types.is_string(pf.schema_arrow.field(c).type)]
        table = pq.read_table(path, columns=list(dict.fromkeys(roles.values())), read_dictionary=strings)
    except (pa.ArrowException, OSError) as e:
        raise EchorecError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    for role, c in roles.items():
        col = table.column(c)
        if col.null_count:
            raise EchorecError(f"{path}: column {c!r} has {col.null_count} missing values")
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if role in ("user", "item") and not (pa.types.is_integer(t) or pa.types.is_string(t) or
                                             pa.types.is_large_string(t)):
            raise EchorecError(f"{path}: column {c!r} holds {col.type}; ids must be strings or integers")
        if role == "rating" and not numeric:
            raise EchorecError(f"{path}: column {c!r} is not numeric ({col.type})")
        if role == "time" and _arrow_seconds(col, path) is None:
            raise EchorecError(f"{path}: column {c!r} holds {col.type}; timestamps must be numbers, timestamps or "
                               "dates")
    out = _from_arrow_table(table, roles, path)
    if out is None:
        for role, c in roles.items():
            if role in ("time", "rating"):
                x = _arrow_seconds(table.column(c), path) if role == "time" else \
                    table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                bad = np.flatnonzero(~np.isfinite(x))
                if len(bad):
                    what = "timestamp" if role == "time" else role
                    raise EchorecError(f"{path}: row {int(bad[0]) + 1}: {what} {float(x[bad[0]])!r} is not a finite "
                                       "number")
        raise EchorecError(f"{path}: an empty user or item id")
    return out
