"""ONNX export of every model, run in ONNX Runtime: scores equal PyTorch's to 1e-4 at any batch size and history
length (shorter than, equal to and longer than max_len), the id map beside the file, and one-line refusals."""

import os

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from echorec.cli import main  # noqa: E402
from echorec.config import run_config_to_dict  # noqa: E402
from echorec.data.split import load_split  # noqa: E402
from echorec.models import build_model, model_names  # noqa: E402
from echorec.runfolder import RunFolder  # noqa: E402

MAX_LEN = 8
MODELS = ["echomamba4rec", "mamba4rec", "sasrec", "gru4rec", "narm", "bert4rec", "fmlprec", "bsarec"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, seq_file_module):
    """A run folder per model: its default settings (small), untrained weights (the export does not care)."""
    import echorec

    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for m in MODELS:
        small = {"hidden": 16}
        rc = echorec.make_config(model=m, dataset=seq_file_module, max_len=MAX_LEN, **small)
        data, split = load_split(rc.data)
        folder = RunFolder(str(root / m))
        folder.start(run_config_to_dict(rc), data, split.n_items, data.digest())
        torch.manual_seed(0)
        folder.write_weights(build_model(m, split.n_items, rc.model_cfg, max_len=MAX_LEN).state_dict())
        out[m] = folder.path
    return out


@pytest.fixture(scope="module")
def seq_file_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "log.txt"
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for u in range(40):
            f.write(f"{u + 1} " + " ".join(str(x) for x in rng.integers(1, 31, size=int(rng.integers(4, 12)))) + "\n")
    return str(path)


def test_every_model_is_covered():
    assert sorted(MODELS) == sorted(model_names())


@pytest.mark.parametrize("model", MODELS)
def test_onnx_scores_equal_pytorch(folders, tmp_path, model):
    run = folders[model]
    rc, torch_model, meta = RunFolder(run).load_model("cpu")
    n = int(meta["n_items"])
    out = str(tmp_path / f"{model}.onnx")
    assert main(["export", "--run", run, "--out", out, "-k", str(n)]) == 0
    assert open(str(tmp_path / f"{model}.items.tsv")).read() == open(os.path.join(run, "items.tsv")).read()
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    for batch, length in [(1, 1), (3, 5), (2, MAX_LEN), (4, MAX_LEN + 7)]:
        seq = torch.randint(1, n + 1, (batch, length), generator=g)
        if batch > 1:
            seq[1, : length // 2] = 0  # a left-padded row
        with torch.no_grad():
            ref = torch_model.predict(seq[:, -MAX_LEN:]).float()  # (B, n_items)
        scores, items = sess.run(None, {"seq": seq.numpy()})
        assert scores.shape == (batch, n) and items.shape == (batch, n)
        # every item once per row, and its score is PyTorch's score of that item (robust to ties in the order)
        assert (np.sort(items, axis=1) == np.arange(1, n + 1)).all()
        got = torch.from_numpy(scores)
        assert torch.allclose(got, ref.gather(1, torch.from_numpy(items) - 1), atol=1e-4, rtol=1e-4)
        assert torch.allclose(got, ref.sort(dim=1, descending=True).values, atol=1e-4, rtol=1e-4)


def test_refusals_are_one_line(folders, tmp_path, capsys, monkeypatch):
    run = folders["sasrec"]
    out = tmp_path / "m.onnx"
    for argv, message in [(["-k", "0"], "-k 0: at least 1"), (["-k", "-5"], "-k -5: at least 1"),
                          (["--out", str(tmp_path / "nowhere" / "m.onnx")], "folder does not exist"),
                          (["--out", str(tmp_path)], "is a folder")]:
        args = ["export", "--run", run, "--out", str(out), *argv]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    out.write_text("a dataset someone cared about")
    assert main(["export", "--run", run, "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_text().startswith("a dataset")

    def refuse(*a, **k):
        raise RuntimeError("Unsupported operator aten::something\nand a page of trace")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    assert main(["export", "--run", run, "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: sasrec: cannot be exported to ONNX (RuntimeError: Unsupported operator aten::something)"
