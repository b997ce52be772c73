"""Damaged or tampered run folders and checkpoints: `evaluate`, `recommend` and `train --resume` answer with
one `error:` line naming the file (exit 2), and leave every file in the folder as it was.

One row per case: how to damage a copy of a trained run, and the words the error must hold.
"""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest
import torch

from echorec.cli import main
from echorec.runfolder import RunFolder, load_weights, save_weights
from echorec.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    from tests.conftest import synthetic_log

    root = tmp_path_factory.mktemp("hostile-run")
    data = root / "log.inter"
    with open(data, "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u, i, r, t in synthetic_log(n_users=30, n_items=20):
            f.write(f"{u}\t{i}\t{r}\t{t}\n")
    run = root / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("ECHOREC_CACHE", str(root / "cache"))
    assert main(["train", "--model", "sasrec", "--dataset", str(data), "--out", str(run), "--epochs", "2",
                 "--hidden", "16", "--inner", "32", "--max-len", "8", "--progress", "false"]) == 0
    mp.undo()
    return str(run), str(data)


def _json_edit(name, edit):
    def apply(run):
        path = os.path.join(run, name)
        d = json.load(open(path))
        d = edit(d)
        with open(path, "w") as f:
            f.write(d if isinstance(d, str) else json.dumps(d))
    return apply


def _set(d, dotted, value):
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        cur = cur[k]
    cur[keys[-1]] = value
    return d


def _write(name, content):
    def apply(run):
        with open(os.path.join(run, name), "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
    return apply


def _weights(edit, name="model.safetensors"):
    def apply(run):
        path = os.path.join(run, name)
        state = load_weights(path)
        save_weights(path, edit(state))
    return apply


def _nan_first(state):
    k = next(k for k, v in state.items() if v.is_floating_point())
    state[k] = state[k].clone()
    state[k].view(-1)[0] = float("nan")
    return state


def _shrink_items(state):
    k = "item_emb.weight"
    state[k] = state[k][:5].clone()
    return state


def _truncate(name):
    def apply(run):
        path = os.path.join(run, name)
        blob = open(path, "rb").read()
        open(path, "wb").write(blob[: len(blob) // 3])
    return apply


def _header_lies(run):
    # The header claims a 10^12-row item table; a loader that trusts it would try to allocate terabytes.
    path = os.path.join(run, "model.safetensors")
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header["item_emb.weight"]["shape"][0] = 10**12
    new = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(new)) + new + blob[8 + n:])


READ_CASES = [
    ("config-list", _write("config.json", "[1, 2]"), ["config.json", "expected an object"]),
    ("config-number-section", _json_edit("config.json", lambda d: _set(d, "data", 5)), ["config.json", "data"]),
    ("config-not-utf8", _write("config.json", b'{"model": "sas\xffrec"}'), ["config.json", "not UTF-8"]),
    ("config-bad-json", _write("config.json", "{"), ["config.json:1", "invalid JSON"]),
    ("config-heads", _json_edit("config.json", lambda d: _set(d, "model_cfg.heads", 3)), ["config.json", "heads"]),
    ("config-max-len", _json_edit("config.json", lambda d: _set(d, "data.max_len", -1)), ["config.json", "max-len"]),
    ("config-type", _json_edit("config.json", lambda d: _set(d, "train.lr", "fast")), ["config.json", "lr"]),
    ("config-model", _json_edit("config.json", lambda d: _set(d, "model", "nosuch")), ["nosuch"]),
    ("n-items-float", _json_edit("config.json", lambda d: _set(d, "meta.n_items", 1e12)), ["meta.n_items"]),
    ("n-items-huge", _json_edit("config.json", lambda d: _set(d, "meta.n_items", 10**12)), ["meta.n_items"]),
    ("n-items-other", _json_edit("config.json", lambda d: _set(d, "meta.n_items", 5)), ["item_emb.weight", "shape"]),
    ("no-config", lambda run: os.unlink(os.path.join(run, "config.json")), ["config.json", "no such file"]),
    ("weights-nan", _weights(_nan_first), ["model.safetensors", "NaN"]),
    ("weights-shape", _weights(_shrink_items), ["model.safetensors", "item_emb.weight"]),
    ("weights-truncated", _truncate("model.safetensors"), ["model.safetensors", "safetensors"]),
    ("weights-header-lies", _header_lies, ["model.safetensors", "item_emb.weight"]),
    ("weights-garbage", _write("model.safetensors", b"\x00" * 7), ["model.safetensors"]),
    ("items-garbage", _write("items.tsv", "garbage\n"), ["items.tsv:1", "header"]),
    ("items-short-row", _write("items.tsv", "internal_id\traw_id\tcount\n1\ta\n"), ["items.tsv:2"]),
    ("items-wrong-id", _write("items.tsv", "internal_id\traw_id\tcount\n7\ta\t1\n"), ["items.tsv:2", "internal id 1"]),
    ("items-count", _write("items.tsv", "internal_id\traw_id\tcount\n1\ta\t1\n"), ["items.tsv", "trained on"]),
    ("items-binary", _write("items.tsv", b"internal_id\traw_id\tcount\n1\t\xff\t1\n"), ["items.tsv", "UTF-8"]),
    ("metrics-list", _write("metrics.json", "[]"), ["metrics.json", "expected an object"]),
    ("metrics-shape", _write("metrics.json", '{"test": 5}'), ["metrics.json", "test"]),
]


def _snapshot(run):
    return {f: open(os.path.join(run, f), "rb").read() for f in sorted(os.listdir(run))}


def _one_error_line(capsys, words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, (w, err)


# evaluate never reads the item map (its answer does not depend on it); recommend reads everything.
READ_RUNS = [(cmd, *case) for case in READ_CASES for cmd in ("evaluate", "recommend")
             if not (cmd == "evaluate" and case[0].startswith("items"))]


@pytest.mark.parametrize("command,name,damage,words", READ_RUNS, ids=[f"{c[0]}-{c[1]}" for c in READ_RUNS])
def test_damaged_run_folder_is_one_line(trained, tmp_path, capsys, monkeypatch, command, name, damage, words):
    run_src, _ = trained
    monkeypatch.setenv("ECHOREC_CACHE", os.path.join(os.path.dirname(run_src), "cache"))
    run = str(tmp_path / "run")
    shutil.copytree(run_src, run)
    damage(run)
    before = _snapshot(run)
    argv = ["evaluate", "--run", run] if command == "evaluate" else ["recommend", "--run", run, "--history", "1,2"]
    assert main(argv) == 2
    _one_error_line(capsys, words)
    assert _snapshot(run) == before


def test_ids_with_any_character_round_trip(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECHOREC_CACHE", str(tmp_path / "cache"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    odd = ['q"uote', "tab\there", "new\nline", "nul\x00byte", "ünï·código", "🙂 emoji", "comma,semi;", "\\back"]
    users, items, times = [], [], []
    for u in range(12):
        for t in range(6):
            users.append(f"user {u}\t{odd[u % len(odd)]}")
            items.append(odd[(u + t) % len(odd)])
            times.append(u * 100 + t)
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"user_id": users, "item_id": items, "timestamp": times}), path)
    run = str(tmp_path / "run")
    assert main(["train", "--model", "sasrec", "--dataset", str(path), "--out", run, "--epochs", "1", "--hidden",
                 "16", "--inner", "32", "--max-len", "8", "--progress", "false"]) == 0
    raw, counts = RunFolder(run).read_items()
    assert sorted(raw) == sorted(odd) and counts.sum() == len(items)
    from echorec.serve import Recommender

    rec = Recommender.from_run(run)
    out = rec.recommend(["new\nline", "nul\x00byte"], k=len(odd), exclude_seen=False)
    assert out["dropped"] == [] and sorted(x["item"] for x in out["items"]) == sorted(odd)


def _ckpt_edit(edit):
    """Rewrite the checkpoint through `edit(tensors, metadata)`."""
    def apply(run):
        from safetensors import safe_open
        from safetensors.torch import load, save

        path = os.path.join(run, "checkpoint.safetensors")
        with safe_open(path, framework="pt") as f:
            meta = dict(f.metadata())
        tensors = load(open(path, "rb").read())  # in memory, not mapped: the file is rewritten below
        edit(tensors, meta)
        open(path, "wb").write(save(tensors, metadata=meta))
    return apply


def _loop(**change):
    def edit(tensors, meta):
        loop = json.loads(meta["loop"])
        loop.update(change)
        meta["loop"] = json.dumps(loop)
    return edit


def _first_adam(tensors, meta):
    k = next(k for k in tensors if k.endswith("/exp_avg"))
    tensors[k] = torch.zeros(3, 3)


def _model_nan(tensors, meta):
    k = next(k for k in tensors if k.startswith("model/") and tensors[k].is_floating_point())
    tensors[k] = tensors[k].clone()
    tensors[k].view(-1)[0] = float("inf")


RESUME_CASES = [
    ("loop-epoch-text", _ckpt_edit(_loop(epoch="x")), ["loop state", "epoch"]),
    ("loop-step-negative", _ckpt_edit(_loop(step=-4)), ["loop state", "step"]),
    ("loop-unknown-key", _ckpt_edit(_loop(extra=1)), ["loop state"]),
    ("loop-history", _ckpt_edit(_loop(history=[1, 2])), ["loop state", "history"]),
    ("loop-missing", _ckpt_edit(lambda t, m: m.pop("loop")), ["metadata"]),
    ("loop-not-json", _ckpt_edit(lambda t, m: m.__setitem__("loop", "{")), ["metadata"]),
    ("groups", _ckpt_edit(lambda t, m: m.__setitem__("param_groups", "5")), ["optimizer groups"]),
    ("rng", _ckpt_edit(lambda t, m: t.__setitem__("rng/torch", torch.zeros(3, dtype=torch.uint8))), ["random"]),
    ("adam-shape", _ckpt_edit(_first_adam), ["optimizer state", "shape"]),
    ("adam-index", _ckpt_edit(lambda t, m: t.__setitem__("opt/999/exp_avg", torch.zeros(1))), ["parameter 999"]),
    ("adam-name", _ckpt_edit(lambda t, m: t.__setitem__("opt/x", torch.zeros(1))), ["opt/x"]),
    ("model-inf", _ckpt_edit(_model_nan), ["NaN or infinite"]),
    ("model-missing", _ckpt_edit(lambda t, m: t.pop("model/item_emb.weight")), ["model does not fit"]),
    ("truncated", _truncate("checkpoint.safetensors"), ["safetensors"]),
    ("absent", lambda run: os.unlink(os.path.join(run, "checkpoint.safetensors")), ["no checkpoint.safetensors"]),
]


@pytest.mark.parametrize("name,damage,words", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_tampered_checkpoint_is_one_line(trained, tmp_path, capsys, monkeypatch, name, damage, words):
    run_src, _ = trained
    monkeypatch.setenv("ECHOREC_CACHE", os.path.join(os.path.dirname(run_src), "cache"))
    run = str(tmp_path / "run")
    shutil.copytree(run_src, run)
    damage(run)
    before = _snapshot(run)
    assert main(["train", "--resume", run, "--epochs", "3"]) == 2
    _one_error_line(capsys, ["checkpoint", *words])
    assert _snapshot(run) == before


def test_changed_data_is_refused_unless_allowed(trained, tmp_path, capsys, monkeypatch):
    run_src, data_src = trained
    monkeypatch.setenv("ECHOREC_CACHE", str(tmp_path / "cache"))
    data = str(tmp_path / "log.inter")
    shutil.copy(data_src, data)
    run = str(tmp_path / "run")
    shutil.copytree(run_src, run)
    _json_edit("config.json", lambda d: _set(d, "data.dataset", data))(run)
    assert main(["evaluate", "--run", run]) == 0
    capsys.readouterr()
    with open(data, "a") as f:
        f.write("1\t3\t5\t99999999\n")  # one more event for user 1: a new test target
    before = _snapshot(run)
    for argv in (["evaluate", "--run", run], ["train", "--resume", run, "--epochs", "3"]):
        assert main(argv) == 2
        _one_error_line(capsys, ["log.inter", "differs", "--allow-data-change"])
    assert _snapshot(run) == before
    assert main(["evaluate", "--run", run, "--allow-data-change"]) == 0


def test_stale_temp_files_are_removed_and_modes_follow_the_umask(trained, tmp_path, monkeypatch):
    run_src, _ = trained
    monkeypatch.setenv("ECHOREC_CACHE", os.path.join(os.path.dirname(run_src), "cache"))
    run = str(tmp_path / "run")
    shutil.copytree(run_src, run)
    stale = os.path.join(run, ".checkpoint.safetensors.tmp-abc123")
    open(stale, "wb").write(b"half a file")
    old = os.umask(0o022)
    try:
        assert main(["train", "--resume", run, "--epochs", "3"]) == 0
    finally:
        os.umask(old)
    assert not os.path.exists(stale)
    for f in ("model.safetensors", "checkpoint.safetensors", "metrics.json", "history.csv"):
        assert os.stat(os.path.join(run, f)).st_mode & 0o777 == 0o644, f
    assert load_checkpoint(os.path.join(run, "checkpoint.safetensors"))["loop"]["epoch"] == 4


TRAIN_REFUSALS = [
    ("short-histories", "user_id,item_id,timestamp\n" + "".join(f"u{u},i{t},{t}\n" for u in range(5) for t in range(3)),
     ["no training samples"]),
    ("not-utf8", b"user_id,item_id\nu1,\xff\n", ["log.csv:2", "not UTF-8"]),
    ("nan-time", "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,nan\n", ["log.csv:3", "finite"]),
]


@pytest.mark.parametrize("name,content,words", TRAIN_REFUSALS, ids=[c[0] for c in TRAIN_REFUSALS])
def test_train_refuses_before_writing_and_a_rerun_is_not_blocked(tmp_path, capsys, monkeypatch, name, content, words):
    monkeypatch.setenv("ECHOREC_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "log.csv"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "run"
    args = ["train", "--model", "sasrec", "--dataset", str(data), "--out", str(out), "--epochs", "1", "--hidden", "16",
            "--inner", "32", "--max-len", "8", "--progress", "false"]
    assert main(args) == 2
    _one_error_line(capsys, words)
    assert not out.exists()
    data.write_text("user_id,item_id,timestamp\n" + "".join(f"u{u},i{(u + t) % 9},{t}\n" for u in range(20)
                                                           for t in range(6)))
    assert main(args) == 0  # the failed attempt left nothing that blocks the next one
