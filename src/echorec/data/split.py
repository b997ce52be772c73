"""Leave-one-out split, training samples (prefix | all | bsarec) and vectorised, length-bucketed batching.

Every sample is a (start, end) pair of absolute indices into the CSR `items` array: the input is
`items[max(start, end - L):end]`, left-padded with 0 to the batch's width. Batches are built by one
gather over a (B, L) index grid, so no Python loop runs per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from echorec.data.datasets import resolve
from echorec.data.preprocess import SeqData, load_sequences, with_items_first
from echorec.errors import EchorecError


@dataclass
class Batch:
    """A batch of training or evaluation data (what the loss optimises is the trainer's Objective)."""

    seq: torch.Tensor  # (B, L) int64, left-padded, 0 = pad
    target: torch.Tensor | None = None  # (B,) next item (prefix mode, evaluation)
    targets: torch.Tensor | None = None  # (B, L) next item at every position, 0 = none ("all" mode)

    def to(self, device) -> Batch:
        mv = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(mv(self.seq), mv(self.target), mv(self.targets))

    def __len__(self) -> int:
        return self.seq.shape[0]


@dataclass
class Split:
    """A SeqData cut into a training part per user and valid/test targets.

    Leave-one-out: per user, the train part, then one valid item, then one test item. Global temporal
    (`targets` set): the train part is every event before T1; each event in [T1, T2) is a valid target
    and each event from T2 on a test target, with that user's earlier events as its history."""

    data: SeqData
    items: torch.Tensor  # (N,) int64, the CSR items
    starts: np.ndarray  # (U,) first index of each user
    train_end: np.ndarray  # (U,) exclusive end of each user's training part
    eval_users: np.ndarray  # leave-one-out: users with >= 3 items (they have a valid and a test item)
    targets: dict | None = None  # temporal: which -> (user of each target (T,), absolute index of each target (T,))

    @property
    def n_items(self) -> int:
        return self.data.n_items

    def items_on(self, device) -> torch.Tensor:
        """The CSR items on `device`, copied there once (batches are then gathered where the model runs)."""
        device = torch.device(device)
        if self.items.device == device:
            return self.items
        cache = self.__dict__.setdefault("_on", {})
        if device not in cache:
            cache[device] = self.items.to(device)
        return cache[device]

    def eval_samples(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) of the inputs for 'valid' or 'test'; the target is items[end]."""
        if self.targets is not None:
            users, pos = self.targets[which]
            return self.starts[users], pos
        u = self.eval_users
        end = self.train_end[u] + (0 if which == "valid" else 1)
        return self.starts[u], end

    def eval_sample_users(self, which: str) -> np.ndarray:
        """The user of each sample of eval_samples(which)."""
        return self.targets[which][0] if self.targets is not None else self.eval_users

    def train_samples(self, mode: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Every training sample of `mode` ("sample" draws from the prefixes: this returns all of them)."""
        if mode in ("prefix", "sample"):
            return prefix_samples(self.starts, self.train_end)
        if mode == "all":
            return window_samples(self.starts, self.train_end, max_len)
        if mode == "bsarec":
            return bsarec_samples(self.starts, self.train_end, max_len)
        raise EchorecError(f"unknown train_mode {mode!r}; use prefix, all or bsarec")


def load_split(dc, items_first: list[str] | None = None) -> tuple[SeqData, Split]:
    """Read, preprocess (cached) and split the log a DataConfig names: (SeqData, Split by dc.split). With
    `items_first` (raw ids: a warm start's parent items), those items keep their ids and new ones follow."""
    data = load_sequences(resolve(dc.dataset), dc.format, (dc.user_col, dc.item_col, dc.time_col, dc.rating_col),
                          dc.min_rating, dc.kcore, dc.dedup)
    if items_first is not None:
        data = with_items_first(data, items_first)[0]
    if dc.split == "time":
        return data, time_split(data, dc.valid_from, dc.test_from)
    return data, leave_one_out(data)


def parse_time(value: str, times: np.ndarray, what: str) -> float:
    """A split point: a fraction in [0, 1] of the log's time range (0 its first event's time, 1 its last; written
    0, 1, 0.8 or 1.0 alike), epoch seconds (or milliseconds past 1e11, as the readers take them) or an ISO-8601
    date (UTC without a zone). Epoch seconds 0 and 1 (1970) are never meant, so [0, 1] is a fraction."""
    import datetime as dt

    from echorec.data.readers import MS_THRESHOLD

    text = str(value).strip()
    try:
        x = float(text)
    except ValueError:
        try:
            d = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise EchorecError(f"{what} {value!r}: give a fraction of the time range (0.8), epoch seconds or an "
                               "ISO-8601 date (2021-06-01)") from None
        return (d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)).timestamp()
    if not np.isfinite(x):
        raise EchorecError(f"{what} {value!r}: not a finite number")
    if 0 <= x <= 1:
        return float(times.min() + x * (times.max() - times.min()))
    return x / 1000.0 if abs(x) > MS_THRESHOLD else x


