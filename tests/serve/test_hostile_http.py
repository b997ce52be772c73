"""Hostile requests: every one gets a 4xx with a short message (never a 5xx, never the input echoed back),
byte limits hold on the bytes received (chunked too), /health answers while big requests are processed,
and `serve` checks its port before loading anything and announces itself only once it is up."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from echorec.cli import main  # noqa: E402
from echorec.serve import Recommender  # noqa: E402
from echorec.serve.http import MAX_DROPPED, create_app  # noqa: E402

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def rec(runs):
    return Recommender.from_run(runs["sasrec"])


@pytest.fixture(scope="module")
def client(rec):
    with TestClient(create_app(rec, max_body=MAX_BODY), raise_server_exceptions=False) as c:
        yield c


J = {"content-type": "application/json"}
# (path, raw body, status, words the detail must hold)
BODIES = [
    ("/recommend", b'{"history": ["item1"], "k": NaN}', 400, "NaN"),
    ("/recommend", b'{"history": [NaN]}', 400, "NaN"),
    ("/recommend", b'{"history": ["item1"], "k": Infinity}', 400, "Infinity"),
    ("/recommend", b'{"history": ["item1"], "k": -Infinity}', 400, "Infinity"),
    ("/recommend", b'{"history": [1e400]}', 400, "overflows"),
    ("/recommend", b'{"history": ["item1"], "k": 1e400}', 400, "overflows"),
    ("/recommend/batch", b'{"histories": [[1e999]]}', 400, "overflows"),
    ("/recommend", b'{"history": ["\\ud800"]}', 400, "surrogate"),
    ("/recommend", b'{"history": ["item1"], "\\udfff": 1}', 400, "surrogate"),
    ("/recommend", b'{"history": ["ok\xff"]}', 400, "UTF-8"),
    ("/recommend", b'{"history": [' + b"9" * 5000 + b"]}", 400, "digits"),
    ("/recommend", b"[" * 5000 + b"]" * 5000, 400, "nested"),
    ("/recommend", b'{"history": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "nested"),
    ("/recommend", b"", 400, "empty"),
    ("/recommend", b"null", 422, ""),
    ("/recommend", b'"text"', 422, ""),
    ("/recommend", b'{"history": ["item1"], "k": 1.5}', 422, ""),
    ("/recommend", b'{"history": ["item1"], "k": 10000000000000000000000}', 422, ""),
    ("/recommend", b'{"history": [{"a": 1}]}', 422, ""),
    ("/recommend", b'{"history": [true]}', 422, ""),
    ("/recommend", b'{"history": ["item1"], "exclude_seen": "maybe"}', 422, ""),
    ("/recommend/batch", b'{"histories": [["item1"]], "k": 1001}', 422, ""),
    ("/recommend/batch", b'{"histories": "item1"}', 422, ""),
]


@pytest.mark.parametrize("path,body,status,words", BODIES, ids=[f"{i}" for i in range(len(BODIES))])
def test_hostile_bodies_are_4xx_without_echo(client, path, body, status, words):
    r = client.post(path, content=body, headers=J)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in str(detail)
    if status == 422:  # pydantic's messages, without the input they were about
        assert all(set(e) == {"loc", "msg", "type"} for e in detail), detail
    assert len(r.content) < 2000


def test_no_echo_of_a_big_invalid_body(client):
    body = b'{"history": [' + b",".join([b'{"x": "' + b"y" * 50 + b'"}'] * 500) + b"]}"
    assert len(body) < MAX_BODY
    r = client.post("/recommend", content=body, headers=J)
    assert r.status_code == 422 and len(r.content) < 200_000 and b"yyyy" not in r.content


def test_dropped_is_capped_and_counted(client):
    r = client.post("/recommend", json={"history": [f"nope{i}" for i in range(500)] + ["item1"], "k": 2})
    got = r.json()
    assert r.status_code == 200 and got["n_dropped"] == 500 and len(got["dropped"]) == MAX_DROPPED
    assert got["dropped"][:2] == ["nope0", "nope1"]


def test_results_per_request_are_bounded(client, rec):
    k = min(rec.n_items, 20)
    r = client.post("/recommend/batch", json={"histories": [["item1"]] * 1024, "k": k})
    assert r.status_code == (422 if 1024 * k > 100_000 else 200)


def test_model_shows_no_paths_and_docs_are_off_by_default(client, rec, runs):
    info = client.get("/model").json()
    assert runs["sasrec"] not in str(info) and "/" not in str(info.get("run", ""))
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    with TestClient(create_app(rec, docs=True)) as c:
        assert c.get("/docs").status_code == 200


class _Server:
    """The app under a real uvicorn on an ephemeral port, in a thread: the test client cannot show what a
    socket-level upload does."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.01)
        assert self.server.started
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_chunked_upload_is_cut_at_the_limit(rec):
    with _Server(create_app(rec, max_body=MAX_BODY)) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" + b"1," * 4000
        sent, reply = 0, b""
        try:
            while sent < 50 * (1 << 20):  # 50 MB offered; the server must stop us long before
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                s.settimeout(0.001)
                try:
                    reply = s.recv(4096)
                except (TimeoutError, BlockingIOError):
                    continue
                finally:
                    s.settimeout(10)
                if reply:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not reply:
            s.settimeout(10)
            reply = s.recv(4096)
        s.close()
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 8 * MAX_BODY  # cut off near the limit, not after reading everything
        assert httpx.get(f"http://127.0.0.1:{srv.port}/health").status_code == 200


def test_health_answers_while_big_requests_are_processed(rec):
    # Generous bound (the benchmark benchmarks/serve_health.py measures the real figure): /health must not
    # wait for big requests' parsing, scoring or reply writing.
    body = {"histories": [[f"item{(i + j) % 30}" for j in range(40)] for i in range(1024)], "k": 5}
    with _Server(create_app(rec, max_body=4 << 20)) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        done = threading.Event()

        def flood():
            with httpx.Client(timeout=60) as c:
                for _ in range(6):
                    assert c.post(f"{url}/recommend/batch", json=body).status_code == 200
            done.set()

        t = threading.Thread(target=flood)
        t.start()
        worst = 0.0
        with httpx.Client(timeout=60) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                assert c.get(f"{url}/health").status_code == 200
                worst = max(worst, time.perf_counter() - t0)
                time.sleep(0.005)
        t.join()
        assert worst < 2.0, worst


def test_serve_checks_the_port_before_loading(runs, capsys, tmp_path):
    assert main(["serve", "--run", str(tmp_path / "nothing"), "--port", "99999"]) == 2
    assert capsys.readouterr().err.strip() == "error: --port 99999: use 0..65535 (0: any free port)"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        assert main(["serve", "--run", runs["sasrec"], "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "serving" not in err
    finally:
        busy.close()
    assert main(["serve", "--run", str(tmp_path / "nothing"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such run folder" in err and "serving" not in err


def test_listening_socket_says_tcp():
    # asyncio sets TCP_NODELAY on accepted sockets only when the listener's proto is IPPROTO_TCP; with proto 0
    # each reply waited ~40 ms for a delayed ACK (44 ms per /health on loopback, measured).
    from echorec.serve.http import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_serve_announces_once_up(runs):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "echorec", "serve", "--run", runs["sasrec"], "--port", "0"],
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert line.startswith("serving ") and "http://127.0.0.1:" in line, line
        url = line.split(" on ")[1].split()[0]
        assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"  # up when announced
    finally:
        p.terminate()
        p.wait(timeout=30)
