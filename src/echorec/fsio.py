"""Files written so that a crash never leaves half of one: the one atomic-write helper, JSON in and out,
and the cache folder.

Every file is written to a temporary name in its own folder, fsynced, then renamed over the old one and
the folder fsynced (so the rename itself survives a power cut): a crash mid-save leaves the previous file
intact, and at worst a `.NAME.tmp-*` file that `remove_stale_temps` clears at the next start. Files get
the mode the umask gives (mkstemp alone would make every file 0600).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import threading

from echorec.errors import EchorecError

TEMP_MARK = ".tmp-"
_umask_lock = threading.Lock()


def _file_mode() -> int:
    # The umask can only be read by setting it; the lock keeps two threads from seeing each other's 0.
    with _umask_lock:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(folder: str) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + TEMP_MARK)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def remove_stale_temps(folder: str) -> list[str]:
    """Delete the temporary files an interrupted atomic write left in `folder` (call only where no other process
    writes); returns their names."""
    gone = []
    for tmp in glob.glob(os.path.join(glob.escape(folder), "." + "*" + TEMP_MARK + "*")):
        try:
            os.unlink(tmp)
            gone.append(os.path.basename(tmp))
        except OSError:
            pass
    return gone


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


MAX_JSON_BYTES = 256 << 20  # a run folder's JSON files are kilobytes; a record with every user's rank, megabytes


def check_regular(path: str, what: str = "file") -> None:
    """Refuse anything but a regular file (a symlink to /dev/zero would be read forever)."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EchorecError(f"{path}: no such file") from None
    except OSError as e:
        raise EchorecError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise EchorecError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise EchorecError(f"{path}: not a regular file (a device or a pipe), so not a {what}")


def read_bounded(path: str, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes: a device (/dev/zero), a FIFO or a file past the limit
    is one EchorecError, never an endless read."""
    check_regular(path, what)
    size = os.path.getsize(path)
    if size > limit:
        raise EchorecError(f"{path}: {size:,} bytes, more than a {what} may hold ({limit:,})")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise EchorecError(f"{path}: more than {limit:,} bytes, more than a {what} may hold")
    return data


def read_json(path: str):
    """A JSON file (UTF-8, a regular file of bounded size); every way it can fail is one EchorecError naming it."""
    try:
        text = read_bounded(path, MAX_JSON_BYTES, "JSON file").decode("utf-8")
        return json.loads(text)
    except FileNotFoundError:
        raise EchorecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EchorecError(f"{path}: is a folder, not a JSON file") from None
    except UnicodeDecodeError as e:
        raise EchorecError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
    except json.JSONDecodeError as e:
        raise EchorecError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except RecursionError:
        raise EchorecError(f"{path}: JSON nested too deeply") from None
    except OSError as e:
        raise EchorecError(f"{path}: cannot read ({e.strerror or e})") from None


def read_json_object(path: str) -> dict:
    """read_json for files that must hold one JSON object."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise EchorecError(f"{path}: expected an object, got {type(obj).__name__}")
    return obj


def cache_dir() -> str:
    """$ECHOREC_CACHE, else $XDG_CACHE_HOME/echorec, else ~/.cache/echorec (created)."""
    root = os.environ.get("ECHOREC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "echorec"
    )
    os.makedirs(root, exist_ok=True)
    return root
