"""The two CSV readers agree (#42): the Arrow path and the row reader give the same events, times and ids for the
same file, or the Arrow path steps aside and the row reader gives its one-line refusal. A property test feeds both
random CSVs (ids with spaces, quotes and unicode, times as seconds, milliseconds, decimals, ISO dates with and
without zones, date-only values, garbage); then the cases of the hardening probe, one row each."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echorec.data.readers import _read_delimited, _read_delimited_arrow, read_interactions
from echorec.errors import EchorecError

pytest.importorskip("pyarrow")
COLS = ("user_id", "item_id", "timestamp", "rating")

IDS = st.sampled_from(["u1", "u2", " u1", "ü3", '"q"', "a b", "7", "007", "x\ty", ""])
TIMES = st.one_of(
    st.integers(0, 2_000_000_000).map(str),                      # seconds
    st.integers(10**12, 2 * 10**12).map(str),                    # milliseconds
    st.floats(0, 2e9, allow_nan=False).map(lambda x: f"{x:.3f}"),  # decimal seconds
    st.sampled_from(["2021-03-04", "2021-03-04T05:06:07", "2021-03-04T05:06:07Z", "2021-03-04T05:06:07.123456Z",
                     "2021-03-04T05:06:07.123456789Z", "2021-03-04 05:06:07+02:00", "9999-12-31",
                     "1970-01-01T00:00:00Z", "nan", "inf", "soon", ""]))
RATINGS = st.sampled_from(["1", "2.5", "5", "-1", "nan", "x"])


def write(tmp_path, rows, name="log.csv"):
    import csv

    path = tmp_path / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLS)
        w.writerows(rows)
    return str(path)


def events(inter):
    times = None if inter.times is None else inter.times.tolist()
    ratings = None if inter.ratings is None else inter.ratings.tolist()
    return list(inter.raw_users()), list(inter.raw_items()), times, ratings


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(IDS, IDS, TIMES, RATINGS), min_size=1, max_size=8))
def test_both_readers_read_the_same_or_the_row_reader_refuses(tmp_path_factory, rows):
    path = write(tmp_path_factory.mktemp("csv"), rows)
    try:
        slow = events(_read_delimited(path, ",", COLS, False))
    except EchorecError:
        slow = None
    fast = _read_delimited_arrow(path, ",", COLS, False)
    if fast is None:
        return  # the row reader decides (its events or its refusal)
    assert slow is not None, "the Arrow path accepted a file the row reader refuses"
    assert events(fast) == slow


@pytest.mark.parametrize("rows, expect", [
    # 2021 dates and one far-future date, read by the row reader: no rescaling of dates (probe finding 1)
    ([("u", "i", "2021-01-02T00:00:00Z", "1"), ("u", "j", "9999-12-31", "1")], [1609545600.0, 253402214400.0]),
    ([("u", "i", "2021-01-02", "1"), ("u", "j", "2021-01-03T00:00:00Z", "1")], [1609545600.0, 1609632000.0]),
    # milliseconds throughout are milliseconds
    ([("u", "i", "1609545600000", "1"), ("u", "j", "1609545601000", "1")], [1609545600.0, 1609545601.0]),
    # one value past 1e11 among seconds must not rescale the column: refused, naming both lines
    ([("u", "i", "1609545600", "1"), ("u", "j", "1609545600000", "1")], "mix milliseconds and seconds (line 3"),
])
def test_time_units(tmp_path, rows, expect):
    path = write(tmp_path, rows)
    if isinstance(expect, str):
        with pytest.raises(EchorecError, match=expect.replace("(", r"\(")):
            read_interactions(path)
        return
    assert read_interactions(path).times.tolist() == expect


def test_a_repeated_header_name_goes_to_the_row_reader_and_keeps_dates(tmp_path):
    path = tmp_path / "rep.csv"
    path.write_text("user_id,item_id,timestamp,timestamp\nu,i,2021-01-02T00:00:00Z,x\nu,j,9999-12-31,y\n")
    assert read_interactions(str(path)).times.tolist() == [1609545600.0, 253402214400.0]


@pytest.mark.parametrize("name, text, kwargs, expect", [
    ("bom.txt", "\ufeff1 5 6 7\n2 5 6\n", {}, ["1", "2"]),                        # seq file: BOM not in the id
    ("bom.pairs", "\ufeff1 5\n1 6\n2 5\n", {"fmt": "pairs"}, ["1", "2"]),          # pairs file too
    ("log.csv", "user_id,item_id,ts\nu,i,1\n", {"time_col": "when"}, "no column 'when'"),  # named time col missing
    ("log.csv", "user_id,item_id,ts\nu,i,1\n", {}, None),                          # default name missing: file order
    ("log.csv", "user_id,item_id\nu,i\n", {"item_col": "user_id"}, "both name the column 'user_id'"),
])
def test_decided_cases(tmp_path, name, text, kwargs, expect):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    if isinstance(expect, str):
        with pytest.raises(EchorecError, match=expect):
            read_interactions(str(path), **kwargs)
        return
    inter = read_interactions(str(path), **kwargs)
    if expect is None:
        assert inter.times is None
    else:
        assert sorted(set(inter.raw_users())) == expect


def test_parquet_with_a_repeated_column_name_is_one_line(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    t = pa.Table.from_arrays([pa.array(["u"]), pa.array(["i"]), pa.array([1]), pa.array([2])],
                             names=["user_id", "item_id", "timestamp", "timestamp"])
    pq.write_table(t, tmp_path / "rep.parquet")
    with pytest.raises(EchorecError, match="column 'timestamp' appears 2 times"):
        read_interactions(str(tmp_path / "rep.parquet"))


def test_arrow_and_row_reader_keep_the_same_time_precision(tmp_path):
    rows = [("u", "i", "2021-03-04T05:06:07.123456789Z", "1"), ("u", "j", "2021-03-04T05:06:08.000001Z", "1")]
    path = write(tmp_path, rows)
    fast = _read_delimited_arrow(path, ",", COLS, False)
    slow = _read_delimited(path, ",", COLS, False)
    assert fast is not None and np.array_equal(fast.times, slow.times)  # nanoseconds: both keep whole microseconds
    assert slow.times[0] == 1614834367.123456
