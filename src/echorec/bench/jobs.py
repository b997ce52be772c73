"""Cells of a study as child processes: each one exactly `echorec train` with the cell's config file (so it is
resumable by hand too), with its thread count set before torch and numba load, which only a fresh interpreter
guarantees (a process pool's workers would share their first imports)."""

from __future__ import annotations

import os
import subprocess
import sys

from echorec.fsio import write_json


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    return env


def spawn(cmd: list[str], logpath: str, threads: int) -> subprocess.Popen:
    """Start `cmd` with its output appended to `logpath`."""
    with open(logpath, "a") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(threads))


def spawn_train(jobdir: str, name: str, rc, out: str, threads: int) -> tuple[subprocess.Popen, str, str]:
    """Train `rc` into the run folder `out` (resuming its checkpoint when it has one): (process, log, "training" or
    "resuming"). The config and the log are jobdir/<name>.json and .log."""
    from echorec.config import run_config_to_dict
    from echorec.runfolder import CHECKPOINT, RunFolder

    os.makedirs(jobdir, exist_ok=True)
    cfg, logpath = os.path.join(jobdir, f"{name}.json"), os.path.join(jobdir, f"{name}.log")
    folder = RunFolder(out)
    cmd = [sys.executable, "-m", "echorec", "train", "--progress", "false"]
    if folder.has(CHECKPOINT):
        return spawn(cmd + ["--resume", out], logpath, threads), logpath, "resuming"
    write_json(cfg, run_config_to_dict(rc))
    cmd += ["--config", cfg, "--out", out] + (["--overwrite"] if folder.existing() else [])
    return spawn(cmd, logpath, threads), logpath, "training"
