"""The second hostile probe's findings (#42), one row per case: each was a traceback, a hang, lost work or a
silently wrong answer, and each must now be one line with exit status 2 (nothing left behind) or the right
answer. The readers' cases are in tests/data/test_readers_agree.py, the server's slow clients below."""

from __future__ import annotations

import json
import os
import socket
import textwrap
import threading
import time

import pytest

import echorec
from echorec.cli import main
from echorec.errors import EchorecError
from echorec.runfolder import RunFolder

TINY = ["--model", "sasrec", "--hidden", "8", "--inner", "16", "--epochs", "1", "--progress", "false"]


def one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err
    return err


@pytest.fixture
def run(tmp_path_factory, seq_file):
    out = str(tmp_path_factory.mktemp("run") / "r")
    assert main(["train", "--dataset", seq_file, "--out", out, *TINY]) == 0
    return out


# -- run folders: where they may go, who may write them, what a failed start leaves ----------------------

@pytest.mark.parametrize("where, fragment", [
    ("/proc/echorec_probe", "kernel file system"),
    ("/sys/echorec_probe", "kernel file system"),
    ("/dev/null", "exists and is not a folder"),
    ("/dev/null/run", "is a file, so no folder"),
    ("FILE/run", "is a file, so no folder"),
    ("TMP/" + "n" * 300, "bytes; at most 255"),
    ("TMP/" + "/".join(["d" * 200] * 21), "bytes long; at most 4096"),
])
def test_out_paths_that_cannot_hold_a_run(tmp_path, seq_file, capsys, where, fragment):
    (tmp_path / "FILE").write_text("a file")
    out = where.replace("FILE", str(tmp_path / "FILE")).replace("TMP", str(tmp_path / "t"))
    assert main(["train", "--dataset", seq_file, "--out", out, *TINY]) == 2
    one_line_error(capsys, fragment)
    assert not (tmp_path / "t").exists()  # no folder left behind


def test_an_item_id_holding_a_carriage_return_round_trips(tmp_path, capsys):
    log = tmp_path / "log.csv"
    odd = "a\rb"
    rows = [f'u{u},"{odd if (u + t) % 7 == 0 else f"i{(u + t) % 9}"}",{t}' for u in range(30) for t in range(8)]
    log.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n", newline="")
    out = str(tmp_path / "r")
    assert main(["train", "--dataset", str(log), "--out", out, *TINY]) == 0
    raw, _ = RunFolder(out).read_items()
    assert "a\rb" in raw
    assert echorec.load_run(out).recommend(["a\rb"], k=3)["dropped"] == []


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path, seq_file, capsys):
    out = str(tmp_path / "r")
    with RunFolder(out).locked():  # the first writer
        assert main(["train", "--dataset", seq_file, "--out", out, *TINY]) == 2
        one_line_error(capsys, "is writing this run folder")
        assert RunFolder(out).existing() == []
    assert main(["train", "--dataset", seq_file, "--out", out, *TINY]) == 0  # the lock went with its holder
    assert os.path.exists(os.path.join(out, ".lock"))  # a leftover lock file blocks nobody
    assert main(["train", "--dataset", seq_file, "--out", out, "--overwrite", *TINY]) == 0


def test_a_killed_writer_leaves_no_lock(tmp_path, seq_file):
    import subprocess
    import sys

    out = str(tmp_path / "r")
    code = f"from echorec.runfolder import RunFolder\nimport time\nwith RunFolder({out!r}).locked():\n    time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 30
    while not os.path.exists(os.path.join(out, ".lock")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    with pytest.raises(EchorecError, match="is writing"):
        with RunFolder(out).locked():
            pass
    p.kill()
    p.wait()
    with RunFolder(out).locked():  # the kernel released it
        pass


@pytest.mark.parametrize("env, out_name, fragment", [
    ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "r", "cannot reach MLFLOW_TRACKING_URI"),
    ({}, "r?x", "holds ?, # or %"),
])
def test_a_tracker_that_cannot_start_writes_nothing(tmp_path, seq_file, capsys, monkeypatch, env, out_name,
                                                    fragment):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = str(tmp_path / out_name)
    t0 = time.time()
    assert main(["train", "--dataset", seq_file, "--out", out, "--logger", "mlflow", *TINY]) == 2
    one_line_error(capsys, fragment)
    assert time.time() - t0 < 60 and not os.path.exists(out)
    assert main(["train", "--dataset", seq_file, "--out", out, *TINY]) == 0  # a rerun is not blocked


# -- what a user can point at is read within bounds ---------------------------------------------------------

ALIAS_BOMB = textwrap.dedent("""\
    a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
    model: [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    """)


