"""The named ml-100k dataset comes from GroupLens or, offline, from the RecBole wheel on PyPI."""

import hashlib
import zipfile

import pytest

from echorec.data import datasets
from echorec.errors import EchorecError


def test_fallback_reads_the_file_out_of_the_wheel_and_checks_it(tmp_path, monkeypatch):
    payload = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t4\n"
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(datasets.RECBOLE_ML100K, payload)

    def fake_pip(cmd, capture_output, text):
        import shutil

        shutil.copy(wheel, cmd[cmd.index("-d") + 1])
        return type("P", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(datasets.subprocess, "run", fake_pip)
    good = datasets.NamedDataset("ml-100k", "", "http://x", "0", "ml-100k/u.data",
                                 fallback_sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(datasets.NAMED, "ml-100k", good)
    path = datasets.fetch("ml-100k", quiet=True)
    assert open(path, "rb").read() == payload
    # A copy whose checksum does not match is refused, with a message saying what to do instead.
    monkeypatch.setitem(datasets.NAMED, "ml-100k", datasets.NamedDataset("ml-100k", "", "http://x", "0",
                                                                         "ml-100k/u.data", fallback_sha256="00"))
    monkeypatch.setenv("ECHOREC_CACHE", str(tmp_path / "other"))
    with pytest.raises(EchorecError, match="checksum mismatch.*--dataset"):
        datasets.fetch("ml-100k", quiet=True)


def test_ml1m_offline_says_how_to_pass_a_local_file(monkeypatch):
    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(EchorecError, match=r"--dataset /path/to/ratings.dat"):
        datasets.fetch("ml-1m")


def test_real_ml100k_from_pypi():
    """The real fetch (GroupLens, else the RecBole wheel from PyPI), checked against its sha256."""
    path = datasets.fetch("ml-100k", quiet=True)
    data = open(path, "rb").read()
    if path.endswith(".inter"):
        assert hashlib.sha256(data).hexdigest() == datasets.NAMED["ml-100k"].fallback_sha256
    assert data.count(b"\n") >= 100_000
