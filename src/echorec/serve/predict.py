"""Batch scoring (`echorec predict`): the top-k of every user of a log, written to a CSV or Parquet table of raw ids
(user, rank, item, score) that a product can read: the nightly job.

Each user's history is the whole log as the run reads it (by default the run's own data, with its column and
filter settings), so the answer is "what comes after everything we know", the same as `Run.recommend` given that
history: only the last max_len known items are read, unknown items are skipped, a user with no known item gets
the most popular items. The business rules (serve/filters.py: exclude seen items, an allow list, a deny list)
apply inside the top-k.

Users stream through in chunks sized so that one chunk's score matrix stays under a memory budget; the writer
runs on its own thread behind a small queue, so scoring (on every core, or the GPU) and writing overlap and
memory stays flat however many users there are. The table appears under its name only when it is complete.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np
import torch

from echorec.errors import EchorecError
from echorec.fsio import TEMP_MARK
from echorec.serve.filters import mask_scores, read_id_list, to_internal, top_k

FORMATS = ("csv", "parquet")


def output_format(path: str, fmt: str | None) -> str:
    fmt = fmt or ("parquet" if path.lower().endswith((".parquet", ".pq")) else "csv")
    if fmt not in FORMATS:
        raise EchorecError(f"--format {fmt}: use csv or parquet")
    return fmt


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


class TableWriter:
    """Rows of (user, rank, item, score) to a CSV or Parquet file, chunk by chunk, on a background thread. The
    file is written under a temporary name beside its target and renamed when closed, so a failed job leaves no
    half table under the target's name (and an existing table stays until the new one is whole). With pyarrow the
    raw ids are looked up and the rows written in its C++ code (CSV too); without it, CSV is written by Python."""

    def __init__(self, path: str, fmt: str, item_raw: list[str]):
        self.path, self.fmt = path, fmt
        folder = os.path.dirname(os.path.abspath(path))
        self.tmp = os.path.join(folder, f".{os.path.basename(path)}{TEMP_MARK}{os.getpid()}")
        self.item_raw = item_raw
        self.rows = 0
        self.q: queue.Queue = queue.Queue(maxsize=4)  # bounded: a slow disk slows the scoring, memory stays flat
        self.error: BaseException | None = None
        self.arrow = have_pyarrow()
        if fmt == "parquet" and not self.arrow:
            raise EchorecError("Parquet output needs pyarrow: pip install 'echorec[parquet]'")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
        """users (n,) raw ids, ids (n, k) internal item ids (0 = none), scores (n, k)."""
        if self.error is not None:
            raise self.error
        self.q.put((users, ids, scores))

    def _run(self) -> None:
        try:
            self._arrow() if self.arrow else self._csv()
        except BaseException as e:  # reported to the scoring thread at its next put() or at close()
            self.error = e
            while self.q.get() is not None:  # drain, so the producer never blocks on a dead writer
                pass

    def _chunks(self):
        """(users (n,), row's user index, rank, internal item id, score) per chunk, empty slots dropped."""
        while (chunk := self.q.get()) is not None:
            users, ids, scores = chunk
            n, k = ids.shape
            keep = (ids > 0).reshape(-1)
            self.rows += int(keep.sum())
            yield (users, np.repeat(np.arange(n), k)[keep], np.tile(np.arange(1, k + 1, dtype=np.int32), n)[keep],
                   ids.reshape(-1)[keep], scores.reshape(-1)[keep])

    def _arrow(self) -> None:
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        schema = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()),
                            ("score", pa.float32())])
        items = pa.array(self.item_raw, pa.string())
        writer = pq.ParquetWriter(self.tmp, schema) if self.fmt == "parquet" else pcsv.CSVWriter(self.tmp, schema)
        with writer:
            for users, who, rank, ids, score in self._chunks():
                writer.write_table(pa.table([pa.array(users, pa.string()).take(who), pa.array(rank),
                                             items.take(ids - 1), pa.array(score.astype(np.float32))], schema=schema))

    def _csv(self) -> None:
        import csv

        raw = np.array([""] + list(self.item_raw), dtype=object)
        with open(self.tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["user", "rank", "item", "score"])
            for users, who, rank, ids, score in self._chunks():
                w.writerows(zip(np.asarray(users, dtype=object)[who].tolist(), rank.tolist(), raw[ids].tolist(),
                                score.astype(np.float32).tolist()))

    def close(self, ok: bool = True) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None or not ok:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
            if self.error is not None:
                raise self.error
            return
        os.replace(self.tmp, self.path)


