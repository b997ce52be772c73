"""Schemathesis drives every operation of the OpenAPI spec with generated requests: never a 5xx."""

import os
import tempfile

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import settings  # noqa: E402

from echorec.cli import main  # noqa: E402
from echorec.serve import Recommender  # noqa: E402
from echorec.serve.http import create_app  # noqa: E402


def _tiny_run() -> str:
    # Built at import time: schemathesis needs the schema when the module is collected.
    root = tempfile.mkdtemp(prefix="echorec-st-")
    os.environ.setdefault("ECHOREC_CACHE", os.path.join(root, "cache"))
    path = os.path.join(root, "log.txt")
    with open(path, "w") as f:
        for u in range(1, 31):
            f.write(f"{u} " + " ".join(str((u + t) % 20 + 1) for t in range(8)) + "\n")
    out = os.path.join(root, "run")
    assert main(["train", "--model", "sasrec", "--dataset", path, "--out", out, "--epochs", "1", "--hidden", "16",
                 "--inner", "32", "--max-len", "8", "--progress", "false"]) == 0
    return out


schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Recommender.from_run(_tiny_run())))


@schema.parametrize()
@settings(max_examples=60, deadline=None)
def test_no_server_errors(case):
    r = case.call()
    assert r.status_code < 500, (case.body, r.status_code, r.text[:300])
