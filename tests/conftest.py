"""Shared fixtures: a small, learnable synthetic log written in every supported format."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # Every test gets its own cache folder and a fixed seed; two threads keep the suite steady.
    monkeypatch.setenv("ECHOREC_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


def synthetic_log(n_users=80, n_items=40, min_len=6, max_len=24, seed=0):
    """Users walk item -> item+1 (mod n) with some noise, so next-item models can learn it."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        length = int(rng.integers(min_len, max_len + 1))
        item = int(rng.integers(1, n_items + 1))
        t = 1_000_000 + u * 10_000
        for _ in range(length):
            rows.append((u, item, int(rng.integers(1, 6)), t))
            t += int(rng.integers(1, 100))
            item = item % n_items + 1 if rng.random() < 0.8 else int(rng.integers(1, n_items + 1))
    return rows


@pytest.fixture
def log_rows():
    return synthetic_log()


@pytest.fixture
def inter_file(tmp_path, log_rows):
    path = tmp_path / "tiny.inter"
    with open(path, "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u, i, r, t in reversed(log_rows):  # unsorted on purpose: the reader must sort by time
            f.write(f"{u}\t{i}\t{r}\t{t}\n")
    return str(path)


@pytest.fixture
def seq_file(tmp_path, log_rows):
    path = tmp_path / "tiny.txt"
    by_user: dict[int, list[int]] = {}
    for u, i, _, _ in log_rows:
        by_user.setdefault(u, []).append(i)
    with open(path, "w") as f:
        for u, items in by_user.items():
            f.write(f"{u} {' '.join(map(str, items))}\n")
    return str(path)
