"""Small statistics for study tables: mean/std, the two-sided paired t-test, no SciPy needed.

The t distribution's tail is the regularized incomplete beta function, evaluated with the usual
continued fraction (modified Lentz); tests check it against closed forms for 1 and 2 degrees of
freedom and against a numerical integral of the density.
"""

from __future__ import annotations

import math


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: list[float]) -> float:
    """Sample standard deviation (n - 1); NaN for fewer than two values."""
    if len(xs) < 2:
        return float("nan")
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))  # even step
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))  # odd step
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def paired_t(a: list[float], b: list[float]) -> tuple[float, float, int]:
    """Two-sided paired t-test of a vs b (same seeds, same order): (t, p, n). NaN when n < 2."""
    n = len(a)
    if n != len(b):
        raise ValueError("paired_t: a and b differ in length")
    if n < 2:
        return float("nan"), float("nan"), n
    d = [x - y for x, y in zip(a, b)]
    sd = std(d)
    if sd == 0.0:  # identical differences: the test is degenerate; no spread means certain unless all zero
        return (float("inf") if mean(d) else 0.0), (0.0 if mean(d) else 1.0), n
    t = mean(d) / (sd / math.sqrt(n))
    return t, t_two_sided_p(t, n - 1), n
