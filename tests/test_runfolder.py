"""The run folder's owner module: runs written before it existed still load, evaluate to the same digits
and recommend the same items; and it reads back what it writes."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from echorec.cli import main
from echorec.errors import EchorecError
from echorec.runfolder import RUN_FILES, RunFolder

LEGACY = os.path.join(os.path.dirname(__file__), "fixtures", "legacy_runs")


@pytest.fixture
def legacy(tmp_path, monkeypatch):
    """A copy of the legacy runs, as the working folder (their config names the data file relatively)."""
    dst = tmp_path / "legacy"
    shutil.copytree(LEGACY, dst)
    monkeypatch.chdir(dst)
    return dst


@pytest.mark.parametrize("model", ["echomamba4rec", "sasrec", "mamba4rec"])
def test_legacy_run_evaluates_and_recommends_as_before(legacy, capsys, model):
    assert main(["evaluate", "--run", model, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    saved = json.load(open(os.path.join(model, "metrics.json")))["test"]
    assert got == saved  # every digit
    assert main(["recommend", "--run", model, "--history", "i3,i4,i5,nope", "-k", "5"]) == 0
    got, want = json.loads(capsys.readouterr().out), json.load(open(f"{model}.recommend.json"))
    # The same items in the same order, exactly; the scores to float32 rounding only, because the fixture was
    # written on an AVX-512 CPU and an AVX2 one sums the hidden dimension in another order (the 7th digit moves).
    items, want_items = got.pop("items"), want.pop("items")
    assert [r["item"] for r in items] == [r["item"] for r in want_items]
    assert [r["score"] for r in items] == pytest.approx([r["score"] for r in want_items], rel=1e-5, abs=1e-7)
    assert got == want


def test_load_model_rebuilds_config_and_weights(legacy):
    rc, model, meta = RunFolder("echomamba4rec").load_model()
    assert rc.model == "echomamba4rec" and rc.model_cfg.hidden == 16 and meta["n_items"] == 30
    assert not model.training
    items, counts = RunFolder("echomamba4rec").read_items()
    assert len(items) == 30 and items[0].startswith("i") and counts.sum() > 0


def test_write_then_read_back(tmp_path):
    from echorec.data.preprocess import SeqData

    f = RunFolder(str(tmp_path / "run"))
    assert f.existing() == [] and f.read_metrics() is None
    f.write_metrics({"test": {"hit@10": 0.5}})
    f.write_history([{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5, "lr": 0.001}])
    f.write_weights({"w": torch.arange(3.0)})
    data = SeqData(np.array([1, 2, 2]), np.array([0, 2, 3]), np.array(["a", "b"]), np.array(["u1", "u2"]))
    f.write_id_maps(data)
    assert f.read_metrics() == {"test": {"hit@10": 0.5}}
    assert [r["lr"] for r in f.read_history()] == ["", "0.001"]  # columns added later stay readable
    assert torch.equal(f.read_weights()["w"], torch.arange(3.0))
    items, counts = f.read_items()
    assert items == ["a", "b"] and counts.tolist() == [1, 2]
    assert set(f.existing()) == {"metrics.json", "history.csv", "model.safetensors"} and set(f.existing()) <= set(RUN_FILES)
    assert sorted(os.listdir(f.path)) == ["history.csv", "items.tsv", "metrics.json", "model.safetensors", "users.tsv"]


def test_missing_folder_and_config_are_one_line_errors(tmp_path):
    with pytest.raises(EchorecError, match="no such run folder"):
        RunFolder(str(tmp_path / "none")).load_model()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("[1, 2]")
    with pytest.raises(EchorecError, match="expected an object"):
        RunFolder(str(tmp_path / "r")).read_config()
