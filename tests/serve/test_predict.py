"""`echorec predict`: every user's top-k to a table, checked item for item against Run.recommend on the same
histories (the run's own log read in full), under the rules; a users file, a new log with unknown items, Parquet,
chunk sizes that do not divide the user count, and mistakes that must leave nothing behind."""

import csv
import os

import pytest

import echorec
from echorec.cli import main
from echorec.data.datasets import resolve
from echorec.data.preprocess import load_sequences
from echorec.serve.predict import chunk_users


def read_table(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for r in rows:
        out.setdefault(r["user"], []).append((int(r["rank"]), r["item"], float(r["score"])))
    return out


def histories(run):
    """Every user's whole history in raw ids, as predict reads the run's own log."""
    rc = run.config
    d = load_sequences(resolve(rc.data.dataset), rc.data.format,
                       (rc.data.user_col, rc.data.item_col, rc.data.time_col, rc.data.rating_col))
    return {str(d.user_raw[u]): [str(d.item_raw[i - 1]) for i in d.sequence(u)] for u in range(d.n_users)}


def same_answer(run, hist, got, k, **rules):
    want = run.recommend(hist, k=k, **rules)["items"]
    assert [r for r, _, _ in got] == list(range(1, len(want) + 1))
    assert [i for _, i, _ in got] == [x["item"] for x in want]
    assert [s for _, _, s in got] == pytest.approx([x["score"] for x in want], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("model, arrow", [("sasrec", True), ("mamba4rec", True), ("echomamba4rec", True),
                                          ("sasrec", False)])  # False: the CSV written without pyarrow
def test_every_user_matches_run_recommend(runs, tmp_path, monkeypatch, model, arrow):
    import echorec.serve.predict as P

    monkeypatch.setattr(P, "have_pyarrow", lambda: arrow)
    run = echorec.load_run(runs[model])
    out = tmp_path / "top.csv"
    stats = echorec.predict(runs[model], out, k=5, budget_mb=4 * 31 * 7 / 2**20)  # 7 users a chunk: a ragged end
    got, hist = read_table(out), histories(run)
    assert set(got) == set(hist) and stats["users"] == len(hist) and stats["rows"] == 5 * len(hist)
    for user, h in hist.items():
        same_answer(run, h, got[user], 5)


def test_rules_users_file_and_unknown_users(runs, tmp_path):
    run = echorec.load_run(runs["sasrec"])
    hist = histories(run)
    users = tmp_path / "users.txt"
    chosen = list(hist)[:5]
    users.write_text("\n".join(chosen + ["nobody"]) + "\n")
    out = tmp_path / "top.csv"
    assert main(["predict", "--run", runs["sasrec"], "--out", str(out), "--users", str(users), "-k", "4",
                 "--deny", "item1,item2", "--allow", ",".join(f"item{i}" for i in range(12)), "--progress",
                 "false"]) == 0
    got = read_table(out)
    assert list(got) == chosen + ["nobody"]
    allow = [f"item{i}" for i in range(12)]
    for u in chosen:
        same_answer(run, hist[u], got[u], 4, allow=allow, deny=["item1", "item2"])
    same_answer(run, [], got["nobody"], 4, allow=allow, deny=["item1", "item2"])  # the popularity answer
    # --include-seen: the history's items may come back
    assert main(["predict", "--run", runs["sasrec"], "--out", str(out), "--users", str(users), "--include-seen",
                 "--overwrite", "--progress", "false"]) == 0
    got = read_table(out)
    same_answer(run, hist[chosen[0]], got[chosen[0]], 10, exclude_seen=False)


def test_a_new_log_with_unknown_items_and_parquet(runs, tmp_path):
    pa = pytest.importorskip("pyarrow.parquet")
    run = echorec.load_run(runs["mamba4rec"])
    log = tmp_path / "new.csv"
    log.write_text("user_id,item_id,timestamp\nalice,item3,1\nalice,brand-new,2\nalice,item4,3\nbob,only-new,1\n")
    out = tmp_path / "top.parquet"
    stats = echorec.predict(runs["mamba4rec"], out, data=str(log), k=3)
    t = pa.read_table(out).to_pylist()
    assert stats["fallback_users"] == 1 and [r["user"] for r in t] == ["alice"] * 3 + ["bob"] * 3
    same_answer(run, ["item3", "brand-new", "item4"], [(r["rank"], r["item"], r["score"]) for r in t[:3]], 3)
    same_answer(run, [], [(r["rank"], r["item"], r["score"]) for r in t[3:]], 3)


@pytest.mark.parametrize("args, message", [
    (["-k", "0"], "k must be an integer"),
    (["--users", "NOFILE"], "NOFILE: no such file"),
    (["--data", "NOFILE.csv"], "NOFILE.csv"),
    (["--format", "parquet", "--budget-mb", "0"], "--budget-mb 0"),
])
def test_mistakes_are_one_line_and_write_nothing(runs, tmp_path, capsys, args, message):
    out = tmp_path / "top.csv"
    args = [a.replace("NOFILE", str(tmp_path / "missing")) for a in args]
    assert main(["predict", "--run", runs["sasrec"], "--out", str(out), "--progress", "false", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message.replace("NOFILE", "missing") in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) in ([], ["cache"])  # no table, no temporary file


def test_an_existing_table_needs_overwrite_and_survives_a_failed_job(runs, tmp_path, capsys):
    out = tmp_path / "top.csv"
    out.write_text("yesterday's table\n")
    assert main(["predict", "--run", runs["sasrec"], "--out", str(out), "--progress", "false"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["predict", "--run", runs["sasrec"], "--out", str(out), "--overwrite", "--users",
                 str(tmp_path / "missing.txt"), "--progress", "false"]) == 2
    assert out.read_text() == "yesterday's table\n" and sorted(os.listdir(tmp_path)) == ["cache", "top.csv"]


def test_chunks_follow_the_memory_budget():
    assert chunk_users(100_000, 256) == 256 * 2**20 // (4 * 100_000)
    assert chunk_users(10, 256) == 4096 and chunk_users(10**9, 1) == 1
