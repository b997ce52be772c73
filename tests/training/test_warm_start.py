"""`echorec train --init-from RUN`: the loss goes on where the parent stopped, known items keep their ids and
embeddings on a grown log, new items get fresh rows, the parent is recorded, and what cannot be warm-started is
one line."""

import json
import os

import pytest
import torch

import echorec
from echorec.cli import main
from echorec.runfolder import RunFolder
from tests.conftest import synthetic_log

TINY = ["--hidden", "16", "--inner", "32", "--progress", "false", "--max-len", "10"]


def write_log(path, rows):
    with open(path, "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for u, i, _, t in rows:
            f.write(f"u{u},i{i},{t}\n")


@pytest.fixture
def logs(tmp_path):
    """An old log, and a grown one: 10% more events, some of them on items the old log never had."""
    rows = synthetic_log(n_users=80, n_items=40)
    old = tmp_path / "old.csv"
    write_log(old, rows)
    extra = [(u, 41 + (u % 6), 0, t + 10**6) for u, _, _, t in rows[: len(rows) // 10]]  # new items i41..i46
    grown = tmp_path / "grown.csv"
    write_log(grown, rows + extra)
    return str(old), str(grown)


def test_a_warm_start_on_the_same_data_continues_the_loss(tmp_path, logs):
    old, _ = logs
    parent, child, fresh = (str(tmp_path / n) for n in ("parent", "child", "fresh"))
    assert main(["train", "--model", "sasrec", "--dataset", old, "--out", parent, "--epochs", "6", "--patience", "0",
                 *TINY]) == 0
    assert main(["train", "--model", "sasrec", "--dataset", old, "--out", fresh, "--epochs", "1", *TINY]) == 0
    assert main(["train", "--model", "sasrec", "--dataset", old, "--out", child, "--epochs", "1",
                 "--init-from", parent, *TINY]) == 0
    loss = lambda run: [float(r["loss"]) for r in RunFolder(run).read_history()]  # noqa: E731
    p, c, f = loss(parent), loss(child), loss(fresh)
    assert f[0] == pytest.approx(p[0], rel=1e-9)  # same seed, same start: the fresh run is the parent's epoch 1
    assert c[0] < p[-2]  # the child's first epoch is beyond the parent's next-to-last one, far below a fresh start
    assert c[0] < f[0] - 0.5 * (f[0] - p[-1])
    meta = RunFolder(child).read_config_dict()["meta"]["parent"]
    parent_meta = RunFolder(parent).read_config_dict()["meta"]
    assert meta == {"run": os.path.abspath(parent), "data_digest": parent_meta["data_digest"],
                    "n_items": parent_meta["n_items"], "new_items": 0}


def test_a_grown_log_keeps_known_ids_and_rows_and_adds_fresh_ones(tmp_path, logs):
    old, grown = logs
    parent, child = str(tmp_path / "parent"), str(tmp_path / "child")
    assert main(["train", "--model", "bert4rec", "--dataset", old, "--out", parent, "--epochs", "2", *TINY[:2],
                 *TINY[4:]]) == 0
    p_items, _ = RunFolder(parent).read_items()
    from echorec.models import build_model
    from echorec.training.warm import read_parent, warm_start

    rc = echorec.make_config(model="bert4rec", dataset=grown, hidden=16, max_len=10)
    torch.manual_seed(0)
    fresh = build_model("bert4rec", len(p_items) + 6, rc.model_cfg, max_len=10)
    before = fresh.item_emb.weight.detach().clone()
    assert warm_start(fresh, read_parent(parent, "bert4rec")) == 6
    state = RunFolder(parent).read_weights()
    n = len(p_items)
    w = fresh.item_emb.weight
    assert torch.equal(w[: n + 1], state["item_emb.weight"][: n + 1])  # padding row and known items
    assert torch.equal(w[-1], state["item_emb.weight"][-1])  # BERT4Rec's [mask] row moves to the end
    assert torch.equal(w[n + 1: n + 7], before[n + 1: n + 7])  # new items: the seeded init's rows
    # end to end: the item map grows, no known id changes, evaluation reloads it the same way
    assert main(["train", "--model", "bert4rec", "--dataset", grown, "--out", child, "--epochs", "1",
                 "--init-from", parent, *TINY[:2], *TINY[4:]]) == 0
    c_items, _ = RunFolder(child).read_items()
    assert c_items[:n] == p_items and sorted(c_items[n:]) == [f"i{41 + j}" for j in range(6)]
    assert RunFolder(child).read_config_dict()["meta"]["parent"]["new_items"] == 6
    m = echorec.load_run(child)
    assert m.evaluate() == pytest.approx(m.metrics["test"])
    assert main(["train", "--resume", child, "--epochs", "2", "--progress", "false"]) == 0  # resumes on its own map


@pytest.mark.parametrize("flags, message", [
    (["--model", "sasrec", "--hidden", "32", "--inner", "32"], "tensor item_emb.weight is [41, 16] in the parent and"),
    (["--model", "sasrec", "--hidden", "16", "--inner", "32", "--max-len", "20"], "pos_emb.weight"),
    (["--model", "gru4rec", "--hidden", "16"], "that run is a sasrec, this one a gru4rec"),
    (["--model", "sasrec", "--hidden", "16", "--inner", "32", "--init-from", "NOWHERE"], "no such run folder"),
])
def test_what_cannot_be_warm_started_is_one_line(tmp_path, logs, capsys, flags, message):
    old, _ = logs
    parent = str(tmp_path / "parent")
    assert main(["train", "--model", "sasrec", "--dataset", old, "--out", parent, "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    out = tmp_path / "child"
    flags = [f.replace("NOWHERE", str(tmp_path / "nowhere")) for f in flags]
    args = ["train", "--dataset", old, "--out", str(out), "--epochs", "1", "--progress", "false",
            *(flags if "--init-from" in flags else [*flags, "--init-from", parent])]
    if "--max-len" not in flags:
        args += ["--max-len", "10"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()  # nothing written
    assert json.loads(json.dumps(RunFolder(parent).read_metrics()))  # the parent is untouched
