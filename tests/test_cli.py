"""End to end through the CLI: train -> run folder -> evaluate, determinism, and user mistakes."""

import json
import os

import pytest

from echorec.cli import main

FAST = ["--hidden", "32", "--inner", "64", "--dropout", "0.1", "--attn-dropout", "0.1", "--max-len", "10",
        "--batch-size", "64", "--lr", "0.005", "--progress", "false"]


def train(tmp_path, data, name="run", extra=()):
    out = str(tmp_path / name)
    rc = main(["train", "--model", "sasrec", "--dataset", data, "--out", out, *FAST, *extra])
    return rc, out


def test_train_evaluate_round_trip(tmp_path, inter_file, capsys):
    rc, out = train(tmp_path, inter_file, extra=["--epochs", "8", "--patience", "0"])
    assert rc == 0
    for f in ("config.json", "model.safetensors", "metrics.json", "history.csv", "items.tsv", "users.tsv"):
        assert os.path.exists(os.path.join(out, f)), f
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert set(m) >= {"valid", "test", "best_epoch", "train_seconds"}
    assert {"hit@10", "ndcg@10", "mrr@10", "hit@5", "ndcg@20"} <= set(m["test"])
    # The synthetic users mostly step item -> item + 1: a model that learned anything beats chance (10/40).
    assert m["test"]["hit@10"] > 0.5
    history = open(os.path.join(out, "history.csv")).read().splitlines()
    assert len(history) == 1 + 8 and history[0].startswith("epoch,loss")
    text = capsys.readouterr().out
    assert "run folder:" in text and "NDCG@10" in text
    assert main(["evaluate", "--run", out, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == m["test"]  # exactly, not approximately


def test_same_seed_same_metrics(tmp_path, seq_file):
    _, a = train(tmp_path, seq_file, "a", ["--epochs", "2"])
    _, b = train(tmp_path, seq_file, "b", ["--epochs", "2"])
    ma, mb = (json.load(open(os.path.join(x, "metrics.json"))) for x in (a, b))
    assert ma["test"] == mb["test"] and ma["valid"] == mb["valid"]


def test_all_mode_trains(tmp_path, seq_file):
    rc, out = train(tmp_path, seq_file, "all", ["--epochs", "2", "--train-mode", "all"])
    assert rc == 0 and json.load(open(os.path.join(out, "config.json")))["data"]["train_mode"] == "all"


@pytest.mark.parametrize("content,expect", [
    ("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n", "bad.inter:3: expected 3 fields, got 2"),
    ("", "bad.inter: empty file"),
])
def test_bad_input_leaves_existing_run_untouched(tmp_path, inter_file, capsys, content, expect):
    rc, out = train(tmp_path, inter_file, extra=["--epochs", "1"])
    before = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
    bad = tmp_path / "bad.inter"
    bad.write_text(content)
    capsys.readouterr()
    # Even with --overwrite, a bad input is found before anything of the old run is touched.
    rc = main(["train", "--model", "sasrec", "--dataset", str(bad), "--out", out, "--epochs", "1", "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and expect in err and "\n" not in err
    after = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
    assert after == before


def test_existing_run_is_not_overwritten_without_asking(tmp_path, inter_file, capsys):
    rc, out = train(tmp_path, inter_file, extra=["--epochs", "1"])
    before = open(os.path.join(out, "metrics.json")).read()
    capsys.readouterr()
    rc, _ = train(tmp_path, inter_file, extra=["--epochs", "1", "--seed", "7"])
    assert rc == 2 and "already holds a run" in capsys.readouterr().err
    assert open(os.path.join(out, "metrics.json")).read() == before
    rc, _ = train(tmp_path, inter_file, extra=["--epochs", "1", "--seed", "7", "--overwrite"])
    assert rc == 0 and json.load(open(os.path.join(out, "config.json")))["train"]["seed"] == 7


def test_user_mistakes_are_one_line(tmp_path, inter_file, capsys):
    cases = [
        (["train", "--model", "nosuch", "--out", "x"], "unknown model 'nosuch'"),
        (["train", "--model", "sasrec", "--dataset", inter_file, "--out", "x", "--no-such-flag", "1"], "unrecognized"),
        (["train", "--model", "sasrec", "--dataset", inter_file, "--out", "x", "--epochs", "two"], "expected int"),
        (["train", "--model", "sasrec", "--dataset", str(tmp_path / "missing.csv"), "--out", "x"], "neither a file"),
        (["evaluate", "--run", str(tmp_path / "nothing")], "no such run folder"),
        (["train", "--model", "sasrec", "--dataset", inter_file, "--out", "x", "--min-rating", "9"],
         "no interactions left after --min-rating"),
    ]
    for argv, expect in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expect in err and "\n" not in err, (argv, err)


def test_all_mode_refused_for_bidirectional_model(tmp_path, inter_file, capsys):
    rc = main(["train", "--model", "echomamba4rec", "--dataset", inter_file, "--out", str(tmp_path / "x"),
               "--train-mode", "all"])
    assert rc == 2 and "--train-mode all needs a causal model" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.parametrize("model,extra", [("mamba4rec", ["--train-mode", "all"]), ("echomamba4rec", [])])
def test_mamba_models_train_end_to_end(tmp_path, seq_file, model, extra):
    out = str(tmp_path / model)
    rc = main(["train", "--model", model, "--dataset", seq_file, "--out", out, "--hidden", "16", "--d-state", "8",
               "--epochs", "2", "--max-len", "10", "--progress", "false", *extra])
    assert rc == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert main(["evaluate", "--run", out, "--json"]) == 0
    assert 0 <= m["test"]["ndcg@10"] <= 1


def test_config_file_unknown_key(tmp_path, inter_file, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"train": {"epochs": 1, "learning_rate": 0.1}}))
    assert main(["train", "--config", str(cfg), "--dataset", inter_file, "--out", str(tmp_path / "r")]) == 2
    assert "unknown key(s) learning_rate" in capsys.readouterr().err


def test_tampered_weights_are_a_clear_error(tmp_path, inter_file, capsys):
    _, out = train(tmp_path, inter_file, extra=["--epochs", "1"])
    w = os.path.join(out, "model.safetensors")
    data = open(w, "rb").read()
    open(w, "wb").write(data[: len(data) // 2])
    capsys.readouterr()
    assert main(["evaluate", "--run", out]) == 2
    assert "not a valid safetensors file" in capsys.readouterr().err


def test_data_info_and_models(inter_file, capsys):
    assert main(["data", "info", inter_file]) == 0
    out = capsys.readouterr().out
    assert "users         80" in out and "interactions" in out
    assert main(["models"]) == 0
    assert "sasrec" in capsys.readouterr().out


def test_model_flags_are_not_taken_for_prefixes_of_other_flags(tmp_path, seq_file):
    # BSARec's --c was once read as an abbreviation of --config ("5: no such file").
    out = str(tmp_path / "bsa")
    rc = main(["train", "--model", "bsarec", "--dataset", seq_file, "--out", out, "--hidden", "16", "--max-len", "10",
               "--epochs", "1", "--progress", "false", "--c", "2", "--alpha", "0.7"])
    assert rc == 0
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["model_cfg"]["c"] == 2 and cfg["model_cfg"]["alpha"] == 0.7


def test_version_bench_help_and_suggestions(capsys):
    import echorec

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"echorec {echorec.__version__}"
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "speed" in out
    assert main(["trian"]) == 2
    assert "did you mean 'train'?" in capsys.readouterr().err
    assert main(["bench", "acuracy"]) == 2
    assert "did you mean 'accuracy'?" in capsys.readouterr().err


def test_every_flag_has_a_help_line(capsys):
    """--help of train shows, for every setting, the field's own doc and its default (not a bare default)."""
    from echorec.config import SECTIONS
    from echorec.fields import flag_fields
    from echorec.models import get_model_class, model_names

    for model in model_names():
        n = sum(len(flag_fields(c)) for _, c in SECTIONS) + len(flag_fields(get_model_class(model).Config))
        with pytest.raises(SystemExit):
            main(["train", "--model", model, "--help"])
        out = capsys.readouterr().out
        assert out.count("default:") == n and "Adam's learning rate" in out, model
