"""The columnar (pyarrow) reading path: it gives what the row reader gives, takes the timestamp forms people
have (epoch seconds or milliseconds, ISO-8601 with or without a zone, Parquet timestamps and dates), and
leaves every mistake to the row reader's one-line `file:line` errors."""

import datetime as dt

import numpy as np
import pytest

from echorec.data import readers
from echorec.data.readers import read_interactions
from echorec.errors import EchorecError

pa = pytest.importorskip("pyarrow")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


@pytest.fixture
def no_row_reader(monkeypatch):
    """Fail if the row reader runs: the file must have been read by the columnar path."""
    def boom(*a, **k):
        raise AssertionError("the row reader ran")
    monkeypatch.setattr(readers, "_read_delimited", boom)


def _same(a, b):
    assert a.raw_users().tolist() == b.raw_users().tolist() and a.raw_items().tolist() == b.raw_items().tolist()
    assert a.user_ids.tolist() == b.user_ids.tolist() and a.item_ids.tolist() == b.item_ids.tolist()
    for x, y in ((a.times, b.times), (a.ratings, b.ratings)):
        assert (x is None and y is None) or np.array_equal(x, y)


@pytest.mark.parametrize("fmt,sep,header", [("csv", ",", "user_id,item_id,rating,timestamp"),
                                            ("tsv", "\t", "user_id\titem_id\trating\ttimestamp"),
                                            ("inter", "\t", "user_id:token\titem_id:token\trating:float\ttimestamp:float")])
def test_columnar_path_reads_what_the_row_reader_reads(tmp_path, monkeypatch, fmt, sep, header):
    rng = np.random.default_rng(0)
    rows = [sep.join([f"u{rng.integers(50)}", f" it{rng.integers(80)} ", str(rng.integers(1, 6)), str(1_000_000 + i)])
            for i in range(3000)]
    p = write(tmp_path, f"log.{fmt}", header + "\n" + "\n".join(rows) + "\n\n")
    fast = read_interactions(p)
    row = readers._read_delimited(p, sep, ("user_id", "item_id", "timestamp", "rating"), fmt == "inter")
    _same(fast, row)
    monkeypatch.setattr(readers, "_read_delimited", lambda *a: (_ for _ in ()).throw(AssertionError("row reader")))
    read_interactions(p)  # the clean file never needed the row reader
    assert fast.users.dtype == np.int32 and fast.item_ids[0] == "it" + rows[0].split(sep)[1].strip()[2:]


SECONDS = [1_600_000_000, 1_600_000_060, 1_600_003_600]


@pytest.mark.parametrize("values,expect", [
    (["1600000000", "1600000060", "1600003600"], SECONDS),  # epoch seconds
    (["1600000000000", "1600000060000", "1600003600000"], SECONDS),  # epoch milliseconds
    (["2020-09-13T12:26:40", "2020-09-13T12:27:40", "2020-09-13T13:26:40"], SECONDS),  # ISO, no zone: UTC
    (["2020-09-13T12:26:40Z", "2020-09-13T12:27:40Z", "2020-09-13T13:26:40Z"], SECONDS),
    (["2020-09-13T14:26:40+02:00", "2020-09-13T14:27:40+02:00", "2020-09-13T15:26:40+02:00"], SECONDS),
    (["2020-09-13", "2020-09-14", "2020-09-15"], [1_599_955_200, 1_600_041_600, 1_600_128_000]),  # dates
])
def test_timestamp_forms(tmp_path, values, expect):
    p = write(tmp_path, "t.csv", "user_id,item_id,timestamp\n" + "".join(f"u,{i},{v}\n" for i, v in enumerate(values)))
    got = read_interactions(p).times
    assert got.tolist() == pytest.approx(expect)
    # the row reader agrees (it is what a file the columnar path refuses goes to)
    row = readers._read_delimited(p, ",", ("user_id", "item_id", "timestamp", "rating"), False)
    assert readers.to_seconds(row.times).tolist() == pytest.approx(expect)


@pytest.mark.parametrize("text,message", [
    ("u,1,1600000000\nu,2,2020-09-13T12:27:40\n", "t.csv:3: timestamp '2020-09-13T12:27:40' is an ISO-8601 date where "
                                                 "earlier lines hold numbers"),
    ("u,1,2020-09-13\nu,2,yesterday\n", "t.csv:3: timestamp 'yesterday' is not a number or an ISO-8601 date"),
    ("u,1,5\nu,2,nan\n", "t.csv:3: timestamp 'nan' is not a finite number"),
    ("u,1,5\nu,2,1e400\n", "t.csv:3: timestamp '1e400' is not a finite number"),
    ("u,1,5\nu,2,\n", "t.csv:3: timestamp '' is not a number"),
    ("u,1,5\n,2,6\n", "t.csv:3: empty user id"),
])
def test_bad_timestamps_and_ids_name_the_line(tmp_path, text, message):
    p = write(tmp_path, "t.csv", "user_id,item_id,timestamp\n" + text)
    with pytest.raises(EchorecError) as e:
        read_interactions(p)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bom_is_dropped(tmp_path, no_row_reader):
    p = tmp_path / "b.csv"
    p.write_bytes("\ufeffuser_id,item_id\nu,i\n".encode())
    assert read_interactions(str(p)).raw_items().tolist() == ["i"]


def test_parquet_timestamp_and_date_types(tmp_path):
    import pyarrow.parquet as pq

    t0 = dt.datetime(2020, 9, 13, 12, 26, 40, tzinfo=dt.timezone.utc)
    for typ, vals, expect in [
        (pa.timestamp("ms", tz="UTC"), [t0, t0 + dt.timedelta(seconds=60)], SECONDS[:2]),
        (pa.timestamp("us"), [t0.replace(tzinfo=None), t0.replace(tzinfo=None) + dt.timedelta(seconds=60)], SECONDS[:2]),
        (pa.date32(), [dt.date(2020, 9, 13), dt.date(2020, 9, 14)], [1_599_955_200, 1_600_041_600]),
        (pa.int64(), [1_600_000_000_000, 1_600_000_060_000], SECONDS[:2]),
    ]:
        p = str(tmp_path / "t.parquet")
        pq.write_table(pa.table({"user_id": pa.array(["a", "a"]), "item_id": pa.array([1, 2]),
                                 "timestamp": pa.array(vals, type=typ)}), p)
        r = read_interactions(p)
        assert r.times.tolist() == pytest.approx(expect), typ
        assert r.raw_items().tolist() == ["1", "2"]


@pytest.mark.parametrize("table,message", [
    ({"user_id": pa.array([[1], [2]]), "item_id": pa.array([1, 2])}, "ids must be strings or integers"),
    ({"user_id": pa.array(["a", "b"]), "item_id": pa.array([1, 2]), "timestamp": pa.array(["x", "y"])},
     "timestamps must be numbers, timestamps or dates"),
    ({"user_id": pa.array(["a", "b"]), "item_id": pa.array([1, 2]), "timestamp": pa.array([1.0, float("nan")])},
     "row 2: timestamp nan is not a finite number"),
])
def test_bad_parquet_is_one_line(tmp_path, table, message):
    import pyarrow.parquet as pq

    p = str(tmp_path / "t.parquet")
    pq.write_table(pa.table(table), p)
    with pytest.raises(EchorecError, match=message):
        read_interactions(p)


def test_garbage_parquet_is_one_line(tmp_path):
    p = tmp_path / "g.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(EchorecError, match="not a readable Parquet file"):
        read_interactions(str(p))
