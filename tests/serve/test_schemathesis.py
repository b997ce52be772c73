"""Schemathesis drives every operation of the OpenAPI spec with generated requests: never a 5xx. A second
run poisons each generated body with what JSON encoders let through but JSON data is not (NaN, +-Infinity,
lone surrogates, numbers past a double), at a drawn place: always a 4xx, never the input echoed."""

import json
import math
import os
import tempfile

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

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
# Strings from the whole code-point range (codec None), NUL included.
schema.config.generation.update(codec=None, allow_x00=True)

POISON = st.sampled_from([math.nan, math.inf, -math.inf, "\ud800", "a\udfffb", "\udbff\udc00\udfff"])


def _leaves(obj, path=()):
    """Every place in a JSON value where a scalar sits or could be added: (container path, key or None)."""
    out = [(path, None)] if isinstance(obj, (list, dict)) else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += [(path, k)] + _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += [(path, i)] + _leaves(v, path + (i,))
    return out


def _poison(body, value, where):
    if not isinstance(body, (list, dict)):
        return value
    path, key = where
    target = body
    for p in path:
        target = target[p]
    if key is None:  # add: a new list element, or a value under the key "k" (a real field) of an object
        if isinstance(target, list):
            target.append(value)
        else:
            target["k"] = value
    else:
        target[key] = value
    return body


@schema.parametrize()
@settings(max_examples=60, deadline=None)
def test_no_server_errors(case):
    r = case.call()
    assert r.status_code < 500, (case.body, r.status_code, r.text[:300])


@schema.parametrize()
@schema.given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_poisoned_bodies_are_4xx(case, data):
    if case.body is None or not isinstance(case.body, (list, dict)):
        return  # GET operations have no body to poison
    body = json.loads(json.dumps(case.body))
    body = _poison(body, data.draw(POISON), data.draw(st.sampled_from(_leaves(body))))
    raw = json.dumps(body).encode()  # NaN -> NaN, surrogates -> \\udXXX escapes, as Python's encoder writes them
    r = case.call(data=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (raw[:200], r.status_code, r.text[:300])
    assert len(r.content) < 4000
