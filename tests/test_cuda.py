"""End to end on a GPU (skipped without one; benchmarks/gpu_check.sh runs these): train with bf16 autocast
through the Triton scan, then evaluate, recommend and export with --device cuda."""

import json
import os

import pytest
import torch

from echorec.cli import main

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("model", ["echomamba4rec", "sasrec"])
def test_train_evaluate_recommend_export_on_cuda(tmp_path, seq_file, capsys, model):
    out = str(tmp_path / model)
    assert main(["train", "--model", model, "--dataset", seq_file, "--out", out, "--epochs", "2", "--hidden", "16",
                 "--device", "cuda", "--amp", "bf16", "--progress", "false"]) == 0
    err = capsys.readouterr().err
    assert "device cuda:0, amp torch.bfloat16" in err
    if model == "echomamba4rec":
        assert "scan: triton" in err or "scan: mamba_ssm" in err
    saved = json.load(open(os.path.join(out, "metrics.json")))["test"]
    assert main(["evaluate", "--run", out, "--device", "cuda", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got.keys() == saved.keys() and all(abs(got[k] - saved[k]) < 1e-6 for k in got)
    assert main(["recommend", "--run", out, "--history", "1,2,3", "-k", "3", "--device", "cuda"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3
    assert main(["export", "--run", out, "--out", str(tmp_path / "m.pt"), "--device", "cuda"]) == 0
