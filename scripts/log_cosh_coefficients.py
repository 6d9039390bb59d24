"""Derive the polynomials of the compiled log-cosh loss (``LOG_COSH_Q``, ``TANH_H`` in
``lcnrun/core/_numba_kernels.py``) in exact rational arithmetic, and print them.

On ``|r| < 1``, with ``s = r^2``: ``log cosh r = s Q(s)`` and ``tanh r = r H(s)``, where

    Q(s) = sum_{n>=1} 2^(2n-1) (2^(2n) - 1) B_2n / (n (2n)!) s^(n-1)      (1/2, -1/12, 1/45, ...)
    H(s) = sum_{n>=1} 2^(2n) (2^(2n) - 1) B_2n / (2n)! s^(n-1)            (1, -1/3, 2/15, ...)

(``B_2n``: Bernoulli numbers). Both series converge for ``s < pi^2 / 4``, ratio ``4 / pi^2`` a
term on ``[0, 1]``: the first ``TERMS`` terms leave ``< 1e-33``. Each truncated series is
economized on ``s in [0, 1]`` (its shifted-Chebyshev coefficients above the target degree dropped,
exactly) to degree 15 (Q) and 16 (H); the sum of the dropped coefficients bounds the change on
``[0, 1]`` and is printed in units of ``2^-53`` times the smallest value of each polynomial there
(``Q(1) = log cosh 1``, ``H(1) = tanh 1``). The coefficients are then rounded to doubles.

``python scripts/log_cosh_coefficients.py`` prints the two tuples and the bounds;
tests/test_losses.py checks that the kernel's tuples are exactly these.
"""
from __future__ import annotations

import math
from fractions import Fraction
from math import comb, factorial

TERMS = 90
DEGREES = {"Q": 15, "H": 16}


def bernoulli(m_max: int) -> list[Fraction]:
    """``B_0 .. B_m_max`` (``B_1 = -1/2``) from ``sum_{k<=m} C(m+1, k) B_k = 0``."""
    b = [Fraction(1)]
    for m in range(1, m_max + 1):
        b.append(-sum(comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    return b


def series() -> dict[str, list[Fraction]]:
    """The first ``TERMS`` coefficients of ``Q`` and ``H`` (powers of ``s`` ascending)."""
    b = bernoulli(2 * TERMS)
    q = [Fraction(2 ** (2 * n - 1) * (2 ** (2 * n) - 1)) * b[2 * n] / (n * factorial(2 * n)) for n in range(1, TERMS + 1)]
    h = [Fraction(2 ** (2 * n) * (2 ** (2 * n) - 1)) * b[2 * n] / factorial(2 * n) for n in range(1, TERMS + 1)]
    return {"Q": q, "H": h}


def shifted_chebyshev(n_max: int) -> list[list[Fraction]]:
    """``T*_k(s) = T_k(2 s - 1)``, ``k <= n_max``, as monomial coefficients in ``s``."""
    t = [[Fraction(1)], [Fraction(-1), Fraction(2)]]
    for _ in range(2, n_max + 1):
        prev, last = t[-2], t[-1]
        nxt = [Fraction(0)] * (len(last) + 1)
        for i, c in enumerate(last):  # 2 (2 s - 1) T*_{k-1}
            nxt[i] -= 2 * c
            nxt[i + 1] += 4 * c
        for i, c in enumerate(prev):  # - T*_{k-2}
            nxt[i] -= c
        t.append(nxt)
    return t


def economize(coefs: list[Fraction], degree: int, cheb: list[list[Fraction]]) -> tuple[list[Fraction], Fraction]:
    """Drop the shifted-Chebyshev components above ``degree``: the exact monomial coefficients left
    and the sum of the dropped components' sizes (a bound of the change on ``[0, 1]``)."""
    c = list(coefs)
    dropped = Fraction(0)
    for k in range(len(c) - 1, degree, -1):
        lead = c[k] / cheb[k][k]
        dropped += abs(lead)
        for i in range(k + 1):
            c[i] -= lead * cheb[k][i]
    return c[: degree + 1], dropped


def coefficients() -> dict[str, tuple[tuple[float, ...], float]]:
    """``{"Q": (doubles, dropped bound in units of 2^-53 of the smallest value), "H": ...}``."""
    smallest = {"Q": math.log(math.cosh(1.0)), "H": math.tanh(1.0)}  # Q(1), H(1): both decrease on [0, 1]
    cheb = shifted_chebyshev(TERMS)
    out = {}
    for name, coefs in series().items():
        exact, dropped = economize(coefs, DEGREES[name], cheb)
        out[name] = (tuple(float(x) for x in exact), float(dropped) / smallest[name] / 2.0 ** -53)
    return out


if __name__ == "__main__":
    for name, (values, bound) in coefficients().items():
        print(f"{name}: degree {DEGREES[name]}, dropped part <= {bound:.3g} x 2^-53 of the smallest value")
        print("(" + ", ".join(repr(v) for v in values) + ",)")
