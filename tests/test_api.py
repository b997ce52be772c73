"""The Python API (echorec.train / load_run / Run) and model plugins through the `echorec.models` entry-point
group: a package installed beside echorec whose model then works in models, train, evaluate, bench, serve
and export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import echorec
from echorec.cli import main

TINY = dict(hidden=16, inner=32, max_len=8, epochs=2, progress=False)


def test_train_load_recommend_evaluate(tmp_path, seq_file):
    run = echorec.train(model="sasrec", dataset=seq_file, out=tmp_path / "run", **TINY)
    assert isinstance(run, echorec.Run) and run.config.model == "sasrec" and run.config.data.max_len == 8
    assert run.metrics["best_epoch"] >= 1 and len(run.history) == 2
    again = echorec.load_run(tmp_path / "run")
    assert again.evaluate() == run.metrics["test"]  # exactly: the same weights, the same data
    assert again.evaluate("valid") == run.metrics["valid"]
    out = again.recommend(["1", "2", "nope"], k=3)
    assert len(out["items"]) == 3 and out["dropped"] == ["nope"]
    s = again.session()
    s.add("1")
    assert len(s.recommend(k=2)["items"]) == 2


def test_config_file_and_keywords(tmp_path, seq_file):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: gru4rec\ndata:\n  dataset: {seq_file}\n  max_len: 8\ntrain:\n  epochs: 1\n"
                   "  progress: false\nmodel_cfg:\n  hidden: 8\n")
    rc = echorec.make_config(str(cfg), epochs=3)
    assert rc.model == "gru4rec" and rc.train.epochs == 3 and rc.model_cfg.hidden == 8
    run = echorec.train(str(cfg), out=tmp_path / "run", gru_hidden=12)
    assert run.config.model_cfg.gru_hidden == 12 and run.config.train.epochs == 1
    # A run folder's config.json is a config too.
    rc2 = echorec.make_config(os.path.join(tmp_path, "run", "config.json"))
    assert rc2 == run.config


@pytest.mark.parametrize("kwargs,words", [
    (dict(hiden=16), "did you mean 'hidden'"),
    (dict(epochs=0), "--epochs"),
    (dict(model="nosuch"), "unknown model"),
    (dict(), "out="),
])
def test_mistakes_are_echorec_errors(tmp_path, seq_file, kwargs, words):
    out = {} if not kwargs else {"out": tmp_path / "run"}
    with pytest.raises(echorec.EchorecError, match=words):
        echorec.train(dataset=seq_file, **{**out, **kwargs})


PLUGIN = '''
"""A model from another package: mean of the item embeddings of the history, then a linear map."""
from dataclasses import dataclass

import torch
from torch import nn

from echorec.fields import setting
from echorec.models.base import SequentialRecommender


@dataclass
class MeanPoolConfig:
    hidden: int = setting(16, "embedding size", low=1)
    scale: float = setting(1.0, "output scale", low=0, low_open=True)


class MeanPool(SequentialRecommender):
    Config = MeanPoolConfig
    causal = True
    description = "mean of the history's item embeddings (a plugin test model)"

    def __init__(self, n_items, max_len, cfg):
        super().__init__(n_items, max_len, cfg.hidden)
        self.cfg = cfg
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)

    def encode(self, seq):
        seq = seq[:, -self.max_len:]
        e = self.item_emb(seq)  # (B, L, D)
        n = torch.cumsum((seq > 0).float(), dim=1).clamp(min=1)[..., None]  # (B, L, 1)
        return self.proj(torch.cumsum(e, dim=1) / n) * self.cfg.scale
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed package `echorec_meanpool` (a dist-info with an entry point, as pip leaves it)."""
    site = tmp_path / "site"
    (site / "echorec_meanpool").mkdir(parents=True)
    (site / "echorec_meanpool" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "echorec_meanpool-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echorec-meanpool\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[echorec.models]\nmeanpool = echorec_meanpool:MeanPool\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    from echorec.models import load_plugins

    load_plugins(force=True)
    yield str(site)
    from echorec import registry

    registry._MODELS.pop("meanpool", None)


def test_plugin_model_works_everywhere(plugin, tmp_path, seq_file, capsys):
    assert main(["models"]) == 0
    assert "meanpool" in capsys.readouterr().out
    out = str(tmp_path / "run")
    assert main(["train", "--model", "meanpool", "--dataset", seq_file, "--out", out, "--epochs", "2",
                 "--max-len", "8", "--scale", "0.5", "--progress", "false"]) == 0
    assert json.load(open(os.path.join(out, "config.json")))["model_cfg"] == {"hidden": 16, "scale": 0.5}
    capsys.readouterr()
    assert main(["evaluate", "--run", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.load(open(os.path.join(out, "metrics.json")))["test"]
    assert main(["recommend", "--run", out, "--history", "1,2", "-k", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from echorec.serve import Recommender
    from echorec.serve.http import create_app

    with TestClient(create_app(Recommender.from_run(out))) as c:
        assert c.post("/recommend", json={"history": ["1"], "k": 2}).status_code == 200
    assert main(["export", "--run", out, "--out", str(tmp_path / "m.pt")]) == 0
    study = str(tmp_path / "study")
    assert main(["bench", "accuracy", "--models", "meanpool,sasrec", "--datasets", seq_file, "--seeds", "1",
                 "--out", study, "--epochs", "1", "--max-len", "8", "--hidden", "16"]) == 0
    assert "meanpool+hidden=16" in open(os.path.join(study, "results.md")).read()


def test_plugin_is_found_by_a_fresh_process(plugin):
    # What `pip install` gives: nothing imported by hand, the entry point alone brings the model in.
    p = subprocess.run([sys.executable, "-m", "echorec", "models"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "meanpool" in p.stdout, p.stderr


def test_broken_plugin_is_a_warning(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[echorec.models]\nbroken = no_such_module:Model\n")
    monkeypatch.syspath_prepend(str(site))
    from echorec.models import load_plugins, model_names

    assert "broken" not in load_plugins(force=True)
    assert "warning: model plugin 'broken'" in capsys.readouterr().err
    assert "sasrec" in model_names()


def test_the_package_functions_are_the_api_and_the_cli_goes_through_them(tmp_path, seq_file, monkeypatch, capsys):
    import echorec
    import echorec.api as api
    from echorec.cli import main

    assert echorec.train is api.train and echorec.evaluate is api.evaluate and echorec.export is api.export
    import types

    import echorec.training

    assert type(echorec.training) is types.ModuleType and not callable(echorec.training)  # no class swapping
    calls = []
    real = api.train
    monkeypatch.setattr(api, "train", lambda *a, **k: calls.append(k) or real(*a, **k))
    out = str(tmp_path / "r")
    assert main(["train", "--model", "sasrec", "--dataset", seq_file, "--epochs", "1", "--hidden", "8", "--inner", "16",
                 "--out", out, "--progress", "false"]) == 0
    assert calls and calls[0]["out"] == out and calls[0]["resume"] is False
    assert main(["train", "--resume", out, "--epochs", "2", "--progress", "false"]) == 0
    assert calls[1]["resume"] is True
    m = api.evaluate(out)
    assert m == pytest.approx(api.load_run(out).metrics["test"])


def test_a_config_of_another_model_keeps_its_data_and_training_settings():
    import echorec.api as api

    path = os.path.join(os.path.dirname(__file__), "fixtures", "legacy_runs", "sasrec", "config.json")
    base = json.load(open(path))
    rc = api.make_config(path, model="gru4rec")  # the README's `--config runs/clicks/config.json --model ...`
    assert rc.model == "gru4rec" and rc.data.max_len == base["data"]["max_len"]
    assert rc.train.lr == base["train"]["lr"] and rc.model_cfg.layers == 1  # gru4rec's own default, not sasrec's


def test_a_warm_start_starts_from_its_parents_settings(tmp_path, seq_file):
    import echorec.api as api

    parent = str(tmp_path / "p")
    api.train(model="gru4rec", dataset=seq_file, hidden=8, gru_hidden=12, epochs=1, out=parent, quiet=True)
    rc = api.make_config(init_from=parent, epochs=3)
    assert (rc.model, rc.model_cfg.hidden, rc.model_cfg.gru_hidden, rc.train.epochs) == ("gru4rec", 8, 12, 3)
    assert rc.train.init_from == parent
