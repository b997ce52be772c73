"""One validation pass before anything is written: every invalid choice and out-of-range value of every
field, of every section and of every model's Config, is one `error:` line, exit 2, and no run folder."""

import dataclasses
import typing

import pytest

from echorec.cli import main
from echorec.config import SECTIONS
from echorec.fields import flag_name
from echorec.models import get_model_class, model_names


def bad_values(f: dataclasses.Field, tp) -> list[str]:
    """Values that break field `f`'s declared choices or range (as the strings a user would type)."""
    m = f.metadata or {}
    out = []
    if m.get("choices"):
        out.append("bogus")
    base = typing.get_args(tp)[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) else tp
    step = 1 if base is int else 1e-3
    if m.get("low") is not None:
        out.append(str(m["low"] if m["low_open"] else (int(m["low"]) - 1 if base is int else m["low"] - step)))
    if m.get("high") is not None:
        out.append(str(m["high"] if m["high_open"] else (int(m["high"]) + 1 if base is int else m["high"] + step)))
    if base is float:
        out.append("nan")
    if m.get("item_low") is not None:
        out.append(str(int(m["item_low"]) - 1))
    return out


def cases():
    for sec, cls in SECTIONS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            for v in bad_values(f, hints[f.name]):
                yield pytest.param("sasrec", flag_name(f.name), v, id=f"{sec}.{f.name}={v}")
    for name in model_names():
        cls = get_model_class(name).Config
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            for v in bad_values(f, hints[f.name]):
                yield pytest.param(name, flag_name(f.name), v, id=f"{name}.{f.name}={v}")


CASES = list(cases())


def test_every_constrained_field_is_walked():
    ids = {c.id for c in CASES}
    assert len(CASES) > 80
    for expected in ("train.lr=0", "train.ema=1", "eval.ks=0", "data.train_mode=bogus", "sasrec.dropout=1",
                     "echomamba4rec.combine=bogus", "bsarec.alpha=nan"):
        assert expected in ids


@pytest.mark.parametrize("model,flag,value", CASES)
def test_invalid_setting_is_refused_before_anything_is_written(tmp_path, seq_file, capsys, model, flag, value):
    out = tmp_path / "run"
    rc = main(["train", "--model", model, "--dataset", seq_file, "--out", str(out), flag, value])
    err = capsys.readouterr().err.strip()
    assert rc == 2, (flag, value, err)
    assert err.startswith("error: ") and "\n" not in err and flag in err, err
    assert not out.exists() or not any(out.iterdir())


def test_rules_across_fields(tmp_path, seq_file, capsys):
    for argv, expect in [(["--model", "sasrec", "--hidden", "30", "--heads", "4"], "--heads 4: must divide --hidden 30"),
                         (["--model", "sasrec", "--valid-metric", "ndcg@7"], "--valid-metric"),
                         (["--model", "sasrec", "--device", "gpu"], "--device 'gpu'"),
                         (["--model", "bert4rec", "--loss", "sampled"], "trains with its own objective"),
                         (["--model", "narm", "--loss", "sampled", "--label-smoothing", "0.1"], "--loss full")]:
        out = tmp_path / "run"
        assert main(["train", "--dataset", seq_file, "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expect in err and "\n" not in err, err
        assert not out.exists()