def time_split(data: SeqData, valid_from, test_from) -> Split:
    """The global temporal split: train on every event before T1 = valid_from; every event in [T1, T2 =
    test_from) with at least one earlier event of its user is a valid target, every such event from T2 on a
    test target. No event at or after T1 is ever a training target or in a training input, and a target's
    history holds only that user's earlier events (ties in time keep file order)."""
    if data.times is None:
        raise EchorecError(f"{data.source}: --split time needs timestamps, and this file has none (its order is "
                           "the only time)")
    t1 = parse_time(valid_from, data.times, "--valid-from")
    t2 = parse_time(test_from, data.times, "--test-from")
    if not t1 < t2:
        raise EchorecError(f"--valid-from ({valid_from}) must come before --test-from ({test_from})")
    starts, ends = data.offsets[:-1], data.offsets[1:]
    n = len(data.items)
    user_of = np.repeat(np.arange(data.n_users), np.diff(data.offsets))
    before_t1 = data.times < t1
    if not before_t1.any():
        import datetime as dt

        first = dt.datetime.fromtimestamp(float(data.times.min()), dt.timezone.utc).isoformat()
        raise EchorecError(f"{data.source}: no event before --valid-from {valid_from} (the log starts at {first}): "
                           "nothing to train on")
    # Times are sorted within each user, so the train part is a prefix: its end is the first event >= T1.
    train_end = starts + np.add.reduceat(before_t1.astype(np.int64), starts) if n else starts.copy()
    train_end = np.where(ends > starts, train_end, starts)
    has_history = np.arange(n) > starts[user_of]
    targets = {}
    for which, mask in (("valid", ~before_t1 & (data.times < t2)), ("test", data.times >= t2)):
        pos = np.flatnonzero(mask & has_history)
        targets[which] = (user_of[pos], pos)
    for which, (u, _) in targets.items():
        if len(u) == 0:
            raise EchorecError(f"{data.source}: no {which} targets between --valid-from {valid_from} and --test-from "
                               f"{test_from} (events with an earlier event of their user)")
    return Split(data, torch.from_numpy(data.items), starts.copy(), train_end, np.unique(targets["test"][0]), targets)


def leave_one_out(data: SeqData) -> Split:
    lengths = data.lengths
    starts = data.offsets[:-1].copy()
    has_eval = lengths >= 3  # shorter users stay in training only
    train_end = data.offsets[1:] - np.where(has_eval, 2, 0)
    if not has_eval.any():
        raise EchorecError(f"{data.source}: no user has 3 or more interactions, so nothing can be evaluated")
    return Split(data, torch.from_numpy(data.items), starts, train_end, np.flatnonzero(has_eval))


