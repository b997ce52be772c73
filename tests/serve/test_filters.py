"""Business rules at serving time: allow and deny lists per request, the server-wide deny file reloaded without
a restart, in the library, the CLI and the HTTP API, each checked against a ranking computed here by hand from
the model's full scores."""

import json
import os
import time

import pytest
import torch

from echorec.cli import main
from echorec.serve import Recommender
from echorec.serve.filters import DenyFile

HISTORY = ["item1", "item2", "item3"]


@pytest.fixture(scope="module")
def rec(runs):
    return Recommender.from_run(runs["sasrec"])


def by_hand(rec, history, k, exclude_seen=True, allow=None, deny=()):
    """The expected answer: every item's score, the rules applied by a plain loop, sorted."""
    known = [rec.index[h] for h in history if h in rec.index]
    with torch.no_grad():
        scores = rec.model.predict(torch.tensor([known[-rec.max_len:]])).float()[0]
    cands = []
    for i in range(1, rec.n_items + 1):
        raw = rec.item_raw[i - 1]
        if (exclude_seen and i in known) or raw in deny or (allow is not None and raw not in allow):
            continue
        cands.append((float(scores[i - 1]), raw))
    cands.sort(key=lambda c: -c[0])
    return [raw for _, raw in cands[:k]]


@pytest.mark.parametrize("k, exclude_seen, allow, deny", [
    (5, True, None, ["item4", "item5", "item6"]),  # denied items gone, still 5 answers
    (3, True, ["item10", "item11", "item12", "item13"], []),  # a small allow list, ranked exactly
    (10, True, ["item10", "item11", "item1"], []),  # fewer allowed than k: all of them (item1 seen: out)
    (10, False, ["item10", "item11", "item1"], []),  # ... unless seen items may come back
    (4, True, ["item10", "item11", "item12", "item13", "item14"], ["item11", "nope"]),  # both; unknown ids ignored
    (3, True, [], []),  # an empty allow list allows nothing
])
def test_rules_apply_inside_the_top_k(rec, k, exclude_seen, allow, deny):
    got = rec.recommend(HISTORY, k=k, exclude_seen=exclude_seen, allow=allow, deny=deny)
    assert [x["item"] for x in got["items"]] == by_hand(rec, HISTORY, k, exclude_seen, allow, deny)


def test_the_popularity_fallback_keeps_the_rules(rec):
    plain = [x["item"] for x in rec.recommend([], k=6)["items"]]
    got = [x["item"] for x in rec.recommend([], k=5, deny=plain[:2])["items"]]
    assert got == plain[2:] + [x["item"] for x in rec.recommend([], k=7)["items"]][6:]
    allowed = [x["item"] for x in rec.recommend([], k=3, allow=plain[3:6][::-1])["items"]]
    assert allowed == plain[3:6]  # ranked by popularity among the allowed


def test_the_server_deny_file_is_reloaded_when_it_changes(rec, tmp_path):
    path = tmp_path / "deny.txt"
    top = [x["item"] for x in rec.recommend(HISTORY, k=3)["items"]]
    path.write_text("\ufeff" + top[0] + "\n\n")  # a BOM and blank lines are not ids
    rec.deny_file = DenyFile(str(path), rec.index, every=0)
    try:
        assert top[0] not in [x["item"] for x in rec.recommend(HISTORY, k=3)["items"]]
        time.sleep(0.01)
        path.write_text(top[1] + "\n")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse clocks
        got = [x["item"] for x in rec.recommend(HISTORY, k=3)["items"]]
        assert top[0] in got and top[1] not in got
        path.write_bytes(b"\xff\xfe broken")  # an unreadable update keeps the last good list
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
        assert top[1] not in [x["item"] for x in rec.recommend(HISTORY, k=3)["items"]]
    finally:
        rec.deny_file = None


def test_the_cli_takes_lists_and_files(runs, rec, tmp_path, capsys):
    allow = tmp_path / "allow.txt"
    allow.write_text("item10\nitem11\nitem12\n")
    assert main(["recommend", "--run", runs["sasrec"], "--history", ",".join(HISTORY), "-k", "2",
                 "--allow", f"@{allow}", "--deny", "item12"]) == 0
    got = [x["item"] for x in json.loads(capsys.readouterr().out)["items"]]
    assert got == by_hand(rec, HISTORY, 2, allow=["item10", "item11", "item12"], deny=["item12"])
    assert main(["recommend", "--run", runs["sasrec"], "--allow", f"@{tmp_path / 'missing.txt'}"]) == 2
    assert "missing.txt: no such file" in capsys.readouterr().err


def test_http_rules_limits_and_the_deny_file(runs, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from echorec.serve.http import MAX_FILTER, create_app

    rec = Recommender.from_run(runs["sasrec"])
    deny = tmp_path / "deny.txt"
    deny.write_text("")
    rec.deny_file = DenyFile(str(deny), rec.index, every=0)
    with TestClient(create_app(rec)) as c:
        body = {"history": HISTORY, "k": 3, "allow": ["item10", "item11", "item12", "item13"], "deny": ["item13"]}
        r = c.post("/recommend", json=body)
        assert r.status_code == 200
        assert [x["item"] for x in r.json()["items"]] == by_hand(rec, HISTORY, 3, allow=body["allow"], deny=["item13"])
        r = c.post("/recommend/batch", json={"histories": [HISTORY, ["item2"]], "k": 2, "deny": ["item4"]})
        assert r.status_code == 200 and all("item4" not in [x["item"] for x in a["items"]] for a in r.json())
        for bad in ({"history": HISTORY, "deny": ["x"] * (MAX_FILTER + 1)}, {"history": HISTORY, "allow": "item1"},
                    {"history": HISTORY, "deny": [True]}):
            assert c.post("/recommend", json=bad).status_code == 422
        first = c.post("/recommend", json={"history": HISTORY, "k": 1}).json()["items"][0]["item"]
        deny.write_text(first + "\n")  # no restart
        os.utime(deny, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert c.post("/recommend", json={"history": HISTORY, "k": 1}).json()["items"][0]["item"] != first
        assert c.get("/health").json()["denied_items"] == 1
