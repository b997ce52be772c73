"""Shared fixtures of the training tests: a small random sequence log in the `seq` format, a small SASRec's
flags, and a check that a bad setting is refused with a one-line error before anything is written."""

import numpy as np
import pytest

from echorec.cli import main

# A SASRec small enough that one epoch on `data` takes well under a second.
_SMALL_SASREC = ["--model", "sasrec", "--hidden", "16", "--inner", "32", "--max-len", "10", "--batch-size", "32",
                 "--threads", "2", "--progress", "false", "--patience", "0", "--seed", "3"]


@pytest.fixture
def data(tmp_path):
    """300 users with 5-14 items each, drawn from 59 items."""
    rng = np.random.default_rng(0)
    path = tmp_path / "log.txt"
    with open(path, "w") as f:
        for u in range(1, 301):
            f.write(f"{u} " + " ".join(str(int(x)) for x in rng.integers(1, 60, size=rng.integers(5, 15))) + "\n")
    return str(path)


@pytest.fixture
def small_sasrec() -> list[str]:
    """The flags of a small, seeded SASRec that trains without early stopping."""
    return list(_SMALL_SASREC)


@pytest.fixture
def refused(tmp_path, data, capsys):
    """refused(*flags) trains one epoch of small_sasrec on `data` with the extra flags, asserts the CLI's user-error
    exit (2) with no traceback and no run folder, and returns stderr for the caller to check the message."""

    def run(*flags: str) -> str:
        out = tmp_path / "refused"
        assert main(["train", "--dataset", data, *_SMALL_SASREC, "--epochs", "1", *flags, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert not out.exists()
        return err

    return run
