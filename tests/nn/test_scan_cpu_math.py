"""The numba kernels' own math (exp2 split, log1p series, sigmoid parts) against numpy in float64."""

import numpy as np
import pytest

numba = pytest.importorskip("numba")
from echorec.nn import _scan_cpu as k  # noqa: E402


def test_exp2_matches_numpy_to_a_few_float32_ulps():
    y = np.linspace(-126.0, 30.0, 200_001).astype(np.float32)
    frac = np.empty_like(y)
    bits = np.empty(y.shape, np.int32)
    k._exp2_parts(y.copy(), frac, bits, y.size)
    got = frac.astype(np.float64) * bits.view(np.float32).astype(np.float64)
    want = np.exp2(y.astype(np.float64))
    rel = np.abs(got - want) / want
    assert rel.max() < 4e-7  # float32 eps is 1.19e-7


def test_exp2_scaled_equals_exp2_of_the_product():
    a = np.linspace(-20.0, -0.01, 64).astype(np.float32)
    frac, bits = np.empty_like(a), np.empty(a.shape, np.int32)
    for s in (np.float32(0.0), np.float32(0.37), np.float32(5.0)):
        k._exp2_scaled(a, s, frac, bits, a.size)
        got = frac.astype(np.float64) * bits.view(np.float32)
        want = np.exp2((s * a).astype(np.float64))
        assert np.all(np.abs(got - want) <= 4e-7 * want)


def test_log1p_series_on_its_range():
    e = np.linspace(0.0, 1.0, 10_001).astype(np.float32)
    got = np.array([k._log1p01(v) for v in e[::7]], dtype=np.float64)
    assert np.abs(got - np.log1p(e[::7].astype(np.float64))).max() < 2e-7


def test_sigmoid_parts_gives_exp_of_minus_abs_and_flushes_far_tails():
    x = np.array([-1e4, -90.0, -20.0, -1.0, 0.0, 0.5, 3.0, 50.0, 1e4], np.float32)
    e, frac, bits = np.empty_like(x), np.empty_like(x), np.empty(x.shape, np.int32)
    k._sigmoid_parts(x, e, frac, bits, x.size)
    # the argument is rounded to float32 first (-|x| log2 e), which alone moves e^-50 by ~1e-6 relative
    want = np.exp2((-np.abs(x) * k.LOG2E).astype(np.float32).astype(np.float64))
    want[np.abs(x) >= 87.0] = 0.0
    assert np.all(np.abs(e - want) <= 4e-7 * want + 1e-45)
    assert e[0] == 0.0 and e[-1] == 0.0
