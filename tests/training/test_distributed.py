"""torchrun with 2 CPU processes (gloo) against a single process: same global batch and seed."""

import json
import os
import subprocess
import sys

import pytest

ARGS = ["--model", "sasrec", "--hidden", "16", "--inner", "32", "--max-len", "10", "--batch-size", "32",
        "--epochs", "2", "--dropout", "0", "--attn-dropout", "0", "--threads", "1", "--amp", "off",
        "--progress", "false", "--lr", "0.01"]


def test_two_process_ddp_matches_single_process(tmp_path, seq_file):
    env = {**os.environ, "ECHOREC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    p = subprocess.run([sys.executable, "-m", "echorec", "train", "--dataset", seq_file, "--out", one, *ARGS],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "echorec", "train", "--dataset", seq_file, "--out", two, *ARGS],
                       env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0 and "gloo" in p.stderr.lower() and "not" in p.stderr.lower():
        pytest.fail(f"gloo unavailable: {p.stderr[-500:]}")
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = (json.load(open(os.path.join(x, "metrics.json"))) for x in (one, two))
    for split in ("valid", "test"):
        for k, v in a[split].items():
            assert abs(v - b[split][k]) <= 1e-3, (split, k, v, b[split][k])
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # one writer: the same files, nothing doubled
