"""Named datasets: fetched once into a cache folder, verified by checksum, then read from disk.

`ml-100k` comes from GroupLens when reachable, else from the RecBole 1.2.1 wheel on PyPI (which
ships the same ratings as `ml-100k.inter`; only that one file is read out of the wheel, RecBole is
never imported). `ml-1m` comes from GroupLens; offline it fails with a message saying how to pass a
local copy. Any other `--dataset` value is taken as a path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass

from echorec.errors import EchorecError
from echorec.fsio import atomic_write_bytes, cache_dir

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_ML100K = "recbole/dataset_example/ml-100k/ml-100k.inter"


@dataclass(frozen=True)
class NamedDataset:
    name: str
    description: str
    zip_url: str
    zip_md5: str  # GroupLens publishes the archive MD5 beside each zip
    member: str  # the ratings file inside the zip
    fallback_sha256: str | None = None  # sha256 of the RecBole copy, when there is one


NAMED = {
    "ml-100k": NamedDataset(
        "ml-100k",
        "MovieLens 100K: 943 users, 1682 movies, 100000 ratings (1997-98)",
        f"{GROUPLENS}/ml-100k.zip",
        "0e33842e24a9c977be4e0107933c0723",
        "ml-100k/u.data",
        fallback_sha256="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    ),
    "ml-1m": NamedDataset(
        "ml-1m",
        "MovieLens 1M: 6040 users, 3706 movies, 1000209 ratings (2000-03)",
        f"{GROUPLENS}/ml-1m.zip",
        "c4d9eecfca2ab87c1945afe126590906",
        "ml-1m/ratings.dat",
    ),
}


def _digest(data: bytes, algo: str) -> str:
    return hashlib.new(algo, data).hexdigest()


def _from_grouplens(ds: NamedDataset, timeout: float) -> bytes:
    with urllib.request.urlopen(ds.zip_url, timeout=timeout) as r:
        blob = r.read()
    got = _digest(blob, "md5")
    if got != ds.zip_md5:
        raise OSError(f"checksum mismatch for {ds.zip_url}: md5 {got}, expected {ds.zip_md5}")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return z.read(ds.member)


def _from_recbole_wheel(ds: NamedDataset) -> bytes:
    spec = importlib.util.find_spec("recbole")
    if spec is not None and spec.submodule_search_locations:
        # An installed RecBole already has the file; read it without importing RecBole.
        path = os.path.join(list(spec.submodule_search_locations)[0], *RECBOLE_ML100K.split("/")[1:])
        if os.path.exists(path):
            with open(path, "rb") as f:
                return f.read()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-d", tmp, RECBOLE_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if proc.returncode != 0 or not wheels:
            raise OSError(f"pip download {RECBOLE_WHEEL} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
            return z.read(RECBOLE_ML100K)


def fetch(name: str, timeout: float = 20.0, quiet: bool = False) -> str:
    """Return the local path of named dataset `name`, downloading and verifying it on first use."""
    ds = NAMED[name]
    folder = os.path.join(cache_dir(), name)
    for fname in (os.path.basename(ds.member), f"{name}.inter"):
        path = os.path.join(folder, fname)
        if os.path.exists(path):
            return path
    errors = []
    try:
        data = _from_grouplens(ds, timeout)
        path = os.path.join(folder, os.path.basename(ds.member))
        atomic_write_bytes(path, data)
        return path
    except (OSError, zipfile.BadZipFile, KeyError) as e:
        errors.append(f"{ds.zip_url}: {e}")
    if ds.fallback_sha256:
        if not quiet:
            print(f"[echorec] {ds.zip_url} unreachable; taking {name} from the {RECBOLE_WHEEL} wheel on PyPI",
                  file=sys.stderr)
        try:
            data = _from_recbole_wheel(ds)
            got = _digest(data, "sha256")
            if got != ds.fallback_sha256:
                raise OSError(f"checksum mismatch: sha256 {got}, expected {ds.fallback_sha256}")
            path = os.path.join(folder, f"{name}.inter")
            atomic_write_bytes(path, data)
            return path
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            errors.append(f"{RECBOLE_WHEEL} wheel: {e}")
    raise EchorecError(
        f"could not fetch dataset {name!r} ({'; '.join(errors)}); download {ds.zip_url} yourself, unzip it and pass "
        f"--dataset /path/to/{os.path.basename(ds.member)}"
    )


def resolve(dataset: str) -> str:
    """A named dataset's cached file, or `dataset` itself when it is a path."""
    if dataset in NAMED:
        return fetch(dataset)
    if os.path.exists(dataset):
        return dataset
    raise EchorecError(f"dataset {dataset!r} is neither a file nor a named dataset ({', '.join(NAMED)})")