def _runs(n_per_user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n_u samples per user u -> (user, k) per sample, k = 0, 1, ..., n_u - 1 within each user's run."""
    user = np.repeat(np.arange(len(n_per_user)), n_per_user)
    first = np.cumsum(n_per_user) - n_per_user
    return user, np.arange(n_per_user.sum()) - np.repeat(first, n_per_user)


def prefix_samples(starts: np.ndarray, train_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every prefix of every training part is one sample: inputs items[s:e], target items[e], s < e < train_end."""
    user, k = _runs(np.maximum(train_end - starts - 1, 0))
    return starts[user], starts[user] + 1 + k


def bsarec_samples(starts: np.ndarray, train_end: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The training set of BSARec's official code (its dataset.py): over the last max_len items of each
    training part, every prefix of that window is a sample, the empty one included: inputs items[w:e],
    target items[e], w <= e < train_end, w = max(start, train_end - max_len). Against `prefix_samples`
    it adds one "no history" sample per user (it teaches a popularity prior) and, for users with more
    than max_len training items, drops the earlier targets."""
    w = np.maximum(starts, train_end - max_len)
    user, k = _runs(np.maximum(train_end - w, 0))
    return w[user], w[user] + k


def window_samples(starts: np.ndarray, train_end: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Training parts cut into windows of max_len inputs from the most recent end.

    A window (s, e) holds inputs items[s:e] and targets items[s+1:e+1]; the last window of a user
    ends at train_end - 1 so its final target is the last training item.
    """
    ends_last = train_end - 1
    n_inputs = np.maximum(ends_last - starts, 0)
    user, k = _runs(-(-n_inputs // max_len))  # ceil: windows per user
    end = ends_last[user] - k * max_len
    start = np.maximum(starts[user], end - max_len)
    return start, end


def gather(items: torch.Tensor, start: torch.Tensor, end: torch.Tensor, width: int, shift: int = 0) -> torch.Tensor:
    """(B, width) left-padded rows items[max(start, end-width)+shift : end+shift]."""
    idx = end[:, None] - width + torch.arange(width, device=end.device)[None, :]  # (B, width)
    real = idx >= start[:, None]
    return torch.where(real, items[(idx + shift).clamp(min=0)], 0)


class BatchIterator:
    """Shuffled (optionally length-bucketed) batches over (start, end) samples, gathered on `device`.

    Bucketing: samples are shuffled, then sorted by length inside chunks of 64 batches, cut into
    batches and the batch order shuffled again, so a batch holds similar lengths and is cropped
    to its longest row instead of always being max_len wide. `multiple` rounds that width up to a
    multiple (capped at max_len): on a GPU an epoch then sees at most max_len / multiple + 1 shapes,
    so kernels (and torch.compile) meet few shapes; 1 keeps exact widths, the least work on a CPU.

    The sample order and the widths are decided on the host (from host copies of the lengths); the
    CSR items and the (start, end) pairs live on `device`, where each batch is gathered, so the only
    per-epoch transfer is the order's indices and nothing is copied per step.
    """

    def __init__(self, split: Split, start, end, max_len: int, batch_size: int, mode: str = "prefix",
                 shuffle: bool = True, bucket: bool = True, seed: int = 0, device=None, multiple: int = 1):
        self.device = torch.device(device or "cpu")
        self.items = split.items_on(self.device)
        self.start = torch.as_tensor(start, dtype=torch.int64)
        self.end = torch.as_tensor(end, dtype=torch.int64)
        self.max_len, self.batch_size, self.mode = max_len, batch_size, mode
        self.shuffle, self.bucket, self.seed, self.multiple = shuffle, bucket, seed, max(1, multiple)
        self.lengths = torch.clamp(self.end - self.start, max=max_len)
        on_host = self.device.type == "cpu"
        self.start_dev = self.start if on_host else self.start.to(self.device)
        self.end_dev = self.end if on_host else self.end.to(self.device)

    def __len__(self) -> int:
        return -(-len(self.start) // self.batch_size)

    @property
    def n_samples(self) -> int:
        return len(self.start)

    def order(self, epoch: int) -> list[torch.Tensor]:
        n = len(self.start)
        if not self.shuffle:
            return list(torch.arange(n).split(self.batch_size))
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=g)
        if not self.bucket:
            return list(perm.split(self.batch_size))
        chunk = self.batch_size * 64
        batches = []
        for c in perm.split(chunk):
            c = c[torch.argsort(self.lengths[c], stable=True)]
            batches.extend(c.split(self.batch_size))
        shuffled = torch.randperm(len(batches), generator=g)
        return [batches[i] for i in shuffled]

    def width(self, idx: torch.Tensor) -> int:
        """The batch's width: its longest row (a batch of empty histories, bsarec mode, is 1 wide), rounded up."""
        w = max(int(self.lengths[idx].max()), 1)
        return min(-(-w // self.multiple) * self.multiple, self.max_len) if self.multiple > 1 else w

    def make(self, idx: torch.Tensor, idx_dev: torch.Tensor | None = None) -> Batch:
        """The batch of samples `idx` (host indices; `idx_dev`: the same on the device)."""
        idx_dev = idx if idx_dev is None else idx_dev
        s, e = self.start_dev[idx_dev], self.end_dev[idx_dev]
        width = self.width(idx)
        seq = gather(self.items, s, e, width)
        if self.mode == "all":
            return Batch(seq, targets=gather(self.items, s, e, width, shift=1))
        return Batch(seq, target=self.items[e])

    def epoch(self, epoch: int, start_step: int = 0, shard: tuple[int, int] | None = None):
        """(step, Batch) for every batch of `epoch` from `start_step` on; shard=(rank, world) takes this process's
        share of every batch."""
        order = self.order(epoch)
        if shard is not None:
            order = [o[shard[0]::shard[1]] for o in order]
        flat = None if self.device.type == "cpu" else torch.cat(order).to(self.device, non_blocking=True)
        pos = 0
        for step, idx in enumerate(order):
            n, pos = len(idx), pos + len(idx)
            if step < start_step:
                continue  # done before a resume
            yield step, self.make(idx, None if flat is None else flat[pos - n:pos])


class SampledPrefixes(BatchIterator):
    """--train-mode sample: every epoch draws `k` prefixes (cut points) per user, so an epoch costs O(users * k)
    whatever the history lengths, against O(sum of lengths) for every prefix, whose cost for a bidirectional
    model (which must re-encode each prefix) grows with the sum of squared lengths.

    Within a user the cut points are uniform over the training positions: the draw then estimates, without
    bias, that user's share of the full-prefix objective that the papers train on, early positions (short
    histories, which evaluation meets too) included. Recency-weighted draws would favour the positions
    leave-one-out evaluates but change the objective. A user with at most k prefixes contributes all of them;
    with more, k are drawn with replacement (duplicates are rare while k is small against the history). The
    draw depends on (seed, epoch) only, so a resumed epoch redraws the same samples. Only (start, end) pairs
    are drawn: nothing (n_samples, max_len) is built for the epoch.

    K per user weighs every user alike, whereas every-prefix training weighs a user by its history length;
    draw="uniform" keeps the epoch's size but draws each prefix uniformly over all training positions, an
    unbiased sample of the every-prefix objective."""

    def __init__(self, split: Split, k: int, max_len: int, batch_size: int, draw: str = "user", **kw):
        self.user_start = split.starts
        self.n_prefixes = np.maximum(split.train_end - split.starts - 1, 0)  # targets items[start + 1 .. end - 1]
        self.k, self.draw = k, draw
        self.per_user = np.minimum(self.n_prefixes, k)
        super().__init__(split, *self._draw(0, kw.get("seed", 0)), max_len, batch_size, mode="prefix", **kw)

    def _draw(self, epoch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, epoch, 7])
        if self.draw == "uniform":
            return self._draw_uniform(rng)
        user = np.repeat(np.arange(len(self.per_user)), self.per_user)
        first = np.cumsum(self.per_user) - self.per_user
        rank = np.arange(len(user)) - np.repeat(first, self.per_user)  # 0 .. per_user - 1 within each user
        n = self.n_prefixes[user]
        offset = np.where(n <= self.k, rank, (rng.random(len(user)) * n).astype(np.int64))  # all, or k draws
        start = self.user_start[user]
        return start, start + 1 + offset

    def _draw_uniform(self, rng) -> tuple[np.ndarray, np.ndarray]:
        """draw="uniform": as many prefixes as the per-user draw takes, each uniform over all training positions
        (with replacement), so a user's expected share is its share of every-prefix training's samples."""
        ends = np.cumsum(self.n_prefixes)  # prefixes of users 0..u end at ends[u]
        pos = np.sort(rng.integers(0, ends[-1], size=int(self.per_user.sum())))
        user = np.searchsorted(ends, pos, side="right")
        start = self.user_start[user]
        return start, start + 1 + pos - (ends[user] - self.n_prefixes[user])

    def order(self, epoch: int) -> list[torch.Tensor]:
        start, end = self._draw(epoch, self.seed)
        self.start, self.end = torch.from_numpy(start), torch.from_numpy(end)
        self.lengths = torch.clamp(self.end - self.start, max=self.max_len)
        on_host = self.device.type == "cpu"
        self.start_dev = self.start if on_host else self.start.to(self.device)
        self.end_dev = self.end if on_host else self.end.to(self.device)
        return super().order(epoch)
