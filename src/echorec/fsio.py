"""Files written so that a crash never leaves half of one: the one atomic-write helper, JSON in and out,
and the cache folder.

Every file is written to a temporary name in its own folder, fsynced, then renamed over the old one,
so a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile

from echorec.errors import EchorecError


def atomic_write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EchorecError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise EchorecError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def cache_dir() -> str:
    """$ECHOREC_CACHE, else $XDG_CACHE_HOME/echorec, else ~/.cache/echorec (created)."""
    root = os.environ.get("ECHOREC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "echorec"
    )
    os.makedirs(root, exist_ok=True)
    return root
