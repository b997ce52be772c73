"""The run folder: the one module that knows its files, writes them atomically, reads them back and
rebuilds the model.

    config.json             the RunConfig, plus `meta` (n_items, n_users, source, versions, machine)
    model.safetensors       the selected weights (best valid epoch)
    metrics.json            valid/test metrics, best epoch, timings
    history.csv             one row per epoch
    checkpoint.safetensors  model, optimizer, RNG and loop position for exact resume (train/checkpoint.py)
    items.tsv, users.tsv    internal id -> raw id (and each item's count, for the popularity fallback);
                            tab-separated with the csv module's quoting, so an id may hold any character
    train.log               what the run printed, time-stamped (training/tracking.py writes it)
    tensorboard/, mlflow.db --logger's files, when chosen

Training writes it; evaluation, serving, studies and the CLI read it through `RunFolder`, and none
of them needs the others to do so. Weights never go through pickle (safetensors only). Everything read
back is checked before it is used: config.json against the config dataclasses (types and ranges), the
weights' shapes (from the safetensors header, before any model is built) and their finiteness, the id
maps' shape. A file that fails is one EchorecError naming it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import platform
import shutil
import time

import numpy as np
import torch

from echorec.config import RunConfig, run_config_from_dict
from echorec.errors import EchorecError
from echorec.fsio import atomic_write_bytes, atomic_write_text, check_regular, read_json_object, write_json
from echorec.models import build_model
from echorec.sysinfo import machine
from echorec.version import __version__

CONFIG, WEIGHTS, METRICS, HISTORY = "config.json", "model.safetensors", "metrics.json", "history.csv"
CHECKPOINT, ITEMS, USERS = "checkpoint.safetensors", "items.tsv", "users.tsv"
LOG, TENSORBOARD, MLFLOW_DB = "train.log", "tensorboard", "mlflow.db"
LOCK = ".lock"  # held (flock) by the one process writing the folder; the OS releases it when that process dies
# The files whose presence means the folder holds a run (a new run refuses to write over them).
RUN_FILES = (CONFIG, WEIGHTS, METRICS, HISTORY, CHECKPOINT)
# What an overwritten run leaves behind besides RUN_FILES: none of it may outlive the run it belonged to.
RUN_EXTRAS = (LOG, TENSORBOARD)


def save_weights(path: str, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_weights(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    check_regular(path, "safetensors file")
    with open(path, "rb") as f:
        blob = f.read()
    try:
        return load(blob)
    except (SafetensorError, ValueError, RuntimeError, OSError, OverflowError) as e:
        raise EchorecError(f"{path}: not a valid safetensors file ({e}); it may be truncated or tampered with") from None


def header_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape from a safetensors file's header, without reading the tensors."""
    import json as _json
    import struct

    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > os.path.getsize(path) - 8:
                raise ValueError("header longer than the file")
            header = _json.loads(f.read(n))
        return {k: tuple(int(x) for x in v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except FileNotFoundError:
        raise EchorecError(f"{path}: no such file") from None
    except (struct.error, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise EchorecError(f"{path}: not a valid safetensors file ({e}); it may be truncated or tampered with") from None


def check_finite(state: dict[str, torch.Tensor], path: str) -> None:
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise EchorecError(f"{path}: tensor {k} holds NaN or infinite values; the weights are unusable")


def check_same_data(folder: RunFolder, data, digest: str, allow_change: bool, action: str) -> None:
    """Refuse to evaluate or resume a run on data other than its own (config.json's meta.data_digest; folders
    written before digests were recorded are not checked)."""
    saved = (folder.read_config_dict().get("meta") or {}).get("data_digest")
    if saved and saved != digest and not allow_change:
        raise EchorecError(f"{data.source}: the data differs from what the run in {folder.path} was trained on "
                           f"(processed-data digest {digest[:12]}, the run's {saved[:12]}); pass "
                           f"--allow-data-change to {action.lstrip('-')} on it anyway")


MAX_PATH_BYTES, MAX_NAME_BYTES = 4096, 255  # Linux's PATH_MAX and NAME_MAX
NOT_FOR_RUNS = ("/proc", "/sys", "/dev")  # kernel file systems: a run folder there cannot work


def check_out_path(out: str) -> None:
    """Refuse, before any data is read or any folder made, an --out that cannot hold a run folder: a path or a name
    too long for the file system, a path under a file or in /proc, /sys or /dev, a folder that cannot be written."""
    path = os.path.abspath(out)
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise EchorecError(f"--out: the path is {len(os.fsencode(path)):,} bytes long; at most {MAX_PATH_BYTES}")
    long = next((p for p in path.split(os.sep) if len(os.fsencode(p)) > MAX_NAME_BYTES), None)
    if long is not None:
        raise EchorecError(f"--out: the name {long[:40]!r}... is {len(os.fsencode(long))} bytes; at most "
                           f"{MAX_NAME_BYTES}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise EchorecError(f"--out {out}: exists and is not a folder")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise EchorecError(f"--out {out}: {parent} is a file, so no folder can be made under it")
    real = os.path.realpath(parent)
    if any(real == bad or real.startswith(bad + os.sep) for bad in NOT_FOR_RUNS):
        raise EchorecError(f"--out {out}: {real} is a kernel file system, not a place for a run folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EchorecError(f"--out {out}: {parent} is not writable")


class RunFolder:
    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def has(self, name: str) -> bool:
        return os.path.exists(self.file(name))

    def existing(self) -> list[str]:
        """The run files already in the folder."""
        return [f for f in RUN_FILES if self.has(f)]

    # -- housekeeping ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's write lock (made if missing) for the duration: a second process that wants to write
        it is refused in one line while the first lives; a killed process's lock is gone with it (flock)."""
        try:
            os.makedirs(self.path, exist_ok=True)
            fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise EchorecError(f"{self.path}: cannot make the run folder ({e.strerror or e})") from None
        try:
            import fcntl
        except ImportError:  # no flock on this system: the folder is written unlocked
            fcntl = None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                    raise EchorecError(f"{self.path}: {holder} is writing this run folder; wait for it to finish or "
                                       "use another --out") from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"echorec (pid {os.getpid()} on {platform.node()}, since "
                              f"{time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
            yield self
        finally:
            os.close(fd)  # releases the flock

    def abandon(self) -> None:
        """Remove what a new run wrote before it failed to start (config, id maps, log), so a rerun is not blocked."""
        self.clear()
        for f in (ITEMS, USERS):
            if self.has(f):
                os.unlink(self.file(f))

    def start(self, config: dict, data, n_items: int, digest: str, extra_meta: dict | None = None) -> None:
        """Begin a new run here: clear any earlier run's files (the caller checked --overwrite), then write
        config.json with its meta block (what the model needs to be rebuilt, and where it came from) and the
        id maps."""
        os.makedirs(self.path, exist_ok=True)
        self.clear()
        meta = {"n_items": n_items, "n_users": data.n_users, "source": os.path.abspath(data.source),
                "data_digest": digest, "echorec": __version__, "torch": torch.__version__,
                "machine": f"{platform.node()} {machine()}", **(extra_meta or {})}
        self.write_config({**config, "meta": meta})
        self.write_id_maps(data)

    def continue_run(self, config: dict) -> None:
        """A resumed run's config.json: its settings now (epochs and patience may have changed), its meta kept."""
        self.write_config({**config, "meta": self.read_config_dict().get("meta", {})})

    def clear(self) -> None:
        """Remove every file of a run (and its log and logger files), so no stale file outlives it."""
        for f in RUN_FILES + RUN_EXTRAS:
            if self.has(f):
                shutil.rmtree(self.file(f)) if os.path.isdir(self.file(f)) else os.unlink(self.file(f))

    # -- config --------------------------------------------------------------------------------------
    def read_config_dict(self) -> dict:
        return read_json_object(self.file(CONFIG))

    def read_config(self) -> tuple[RunConfig, dict]:
        """(RunConfig, meta) from config.json, checked as a new run's flags are: types, ranges, the model's rules."""
        if not os.path.isdir(self.path):
            raise EchorecError(f"{self.path}: no such run folder")
        raw = self.read_config_dict()
        where = self.file(CONFIG)
        rc = run_config_from_dict(raw, where=where)
        try:
            rc.validate()
        except EchorecError as e:
            raise EchorecError(f"{where}: {e}") from None
        meta = raw.get("meta", {})
        if not isinstance(meta, dict) or "n_items" not in meta:
            raise EchorecError(f"{where}: missing meta.n_items")
        n = meta["n_items"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n < 2**31:
            raise EchorecError(f"{where}: meta.n_items must be an integer in 1..2^31-1, got {n!r}")
        return rc, meta

    def write_config(self, cfg: dict) -> None:
        write_json(self.file(CONFIG), cfg)

    # -- weights and the model -------------------------------------------------------------------------
    def write_weights(self, state: dict[str, torch.Tensor]) -> None:
        save_weights(self.file(WEIGHTS), state)

    def read_weights(self) -> dict[str, torch.Tensor]:
        return load_weights(self.file(WEIGHTS))

    def load_model(self, device="cpu") -> tuple[RunConfig, torch.nn.Module, dict]:
        """(RunConfig, the model with its selected weights in eval mode on `device`, meta).

        The weights' names and shapes are compared with the model's before it is built for real (on torch's
        meta device, which allocates nothing), so a tampered size fails here, not in a huge allocation."""
        rc, meta = self.read_config()
        wpath = self.file(WEIGHTS)
        shapes = header_shapes(wpath)
        with torch.device("meta"):
            skeleton = build_model(rc.model, int(meta["n_items"]), rc.model_cfg, max_len=rc.data.max_len)
        want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        missing, unexpected = set(want) - set(shapes), set(shapes) - set(want)
        if missing or unexpected:
            raise EchorecError(f"{wpath}: weights do not fit {rc.model} (missing {sorted(missing)[:3]}, "
                               f"unexpected {sorted(unexpected)[:3]})")
        wrong = [k for k in want if want[k] != shapes[k]]
        if wrong:
            k = wrong[0]
            raise EchorecError(f"{wpath}: tensor {k} has shape {list(shapes[k])}, but config.json's model needs "
                               f"{list(want[k])}")
        state = self.read_weights()
        check_finite(state, wpath)
        model = build_model(rc.model, int(meta["n_items"]), rc.model_cfg, max_len=rc.data.max_len)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise EchorecError(f"{wpath}: weights do not fit the model in config.json ({str(e).splitlines()[-1]})") from None
        return rc, model.to(device).eval(), meta

    # -- metrics and history ---------------------------------------------------------------------------
    def write_metrics(self, metrics: dict) -> None:
        write_json(self.file(METRICS), metrics)

    def read_metrics(self) -> dict | None:
        """metrics.json, or None when the run has not finished."""
        if not self.has(METRICS):
            return None
        m = read_json_object(self.file(METRICS))
        for split in ("valid", "test"):
            part = m.get(split, {})
            if not isinstance(part, dict) or not all(isinstance(v, (int, float)) for v in part.values()):
                raise EchorecError(f"{self.file(METRICS)}: {split} must map metric names to numbers")
        return m

    def write_history(self, history: list[dict]) -> None:
        buf = io.StringIO()
        # Union of the rows' keys in first-seen order: a run resumed from an older checkpoint has rows
        # without the columns added since (e.g. lr).
        w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
        w.writeheader()
        w.writerows(history)
        atomic_write_text(self.file(HISTORY), buf.getvalue())

    def read_history(self) -> list[dict]:
        """history.csv's rows (strings), or [] before the first epoch ends."""
        if not self.has(HISTORY):
            return []
        check_regular(self.file(HISTORY), "history file")
        with open(self.file(HISTORY), encoding="utf-8") as f:
            return list(csv.DictReader(f))

    # -- id maps ---------------------------------------------------------------------------------------
    # One quoting rule both ways (the csv module's, tab-separated): an id with a tab, quote or newline is
    # quoted, so every id round-trips. Folders written before ids were quoted read the same wherever their
    # ids held none of those characters.
    def write_id_maps(self, data) -> None:
        """items.tsv (internal id, raw id, count) and users.tsv from a SeqData."""
        # The count column (interactions per item in the data) backs the popularity fallback when serving.
        counts = np.bincount(data.items, minlength=data.n_items + 1)
        atomic_write_text(self.file(ITEMS), _tsv(["internal_id", "raw_id", "count"],
                                                 ((i + 1, r, counts[i + 1]) for i, r in enumerate(data.item_raw))))
        atomic_write_text(self.file(USERS), _tsv(["index", "raw_id"], enumerate(data.user_raw)))

    def item_order(self) -> list[str] | None:
        """The raw ids a reload must number first, as training did: a warm-started run's items (its parent's, then
        the new ones); None for a run that numbered its data's items in their own order."""
        meta = self.read_config_dict().get("meta") or {}
        return self.read_items()[0] if isinstance(meta, dict) and meta.get("parent") else None

    def read_items(self) -> tuple[list[str], np.ndarray]:
        """(raw id of internal id i at [i - 1], interaction count per item)."""
        path = self.file(ITEMS)
        if not os.path.exists(path):
            raise EchorecError(f"{path}: no such file (the run folder has no item map)")
        check_regular(path, "item map")
        try:
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.reader(f, delimiter="\t")
                header = next(reader, None)
                if header is None or header[:2] != ["internal_id", "raw_id"]:
                    raise EchorecError(f"{path}:1: expected the header internal_id, raw_id, count")
                raw, counts = [], []
                for row in reader:
                    lineno = reader.line_num
                    if len(row) != len(header) or row[0] != str(len(raw) + 1):
                        raise EchorecError(f"{path}:{lineno}: expected {len(header)} fields starting with internal "
                                           f"id {len(raw) + 1}")
                    raw.append(row[1])
                    counts.append(int(row[2]) if len(row) > 2 and row[2].isdigit() else 0)
        except UnicodeDecodeError as e:
            raise EchorecError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
        except csv.Error as e:
            raise EchorecError(f"{path}: {e}") from None
        if not raw:
            raise EchorecError(f"{path}: no items")
        return raw, np.array(counts, dtype=np.int64)


def _tsv(header: list[str], rows) -> str:
    buf = io.StringIO()
    plain = csv.writer(buf, delimiter="\t", lineterminator="\n")
    # The csv module quotes a field holding the line terminator ("\n") but not a bare "\r", which its reader
    # then takes for a line end: such a row is written with every field quoted.
    quoted = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writerow(header)
    for row in rows:
        (quoted if any("\r" in str(x) for x in row) else plain).writerow(row)
    return buf.getvalue()
