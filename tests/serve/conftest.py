import os

import pytest

from echorec.cli import main

TINY = {"sasrec": ["--hidden", "16", "--inner", "32"],
        "mamba4rec": ["--hidden", "16", "--d-state", "8"],
        "echomamba4rec": ["--hidden", "16", "--d-state", "8"]}


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """One tiny trained run folder per model (1 epoch on a synthetic log with raw string ids)."""
    import numpy as np

    root = tmp_path_factory.mktemp("serve")
    os.environ.setdefault("ECHOREC_CACHE", str(root / "cache"))
    rng = np.random.default_rng(0)
    path = root / "log.csv"
    with open(path, "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for u in range(60):
            item = int(rng.integers(0, 30))
            for t in range(int(rng.integers(5, 15))):
                f.write(f"user{u},item{item},{t}\n")
                item = (item + 1) % 30 if rng.random() < 0.8 else int(rng.integers(0, 30))
    out = {}
    for model, flags in TINY.items():
        d = str(root / model)
        rc = main(["train", "--model", model, "--dataset", str(path), "--out", d, "--epochs", "1", "--max-len", "8",
                   "--progress", "false", *flags])
        assert rc == 0
        out[model] = d
    return out
