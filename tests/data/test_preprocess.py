import numpy as np
import pytest

from echorec.data.preprocess import kcore, load_sequences, preprocess
from echorec.data.readers import Interactions, read_interactions
from echorec.errors import EchorecError


def inter(users, items, times=None, ratings=None):
    return Interactions.from_raw(users, items, times, ratings, "t")


def test_stable_time_sort_ties_keep_file_order_and_remap():
    d = preprocess(inter(["b", "a", "a", "a", "b"], ["x", "z", "y", "w", "y"], [5, 3, 1, 3, 1]))
    assert d.user_raw.tolist() == ["b", "a"]  # users by first appearance
    seqs = {d.user_raw[u]: [d.item_raw[i - 1] for i in d.sequence(u)] for u in range(d.n_users)}
    assert seqs == {"b": ["y", "x"], "a": ["y", "z", "w"]}  # z before w: same time, file order
    assert d.items.min() == 1 and d.items.max() == d.n_items == 4  # 0 stays free for padding


def test_min_rating_and_errors():
    d = preprocess(inter(["a", "a", "a"], ["x", "y", "z"], [1, 2, 3], [5, 1, 4]), min_rating=4)
    assert [d.item_raw[i - 1] for i in d.sequence(0)] == ["x", "z"]
    with pytest.raises(EchorecError, match="no interactions left after --min-rating"):
        preprocess(inter(["a"], ["x"], [1], [1]), min_rating=4)
    with pytest.raises(EchorecError, match="no rating column"):
        preprocess(inter(["a"], ["x"], [1]), min_rating=4)


def test_kcore_is_iterative():
    # item q appears twice but one of its users drops out, then q falls below 2 as well.
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 2])
    keep = kcore(users, items, 2)
    assert keep.tolist() == [True, True, True, True, False]
    with pytest.raises(EchorecError, match="no interactions left after --kcore"):
        preprocess(inter(["a", "b"], ["x", "y"], [1, 2]), kcore_k=5)


def test_cache_hit_returns_same_arrays(inter_file):
    a = load_sequences(inter_file)
    b = load_sequences(inter_file)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.offsets, b.offsets)
    assert a.item_raw.tolist() == b.item_raw.tolist()
    raw = read_interactions(inter_file)
    assert len(a.items) == len(raw)
