"""The global temporal split: no event at or after T1 trains or enters a training input; valid targets lie in
[T1, T2), test targets from T2 on, each with only its user's earlier events as history; the split points
take fractions, epoch numbers and ISO dates; the CLI trains and evaluates with it."""

import json
import os

import numpy as np
import pytest

from echorec.cli import main
from echorec.data.preprocess import load_sequences
from echorec.data.split import parse_time, time_split
from echorec.errors import EchorecError


@pytest.fixture
def timed_log(tmp_path):
    """60 users whose events are spread over 100 days, interleaved in time across users."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(60):
        t = np.sort(rng.uniform(0, 100 * 86400, size=rng.integers(2, 25))) + 1.6e9
        rows += [(f"u{u}", f"i{rng.integers(40)}", int(x)) for x in t]
    rng.shuffle(rows)
    path = tmp_path / "timed.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return str(path)


def test_no_future_event_trains_or_enters_a_history(timed_log):
    data = load_sequences(timed_log)
    split = time_split(data, "0.6", "0.8")
    t = data.times
    t1, t2 = parse_time("0.6", t, "x"), parse_time("0.8", t, "x")
    for mode in ("prefix", "all", "bsarec"):
        start, end = split.train_samples(mode, 50)
        for s, e in zip(start, end):
            assert (t[s:e + 1] < t1).all()  # inputs and the target
    for which, lo, hi in (("valid", t1, t2), ("test", t2, np.inf)):
        start, end = split.eval_samples(which)
        users = split.eval_sample_users(which)
        assert len(end) > 0 and ((t[end] >= lo) & (t[end] < hi)).all()
        for u, s, e in zip(users, start, end):
            assert data.offsets[u] == s < e < data.offsets[u + 1]  # own history only, at least one event
            assert (t[s:e] <= t[e]).all()
    # every event of the right period with some history is a target: none is dropped
    hist = np.arange(len(t)) > np.repeat(data.offsets[:-1], np.diff(data.offsets))
    assert len(split.eval_samples("valid")[1]) == ((t >= t1) & (t < t2) & hist).sum()


def test_split_points_in_every_form(timed_log):
    data = load_sequences(timed_log)
    t = data.times
    iso = "2020-10-01T00:00:00Z"
    assert parse_time(iso, t, "x") == 1601510400 == parse_time("2020-10-01", t, "x")
    assert parse_time("1601510400", t, "x") == parse_time("1601510400000", t, "x") == 1601510400
    assert parse_time("0.5", t, "x") == pytest.approx((t.min() + t.max()) / 2)
    with pytest.raises(EchorecError, match="--valid-from 'soon'"):
        parse_time("soon", t, "--valid-from")
    with pytest.raises(EchorecError, match="must come before"):
        time_split(data, "0.9", "0.5")


def test_cli_trains_and_evaluates_on_the_time_split(tmp_path, timed_log, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "--model", "sasrec", "--dataset", timed_log, "--out", out, "--split", "time",
                 "--valid-from", "0.6", "--test-from", "0.8", "--epochs", "1", "--hidden", "16", "--progress",
                 "false"]) == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert 0 <= m["test"]["ndcg@10"] <= 1
    capsys.readouterr()
    assert main(["evaluate", "--run", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == m["test"]  # the run folder re-creates the same split


@pytest.mark.parametrize("argv,message", [
    (["--split", "time"], "--split time needs --valid-from and --test-from"),
    (["--valid-from", "0.5"], "go with --split time"),
])
def test_split_settings_are_checked_before_anything_is_written(tmp_path, timed_log, capsys, argv, message):
    out = tmp_path / "r"
    assert main(["train", "--model", "sasrec", "--dataset", timed_log, "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_a_log_without_times_is_refused(tmp_path, seq_file, capsys):
    out = tmp_path / "r"
    assert main(["train", "--model", "sasrec", "--dataset", seq_file, "--out", str(out), "--split", "time",
                 "--valid-from", "0.5", "--test-from", "0.8"]) == 2
    assert "needs timestamps" in capsys.readouterr().err and not out.exists()