@pytest.mark.parametrize("config, fragment", [
    ("/dev/zero", "not a regular file"),
    ("BOMB.yaml", "aliases (*name) are not allowed"),
    ("LIST.yaml", "model must be a model's name, got list"),
    ("DICT.yaml", "model must be a model's name, got dict"),
    ("DATA.yaml", "data must be a mapping of settings, got int"),
])
def test_config_files(tmp_path, seq_file, capsys, config, fragment):
    (tmp_path / "BOMB.yaml").write_text(ALIAS_BOMB)
    (tmp_path / "LIST.yaml").write_text("model: [sasrec]\n")
    (tmp_path / "DICT.yaml").write_text("model: {a: 1}\n")
    (tmp_path / "DATA.yaml").write_text("model: sasrec\ndata: 5\n")
    path = config if config.startswith("/") else str(tmp_path / config)
    t0 = time.time()
    assert main(["train", "--config", path, "--dataset", seq_file, "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, fragment)
    assert time.time() - t0 < 30 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("call, fragment", [
    (lambda: echorec.make_config(config={"data": 5}), "data must be a mapping"),
    (lambda: echorec.make_config(seed=2**70), "--seed"),
    (lambda: echorec.make_config(seed=-1), "--seed -1"),
    (lambda: echorec.make_config(seed=2**32), "--seed"),
])
def test_api_settings(call, fragment):
    with pytest.raises(EchorecError, match=fragment.replace("-", r"\-")):
        call()


@pytest.mark.parametrize("name", ["config.json", "metrics.json", "items.tsv", "history.csv"])
def test_run_folder_files_pointing_at_dev_zero(run, tmp_path, name):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(run, copy)
    os.unlink(os.path.join(copy, name))
    os.symlink("/dev/zero", os.path.join(copy, name))
    with pytest.raises(EchorecError, match="not a regular file"):
        r = echorec.load_run(copy)
        r.metrics, r.history, r.recommend(["1"])


# -- training settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [str(2**70), "-1", str(2**32), "-3 --train-mode sample"])
def test_seeds_out_of_range(tmp_path, seq_file, capsys, seed):
    assert main(["train", "--dataset", seq_file, "--out", str(tmp_path / "r"), *TINY, "--seed", *seed.split()]) == 2
    one_line_error(capsys, "--seed")


@pytest.mark.parametrize("flags, fragment", [
    (["--split", "time", "--valid-from", "0", "--test-from", "0.9"], "no event before --valid-from 0"),
    (["--split", "time", "--valid-from", "0.5", "--test-from", "1.0"], None),  # 1.0 is the end of the range
])
def test_time_split_points(tmp_path, inter_file, capsys, flags, fragment):
    code = main(["train", "--dataset", inter_file, "--out", str(tmp_path / "r"), *TINY, *flags])
    if fragment is None:
        assert code == 0
        assert echorec.load_run(str(tmp_path / "r")).config.data.test_from == "1.0"
    else:
        assert code == 2
        one_line_error(capsys, fragment)


def test_yaml_typed_split_points_are_taken_as_written(tmp_path, inter_file):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  dataset: {inter_file}\n  split: time\n  valid_from: 0.8\n  test_from: 2038-01-01\n")
    rc = echorec.make_config(str(cfg))
    assert (rc.data.valid_from, rc.data.test_from) == ("0.8", "2038-01-01")
    assert echorec.make_config(valid_from=0.8, test_from=0.9, split="time").data.valid_from == "0.8"


def test_a_string_history_is_refused(run):
    with pytest.raises(EchorecError, match="history must be a list of item ids"):
        echorec.load_run(run).recommend("i12")


# -- plugins ---------------------------------------------------------------------------------------------

def _install(tmp_path, monkeypatch, name, body):
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(textwrap.dedent(body))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[echorec.models]\n{name} = {name}:Model\n")
    monkeypatch.syspath_prepend(str(site))
    from echorec.models import load_plugins

    load_plugins(force=True)


CLASH = """
from dataclasses import dataclass
from echorec.fields import setting
from echorec.models.sasrec import SASRec, SASRecConfig

@dataclass
class Cfg(SASRecConfig):
    epochs: int = setting(3, "a field named like a train flag", low=1)

class Model(SASRec):
    Config = Cfg
"""


def test_plugins_that_clash_or_exit(tmp_path, monkeypatch, seq_file, capsys):
    from echorec import registry

    try:
        _install(tmp_path, monkeypatch, "clashing", CLASH)
        assert main(["train", "--model", "clashing", "--dataset", seq_file, "--out", str(tmp_path / "r")]) == 2
        one_line_error(capsys, "model 'clashing'", "epochs")
        _install(tmp_path / "b", monkeypatch, "exiting", "import sys\nsys.exit(3)\n")
        assert main(["models"]) == 0
        captured = capsys.readouterr()
        assert "sasrec" in captured.out and "'exiting'" in captured.err
    finally:
        registry._MODELS.pop("clashing", None)


# -- bench -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["bench", "accuracy", "--models", "sasrec", "--datasets", "DATA", "--seeds", ",", "--out", "OUT"], "names no seed"),
    (["bench", "accuracy", "--models", "sasrec", "--datasets", "DATA", "--jobs", "0", "--out", "OUT"], "--jobs 0"),
    (["bench", "accuracy", "--models", "sasrec", "--datasets", "DATA", "--out", "/proc/echorec_x"], "kernel file"),
    (["bench", "speed", "--models", "sasrec", "--lengths", "0", "--out", "OUT"], "--lengths"),
    (["bench", "speed", "--models", "sasrec", "--lengths", "-5", "--out", "OUT"], "--lengths"),
    (["bench", "speed", "--models", "sasrec", "--n-items", "0", "--out", "OUT"], "--n-items 0"),
    (["bench", "speed", "--models", "sasrec", "--amp", "fp8", "--out", "OUT"], "--amp 'fp8'"),
    (["bench", "speed", "--models", "sasrec", "--device", "tpu", "--out", "OUT"], "--device 'tpu'"),
    (["bench", "speed", "--models", "sasrec", "--out", "/proc/echorec_x"], "kernel file system"),
])
def test_bench_mistakes_before_any_work(tmp_path, seq_file, capsys, argv, fragment):
    out = tmp_path / "study"
    argv = [a.replace("DATA", seq_file).replace("OUT", str(out)) for a in argv]
    t0 = time.time()
    assert main(argv) == 2
    one_line_error(capsys, fragment)
    assert not out.exists() and time.time() - t0 < 30  # nothing measured, no study.json


