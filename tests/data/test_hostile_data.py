"""Hostile data files through `echorec data info`: each gets the right answer or one `error:` line naming
the file (and line or field where there is one), exit 2, no traceback; the cache never changes a result.

Each case is one row: a file name, how to make its bytes, and the words the error must hold.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from echorec.cli import main

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402


def _parquet(table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


GOOD_CSV = "user_id,item_id,timestamp\n" + "".join(f"u{u},i{(u + t) % 7},{100 * u + t}\n"
                                                     for u in range(5) for t in range(4))
GOOD_PARQUET = _parquet(pa.table({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "z"],
                                  "timestamp": [1, 2, 3, 4]}))

# (file name, content: bytes, or a str written as UTF-8, the words the one error line must hold)
BAD_FILES = [
    ("log.txt", bytes(range(256)) * 40, ["log.txt:2", "not UTF-8"]),  # byte 10 ends line 1
    ("log.csv", "user_id,item_id\nu1,i1\nu2,\xe9\n".encode("latin-1"), ["log.csv:3", "not UTF-8"]),
    ("log16.csv", GOOD_CSV.encode("utf-16"), ["log16.csv:1", "not UTF-8"]),
    # pyarrow reads a 1 MB field (test_odd_but_valid_files); an empty id sends the file to the row reader,
    # whose csv module stops at the big field first.
    ("big.csv", "user_id,item_id\nu1,i1\nu2,\"" + "x" * (1 << 20) + "\"\nu3,\n", ["big.csv:3", "field"]),
    ("nan.csv", "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,nan\n", ["nan.csv:3", "timestamp", "finite"]),
    ("inf.csv", "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,1e400\n", ["inf.csv:3", "timestamp", "finite"]),
    ("rnan.csv", "user_id,item_id,rating\nu1,i1,4\nu1,i2,NaN\n", ["rnan.csv:3", "rating", "finite"]),
    ("rinf.dat", "1::2::inf::5\n", ["rinf.dat:1", "rating", "finite"]),
    ("garbage.parquet", b"PAR1" + os.urandom(300), ["garbage.parquet", "Parquet"]),
    ("cut.parquet", GOOD_PARQUET[: len(GOOD_PARQUET) // 2], ["cut.parquet", "Parquet"]),
    ("list.parquet", _parquet(pa.table({"user_id": [[1], [2]], "item_id": [1, 2]})), ["list.parquet", "user_id"]),
    ("nanr.parquet", _parquet(pa.table({"user_id": [1, 1], "item_id": [1, 2], "rating": [1.0, float("nan")]})),
     ["nanr.parquet", "row 2", "rating"]),
    ("empty.csv", "", ["empty.csv", "empty"]),
    ("header.csv", "user_id,item_id\n", ["header.csv", "no interactions"]),
    ("nocol.csv", "who,what\na,b\n", ["nocol.csv:1", "user_id"]),
]


def _info(path, *extra):
    return main(["data", "info", str(path), *extra])


@pytest.mark.parametrize("name,content,words", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_one_line(tmp_path, capsys, name, content, words):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    assert _info(path) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, (w, err)
    assert not os.listdir(tmp_path / "cache" / "processed") if (tmp_path / "cache" / "processed").exists() else True


ODD_BUT_VALID = [
    ("big.csv", "user_id,item_id\nu1,i1\nu2,\"" + "x" * (1 << 20) + "\"\nu2,i1\n", 2, 2),
    ("quoted.csv", 'user_id,item_id\n"u,1","i\n1"\n"u,1",i2\n', 1, 2),
    ("crlf.csv", "user_id,item_id\r\nu1,i1\r\nu1,i2\r\n", 1, 2),
    ("bom.tsv", "\ufeffuser_id\titem_id\nu1\ti1\nu2\ti1\n", 2, 1),
]


@pytest.mark.parametrize("name,content,users,items", ODD_BUT_VALID, ids=[c[0] for c in ODD_BUT_VALID])
def test_odd_but_valid_files(tmp_path, capsys, name, content, users, items):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", newline="")
    assert _info(path) == 0
    out = capsys.readouterr().out
    assert f"users         {users}\n" in out and f"items         {items}\n" in out, out


def test_folder_and_unreadable_file(tmp_path, capsys, monkeypatch):
    assert _info(tmp_path) == 2
    assert "is a folder" in capsys.readouterr().err
    path = tmp_path / "log.csv"
    path.write_text(GOOD_CSV)
    real_open = open

    def deny(file, *a, **k):  # the suite may run as root, where chmod 000 denies nothing
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", deny)
    assert _info(path) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: cannot read (Permission denied)", err


def test_bom_is_dropped(tmp_path, capsys):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_CSV.encode())
    assert _info(path) == 0
    assert "users         5" in capsys.readouterr().out


def test_duplicates_reported_and_dropped(tmp_path, capsys):
    path = tmp_path / "dup.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\nu1,i1,1\nu1,i2,2\nu1,i3,3\nu1,i1,4\n")
    assert _info(path) == 0
    out = capsys.readouterr().out
    assert "interactions  6" in out and "duplicates    2 rows repeat an earlier (user, item, time)" in out
    assert _info(path, "--dedup", "true") == 0
    out = capsys.readouterr().out
    assert "interactions  4" in out and "duplicates    0" in out


def test_read_only_cache_is_a_warning(tmp_path, capsys, monkeypatch):
    path = tmp_path / "log.csv"
    path.write_text(GOOD_CSV)
    cache = tmp_path / "ro-cache"
    cache.mkdir()
    import echorec.fsio as fsio

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(cache))

    monkeypatch.setattr(fsio, "atomic_write_bytes", refuse)
    monkeypatch.setattr("echorec.data.preprocess.atomic_write_bytes", refuse)
    monkeypatch.setenv("ECHOREC_CACHE", str(cache))
    assert _info(path) == 0
    captured = capsys.readouterr()
    assert "users         5" in captured.out
    assert "warning: could not write the cache" in captured.err and "Traceback" not in captured.err


def test_cache_key_holds_the_detected_format(tmp_path, capsys):
    # The same bytes are a sequence file as `log.txt` (7 distinct tokens after the user) and MovieLens
    # ratings as `u.data` (2 items): the second read must not reuse the first one's parse.
    text = "1\t10\t5\t1\n2\t11\t4\t2\n3\t10\t3\t3\n"
    (tmp_path / "log.txt").write_text(text)
    (tmp_path / "u.data").write_text(text)
    assert _info(tmp_path / "log.txt") == 0
    assert "items         7" in capsys.readouterr().out
    assert _info(tmp_path / "u.data") == 0
    assert "items         2" in capsys.readouterr().out
    assert _info(tmp_path / "log.txt", "--format", "movielens") == 0
    assert "items         2" in capsys.readouterr().out


CACHE_DAMAGE = [
    ("truncated", lambda blob: blob[: len(blob) // 2]),
    ("garbage", lambda blob: os.urandom(len(blob))),
    ("empty", lambda blob: b""),
]


@pytest.mark.parametrize("how,damage", CACHE_DAMAGE, ids=[c[0] for c in CACHE_DAMAGE])
def test_damaged_cache_entry_is_a_miss(tmp_path, capsys, how, damage):
    path = tmp_path / "log.csv"
    path.write_text(GOOD_CSV)
    assert _info(path) == 0
    want = capsys.readouterr().out
    (entry,) = (tmp_path / "cache" / "processed").iterdir()
    entry.write_bytes(damage(entry.read_bytes()))
    assert _info(path) == 0
    assert capsys.readouterr().out == want


def _edit_entry(tmp_path, edit):
    (entry,) = (tmp_path / "cache" / "processed").iterdir()
    z = dict(np.load(entry, allow_pickle=False))
    edit(z)
    buf = io.BytesIO()
    np.savez(buf, **z)
    entry.write_bytes(buf.getvalue())


CACHE_EDITS = [
    ("offsets-decrease", lambda z: z["offsets"].__setitem__(1, z["offsets"][2] + 1)),
    ("item-out-of-range", lambda z: z["items"].__setitem__(0, len(z["item_raw"]) + 5)),
    ("item-zero", lambda z: z["items"].__setitem__(0, 0)),
    ("offsets-short", lambda z: z.__setitem__("offsets", z["offsets"][:-1])),
    ("times-length", lambda z: z.__setitem__("times", z["times"][:-1])),
]


@pytest.mark.parametrize("how,edit", CACHE_EDITS, ids=[c[0] for c in CACHE_EDITS])
def test_edited_cache_entry_is_checked(tmp_path, capsys, how, edit):
    path = tmp_path / "log.csv"
    path.write_text(GOOD_CSV)
    assert _info(path) == 0
    want = capsys.readouterr().out
    _edit_entry(tmp_path, edit)
    assert _info(path) == 0  # the entry fails its checks, so it is a miss: read again from the file
    assert capsys.readouterr().out == want
