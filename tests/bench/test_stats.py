"""The t-test against closed forms (df 1 and 2), a numerical integral of the density, and a hand case."""

import math

import pytest

from echorec.bench.stats import betainc, mean, paired_t, std, t_two_sided_p


@pytest.mark.parametrize("t", [0.1, 0.7, 1.0, 2.5, 8.0, 40.0])
def test_t_tail_closed_forms(t):
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-10)  # Cauchy
    assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-10)


@pytest.mark.parametrize("df", [3, 5, 11])
@pytest.mark.parametrize("t", [0.5, 2.0, 4.0])
def test_t_tail_matches_numerical_integral(df, t):
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    dens = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)  # noqa: E731
    n, hi = 200000, 2000.0  # Simpson on [t, hi]; the tail beyond hi is negligible for these df
    h = (hi - t) / n
    s = dens(t) + dens(hi) + sum((4 if i % 2 else 2) * dens(t + i * h) for i in range(1, n))
    assert t_two_sided_p(t, df) == pytest.approx(2 * s * h / 3, rel=1e-4)


def test_betainc_symmetry_and_edges():
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0
    assert betainc(2.0, 3.0, 0.3) == pytest.approx(1 - betainc(3.0, 2.0, 0.7), rel=1e-12)
    # I_x(1, 1) = x, I_x(2, 1) = x^2
    assert betainc(1.0, 1.0, 0.37) == pytest.approx(0.37)
    assert betainc(2.0, 1.0, 0.37) == pytest.approx(0.37 ** 2)


def test_paired_t_hand_case():
    a, b = [0.30, 0.32, 0.34], [0.20, 0.25, 0.27]  # differences 0.10, 0.07, 0.07
    t, p, n = paired_t(a, b)
    assert n == 3 and t == pytest.approx(8.0)
    assert p == pytest.approx(1 - 8 / math.sqrt(66), rel=1e-9)
    t2, p2, _ = paired_t(b, a)
    assert t2 == pytest.approx(-8.0) and p2 == pytest.approx(p)


def test_small_samples():
    assert math.isnan(paired_t([0.1], [0.2])[1])
    assert math.isnan(std([1.0]))
    assert std([1.0, 3.0]) == pytest.approx(math.sqrt(2)) and mean([1.0, 3.0]) == 2.0
    assert paired_t([2.0, 3.0], [1.0, 2.0])[1] == 0.0  # identical differences (exact in binary)