def history_csr(data, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The log's sequences in the run's internal item ids, items the run does not know left out: (items,
    offsets) in CSR form, one row per user of the log."""
    remap = np.array([index.get(str(r), 0) for r in data.item_raw], dtype=np.int64)  # log id - 1 -> run id
    ids = remap[data.items - 1]
    known = ids > 0
    counts = np.add.reduceat(known.astype(np.int64), data.offsets[:-1]) if len(ids) else np.zeros(data.n_users, int)
    counts = np.where(np.diff(data.offsets) > 0, counts, 0)  # reduceat repeats a value at empty rows
    return ids[known], np.concatenate([[0], np.cumsum(counts)])


def select_users(user_raw: np.ndarray, users_file: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids, row in the log or -1) of the users to score: every user of the log, or those of the file (in
    its order; users absent from the log get the popularity answer)."""
    if users_file is None:
        return user_raw, np.arange(len(user_raw))
    wanted = read_id_list(users_file, "user list")
    row = {str(u): i for i, u in enumerate(user_raw)}
    return np.array(wanted, dtype=object), np.array([row.get(u, -1) for u in wanted], dtype=np.int64)


def chunk_users(n_items: int, budget_mb: float, cap: int = 4096) -> int:
    """Users per chunk: one chunk's float32 scores (users x items) stay under the budget."""
    return int(max(1, min(cap, budget_mb * 2**20 // (4 * max(n_items, 1)))))


class Scorer:
    """The run's model and rules over chunks of users; returns (internal item ids (n, k), 0 = none; scores)."""

    def __init__(self, rec, k: int, exclude_seen: bool, allow: np.ndarray | None, deny: np.ndarray | None):
        self.rec, self.k, self.exclude_seen, self.allow, self.deny = rec, k, exclude_seen, allow, deny
        self.device = rec.model.item_emb.weight.device
        self.fallback = self._fallback()
        self._buf: torch.Tensor | None = None  # one chunk's scores, reused (see the model's score_into)

    def _scores(self, seq: torch.Tensor) -> torch.Tensor:
        h = self.rec.model.encode_last(seq).float()  # (B, D)
        if self._buf is None or self._buf.shape[0] < len(seq):
            self._buf = torch.empty(len(seq), self.rec.n_items, device=self.device)
        return self.rec.model.score_into(h, self._buf[: len(seq)])

    def _fallback(self) -> tuple[np.ndarray, np.ndarray]:
        """The popularity answer for a user with no known item, under the rules (computed once)."""
        ans = self.rec._answer(None, [], [], self.k, False, self.allow, self.deny)
        ids = np.zeros(self.k, dtype=np.int64)
        scores = np.full(self.k, -np.inf, dtype=np.float32)
        ids[: len(ans["items"])] = [self.rec.index[x["item"]] for x in ans["items"]]
        scores[: len(ans["items"])] = [x["score"] for x in ans["items"]]
        return ids, scores

    @torch.no_grad()
    def __call__(self, items: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(rows)
        out_ids, out_scores = np.tile(self.fallback[0], (n, 1)), np.tile(self.fallback[1], (n, 1))
        start, end = offsets[np.maximum(rows, 0)], offsets[np.maximum(rows, 0) + 1]
        has = (rows >= 0) & (end > start)
        if not has.any():
            return out_ids, out_scores
        s, e = start[has], end[has]
        width = int(min((e - s).max(), self.rec.max_len))
        idx = e[:, None] - width + np.arange(width)[None, :]  # (B, width): left padding where idx < start
        seq = np.where(idx >= s[:, None], items[np.clip(idx, 0, None)], 0)
        scores = self._scores(torch.from_numpy(seq).to(self.device))  # (B, n_items)
        seen_rows = seen_cols = None
        if self.exclude_seen:  # the whole known history, as Run.recommend excludes what it is given
            lens = e - s
            seen_rows = np.repeat(np.arange(len(s)), lens)
            seen_cols = items[np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens - s, lens)]
        mask_scores(scores, self.deny, seen_rows, seen_cols)
        values, ids = top_k(scores, self.k, self.allow)
        kk = ids.shape[1]
        out_ids[has] = 0
        out_ids[np.flatnonzero(has)[:, None], np.arange(kk)[None, :]] = ids.cpu().numpy()
        out_scores[np.flatnonzero(has)[:, None], np.arange(kk)[None, :]] = values.cpu().numpy()
        return out_ids, out_scores


def predict(run_dir: str, out: str, data: str | None = None, users: str | None = None, k: int = 10,
            exclude_seen: bool = True, allow: list | None = None, deny: list | None = None, fmt: str | None = None,
            device: str = "cpu", budget_mb: float = 256.0, overwrite: bool = False, progress: bool = True,
            columns: dict | None = None, log=print) -> dict:
    """Score every user (or those listed in `users`) of `data` (default: the run's own log) and write their
    top-k to `out`. `columns`: the log's format and columns when they differ from the run's (format, user_col,
    item_col, time_col). Returns the job's figures (users, rows, seconds, users/s, fallback users)."""
    from echorec.data.datasets import resolve
    from echorec.data.preprocess import load_sequences
    from echorec.serve.recommender import Recommender

    fmt = output_format(out, fmt)
    if os.path.isdir(out):
        raise EchorecError(f"--out {out}: is a folder; give the table's file name")
    if os.path.exists(out) and not overwrite:
        raise EchorecError(f"--out {out}: exists; pass --overwrite to replace it")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise EchorecError(f"--out {out}: its folder does not exist")
    rec = Recommender.from_run(run_dir, device)
    rc = rec.config
    cols = {"format": rc.data.format, "user_col": rc.data.user_col, "item_col": rc.data.item_col,
            "time_col": rc.data.time_col, **(columns or {})}
    rec._check_k(k)
    log_data = load_sequences(resolve(data or rc.data.dataset), cols["format"],
                              (cols["user_col"], cols["item_col"], cols["time_col"], rc.data.rating_col),
                              rc.data.min_rating, rc.data.kcore, rc.data.dedup)
    items, offsets = history_csr(log_data, rec.index)
    user_raw, rows = select_users(log_data.user_raw, users)
    scorer = Scorer(rec, k, exclude_seen, to_internal(rec.index, allow), to_internal(rec.index, deny))
    return _score_all(scorer, items, offsets, user_raw, rows, TableWriter(out, fmt, rec.item_raw),
                      chunk_users(rec.n_items, budget_mb), progress, log)


def _score_all(scorer: Scorer, items, offsets, user_raw, rows, writer: TableWriter, chunk: int, progress: bool,
               log) -> dict:
    from tqdm import tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=len(rows), unit="user", desc="predict", disable=None if progress else True, smoothing=0.1)
    ok = False
    try:
        for lo in range(0, len(rows), chunk):
            sel = rows[lo:lo + chunk]
            ids, scores = scorer(items, offsets, sel)
            writer.put(np.asarray(user_raw[lo:lo + chunk]), ids, scores)
            bar.update(len(sel))
        ok = True
    finally:
        bar.close()
        writer.close(ok)
    secs = time.perf_counter() - t0
    fallback = int(((rows < 0) | (offsets[np.maximum(rows, 0) + 1] == offsets[np.maximum(rows, 0)])).sum())
    stats = {"users": int(len(rows)), "rows": writer.rows, "seconds": round(secs, 3),
             "users_per_s": round(len(rows) / max(secs, 1e-9), 1), "fallback_users": fallback, "out": writer.path}
    log(f"{stats['users']:,} users ({fallback:,} with no known item: popular items), {stats['rows']:,} rows in "
        f"{secs:.1f} s ({stats['users_per_s']:,.0f} users/s) -> {writer.path}")
    return stats
