"""The prepared GPU check's CPU parts (benchmarks/gpu_check.py --dry-run): every section runs and writes
its table, so GPU time is never spent finding a broken script."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "gpu.md"
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src"), "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--dry-run", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    md = out.read_text()
    assert "DRY RUN" in md and "failed" not in md, md
    for title in ("Selective scan", "One Mamba layer", "Training epochs", "Speed cells", "Triton scan tiles",
                  "torch.compile and CUDA graphs", "The first GPU reading"):
        assert f"## {title}" in md
    assert "| triton |" in md and "| synthetic | echomamba4rec |" in md
    assert "| sasrec | default |" in md and "| echomamba4rec | default |" in md and "(not run)" not in md
    assert "(pick)" in md and "batch-1 ms" in md
