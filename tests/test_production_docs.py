"""docs/production.md's recipes, run as written (bash blocks with the installed `echorec` on PATH, Python blocks
with this interpreter), in order, in a folder holding the files they name: a small generated clicks.csv, the
grown log a week later, and an out-of-stock list."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import synthetic_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "production.md")


def blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(bash|python)\n(.*?)```", open(PAGE, encoding="utf-8").read(), re.S)


def write_logs(folder):
    rows = synthetic_log(n_users=120, n_items=40)
    with open(os.path.join(folder, "clicks.csv"), "w") as f:
        f.write("user_id,item_id,timestamp\n")
        f.writelines(f"u{u},i{i},{t}\n" for u, i, _, t in rows)
    grown = rows + [(u, 41 + u % 5, 0, t + 10**6) for u, _, _, t in rows[: len(rows) // 10]]
    with open(os.path.join(folder, "clicks_grown.csv"), "w") as f:
        f.write("user_id,item_id,timestamp\n")
        f.writelines(f"u{u},i{i},{t}\n" for u, i, _, t in grown)
    with open(os.path.join(folder, "out_of_stock.txt"), "w") as f:
        f.write("i1\ni2\n")


def test_the_page_has_the_three_recipes():
    text = open(PAGE, encoding="utf-8").read()
    assert ["The nightly batch", "Retraining on new events", "Serving"] == re.findall(r"^## (.+)$", text, re.M)
    kinds = [k for k, _ in blocks()]
    assert kinds.count("bash") == 3 and kinds.count("python") == 2


def test_the_recipes_run_as_written(tmp_path):
    pytest.importorskip("pyarrow")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    if shutil.which("curl") is None:
        pytest.fail("the serving recipe needs curl (Debian: apt-get install curl)")
    write_logs(tmp_path)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    for kind, code in blocks():
        cmd = ["bash", "-euo", "pipefail", "-c", code] if kind == "bash" else [sys.executable, "-c", code]
        p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{kind} block failed:\n{code}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        if "curl" in code:  # the answers: the per-request deny, then the deny file's new line, took effect
            answers = [a for a in p.stdout.splitlines() if a.startswith("{")]
            assert len(answers) == 2 and '"i9"' not in answers[0].split('"dropped"')[0]
            assert '"item":"i4"' not in answers[1].replace(" ", "") and '"item":"i1"' not in answers[1].replace(" ", "")
    assert (tmp_path / "runs" / "next" / "config.json").exists() and (tmp_path / "model.items.tsv").exists()
