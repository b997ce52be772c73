"""Shape rules of the code base (#40): no function outside the numba and Triton kernels (in the package or
in the benchmark scripts) is longer than 60 lines, and no code comment or help text quotes a measurement
(figures live in benchmarks/results)."""

import ast
import os
import re

import echorec

ROOT = os.path.dirname(echorec.__file__)
BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")
KERNELS = {"_scan_cpu.py", "_scan_triton.py"}  # long straight-line kernels, kept whole for the compilers
MAX_LINES = 60


def _sources():
    for folder, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(folder, f)


def test_no_function_is_longer_than_60_lines():
    long = []
    scripts = sorted(os.path.join(BENCHMARKS, f) for f in os.listdir(BENCHMARKS) if f.endswith(".py"))
    for path in [*_sources(), *scripts]:
        if os.path.basename(path) in KERNELS:
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)


# A timing or a speed-up quoted in prose: "12 ms", "1.4x slower", "-5% at", "38% of a step".
MEASUREMENT = re.compile(r"\b\d+(\.\d+)?\s?(ms|µs|us)\b|\b\d+(\.\d+)?x (faster|slower)|[-+]\d+(\.\d+)?% |"
                         r"\d+(\.\d+)?% of a")


def test_comments_and_docstrings_quote_no_measurements():
    found = []
    for path in _sources():
        text = open(path, encoding="utf-8").read()
        tree = ast.parse(text)
        prose = [(n.lineno, n.value.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Expr) and isinstance(getattr(n, "value", None), ast.Constant)
                 and isinstance(n.value.value, str)]
        prose += [(i, line.split("#", 1)[1]) for i, line in enumerate(text.splitlines(), 1) if "#" in line]
        found += [f"{os.path.relpath(path, ROOT)}:{i}: {m.group(0)!r}" for i, s in prose for m in [MEASUREMENT.search(s)]
                  if m]
    assert not found, "\n".join(found)


def test_the_measurement_pattern_catches_what_it_should():
    for s in ("(with the typed conv: -5% at L = 800)", "0.77 of 1.12 ms per step", "1.4x slower", "38% of a SASRec"):
        assert MEASUREMENT.search(s), s
    for s in ("5 epochs", "max_len 50", "0.5 dropout", "the first 100"):
        assert not MEASUREMENT.search(s), s
