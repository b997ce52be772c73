"""Shared fixture of the training tests: a small random sequence log in the `seq` format."""

import numpy as np
import pytest


@pytest.fixture
def data(tmp_path):
    """300 users with 5-14 items each, drawn from 59 items."""
    rng = np.random.default_rng(0)
    path = tmp_path / "log.txt"
    with open(path, "w") as f:
        for u in range(1, 301):
            f.write(f"{u} " + " ".join(str(int(x)) for x in rng.integers(1, 60, size=rng.integers(5, 15))) + "\n")
    return str(path)
