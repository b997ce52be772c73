import pytest

from echorec.data.readers import detect_format, read_interactions
from echorec.errors import EchorecError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_inter_typed_header(tmp_path):
    p = write(tmp_path, "x.inter", "user_id:token\titem_id:token\ttimestamp:float\nu1\ta\t5\nu1\tb\t3\n")
    r = read_interactions(p)
    assert r.raw_users().tolist() == ["u1", "u1"] and r.raw_items().tolist() == ["a", "b"]
    assert r.times.tolist() == [5.0, 3.0] and r.ratings is None


def test_movielens_dat_and_udata(tmp_path):
    p = write(tmp_path, "ratings.dat", "1::10::5::978300760\n1::11::3::978300761\n")
    r = read_interactions(p)
    assert detect_format(p) == "movielens" and r.raw_items().tolist() == ["10", "11"] and r.ratings.tolist() == [5, 3]
    p2 = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    assert read_interactions(p2).raw_users().tolist() == ["196", "186"]


def test_csv_with_custom_columns(tmp_path):
    p = write(tmp_path, "log.csv", "uid,iid,ts\nA,x,2\nA,y,1\n")
    r = read_interactions(p, user_col="uid", item_col="iid", time_col="ts")
    assert r.raw_items().tolist() == ["x", "y"] and r.times.tolist() == [2.0, 1.0]


def test_tsv(tmp_path):
    p = write(tmp_path, "log.tsv", "user_id\titem_id\ttimestamp\nA\tx\t2\n")
    assert read_interactions(p).raw_items().tolist() == ["x"]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = str(tmp_path / "log.parquet")
    pq.write_table(pa.table({"user_id": [1, 1, 2], "item_id": [5, 6, 5], "timestamp": [1.0, 2.0, 3.0]}), p)
    r = read_interactions(p)
    assert r.raw_users().tolist() == ["1", "1", "2"] and r.times.tolist() == [1.0, 2.0, 3.0]


def test_seq_and_pairs_autodetected(tmp_path):
    s = write(tmp_path, "Beauty.txt", "1 5 6 7\n2 6 7 8 9\n")
    assert detect_format(s) == "seq"
    r = read_interactions(s)
    assert r.raw_users().tolist() == ["1"] * 3 + ["2"] * 4 and r.times is None
    pr = write(tmp_path, "Video.txt", "1 5\n1 6\n2 5\n")
    assert detect_format(pr) == "pairs"
    assert read_interactions(pr).raw_items().tolist() == ["5", "6", "5"]


@pytest.mark.parametrize(
    "name,text,fmt,message",
    [
        ("bad.inter", "user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\nu\ti\n", "auto",
         "bad.inter:3: expected 3 fields, got 2"),
        ("bad.csv", "user_id,item_id,timestamp\na,b,xx\n", "auto", "bad.csv:2: timestamp 'xx' is not a number"),
        ("nocol.csv", "user,item_id\na,b\n", "auto", "nocol.csv:1: no column 'user_id'"),
        ("empty.txt", "", "auto", "empty.txt: empty file"),
        ("blank.txt", "\n\n", "seq", "blank.txt: no interactions"),
        ("seq.txt", "1 2 3\nx 4 5\n", "seq", "seq.txt:2: user id 'x' is not an integer"),
        ("pairs.txt", "1 2\n1 z\n", "pairs", "pairs.txt:2: item id 'z' is not an integer"),
        ("ratings.dat", "1::2::5\n", "auto", "ratings.dat:1: expected 4 fields"),
        ("untyped.inter", "user_id\titem_id\nu\ti\n", "auto", "untyped.inter:1: expected a typed header"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, name, text, fmt, message):
    p = write(tmp_path, name, text)
    with pytest.raises(EchorecError) as e:
        read_interactions(p, fmt)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(EchorecError, match="no such file"):
        read_interactions(str(tmp_path / "nope.csv"))
    p = write(tmp_path, "a.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(EchorecError, match="unknown format"):
        read_interactions(p, "xlsx")
    assert read_interactions(p).raw_items().tolist() == ["2"]
