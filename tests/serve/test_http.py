"""Every input rule of the HTTP service through FastAPI's test client; micro-batching."""

import asyncio

import httpx
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from echorec.serve import Recommender  # noqa: E402
from echorec.serve.http import create_app  # noqa: E402


@pytest.fixture(scope="module")
def rec(runs):
    return Recommender.from_run(runs["sasrec"])


@pytest.fixture(scope="module")
def client(rec):
    with TestClient(create_app(rec, max_body=4096)) as c:
        yield c


def test_health_model_and_docs(client, rec):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/model").json()
    assert info["model"] == "sasrec" and info["n_items"] == rec.n_items and info["max_len"] == 8
    assert "/recommend" in client.get("/openapi.json").json()["paths"]


def test_recommend_and_batch(client, rec):
    r = client.post("/recommend", json={"history": ["item1", "item2"], "k": 3})
    assert r.status_code == 200
    assert r.json() == {**rec.recommend(["item1", "item2"], k=3), "n_dropped": 0}
    r = client.post("/recommend", json={"history": ["item1", 999, "nope"], "k": 2})
    assert r.status_code == 200 and r.json()["dropped"] == ["999", "nope"]
    r = client.post("/recommend", json={"history": [], "k": 2})
    assert r.status_code == 200 and r.json()["fallback"] is True
    r = client.post("/recommend/batch", json={"histories": [["item1"], ["nope"]], "k": 2})
    assert r.status_code == 200 and [x["fallback"] for x in r.json()] == [False, True]


@pytest.mark.parametrize("body,status", [
    ({"history": ["item1"], "k": 0}, 422),
    ({"history": ["item1"], "k": 10_000}, 422),
    ({"history": ["item1"], "k": "ten"}, 422),
    ({"history": "item1", "k": 3}, 422),
    ({"history": ["item1"], "kk": 3}, 422),
    ({"histories": [], "k": 3}, 422),
])
def test_bad_requests_are_4xx(client, body, status):
    path = "/recommend/batch" if "histories" in body else "/recommend"
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert "detail" in r.json()


def test_malformed_json_and_oversized_body(client):
    r = client.post("/recommend", content=b'{"history": [1, 2', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = client.post("/recommend", json={"history": ["item1"] * 2000, "k": 2})
    assert r.status_code == 413


def test_concurrent_requests_share_forward_passes(rec):
    app = create_app(rec, max_wait=0.05)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(*[c.post("/recommend", json={"history": [f"item{i % 30}"], "k": 2})
                                        for i in range(20)])
            return rs, app.state.batcher.batches

    rs, passes = asyncio.run(go())
    assert all(r.status_code == 200 for r in rs)
    assert passes < 20  # several requests were scored together
    for i, r in enumerate(rs):
        alone = rec.recommend([f"item{i % 30}"], k=2)
        got = r.json()
        assert [x["item"] for x in got["items"]] == [x["item"] for x in alone["items"]]
        # Batched and single forward passes may differ in the last float bits.
        assert [x["score"] for x in got["items"]] == pytest.approx([x["score"] for x in alone["items"]], rel=1e-5)