# -- the HTTP service ------------------------------------------------------------------------------------

@pytest.fixture
def client(run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from echorec.serve import Recommender
    from echorec.serve.http import create_app

    with TestClient(create_app(Recommender.from_run(run))) as c:
        yield c


@pytest.mark.parametrize("body, status", [
    ({"history": ["1"], "k": True}, 422),
    ({"history": ["1"], "k": "5"}, 422),
    ({"history": ["1"], "k": 2.0}, 422),
    ({"history": ["1"], "exclude_seen": "yes"}, 422),
    ({"history": ["1"], "exclude_seen": 1}, 422),
    ({"history": ["1"], "k": 2, "exclude_seen": False}, 200),
])
def test_request_fields_are_strictly_typed(client, body, status):
    assert client.post("/recommend", json=body).status_code == status


@pytest.mark.parametrize("content_type, status", [
    ("text/plain", 415), ("multipart/form-data; boundary=x", 415), ("application/x-www-form-urlencoded", 415),
    (None, 415), ("application/json", 200), ("application/json; charset=utf-8", 200),
])
def test_only_json_bodies_are_read(client, content_type, status):
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post("/recommend", content=json.dumps({"history": ["1"], "k": 2}), headers=headers)
    assert r.status_code == status


def test_no_path_is_revealed_and_head_health_answers(client, run, seq_file):
    folder = os.path.dirname(seq_file)
    for path in ("/model", "/openapi.json"):
        text = client.get(path).text
        assert folder not in text and os.path.dirname(run) not in text
    assert client.get("/model").json()["dataset"] == os.path.basename(seq_file)
    assert client.head("/health").status_code == 200


def _server(app, **kw):
    import uvicorn

    from echorec.serve.http import guarded_protocol, listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", http=guarded_protocol(kw.pop("header_timeout")),
                                           **kw))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, sock.getsockname()[1]


def _closed_within(conn, seconds) -> bytes:
    conn.settimeout(seconds)
    data = b""
    try:
        while chunk := conn.recv(4096):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s") from None
    return data


def test_slow_clients_are_cut_off_and_connections_are_capped(run):
    pytest.importorskip("uvicorn")
    from echorec.serve import Recommender
    from echorec.serve.http import BodyLimit, create_app

    app = create_app(Recommender.from_run(run))
    for m in app.user_middleware:  # the body deadline, shortened for the test
        if m.cls is BodyLimit:
            m.kwargs["timeout"] = 1.0
    server, port = _server(app, header_timeout=1.0, limit_concurrency=3, timeout_keep_alive=2)
    try:
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        assert _closed_within(slow, 5) == b""
        body = socket.create_connection(("127.0.0.1", port))
        body.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"hist")
        assert b" 408 " in _closed_within(body, 5)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port))
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        extra.settimeout(5)
        assert b" 503 " in extra.recv(4096)
        for c in idle + [extra, slow, body]:
            c.close()
    finally:
        server.should_exit = True


def test_serve_refuses_an_endless_window_and_stops_on_sigterm(run, capsys):
    import signal
    import subprocess
    import sys

    assert main(["serve", "--run", run, "--max-wait-ms", "inf"]) == 2
    one_line_error(capsys, "--max-wait-ms inf")
    p = subprocess.Popen([sys.executable, "-m", "echorec", "serve", "--run", run, "--port", "0",
                          "--max-wait-ms", "1000"], stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    hold = socket.create_connection(("127.0.0.1", port))
    hold.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n")
    time.sleep(0.3)
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)
    assert time.time() - t0 < 6.5
    hold.close()
