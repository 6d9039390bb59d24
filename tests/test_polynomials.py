"""Binary forms (``lcnrun.core.polynomials``) against independent values.

- roots: known roots including roots at infinity (a vanishing leading coefficient, which ``np.roots``
  drops), a tiny leading coefficient against the stable quadratic formula, random root sets
  rebuilt by ``polyfromroots`` (hypothesis), and the hyperroots of ``W(z^S)`` against the roots of
  the upsampled filter;
- the chordal distance against the Euclidean distance of the stereographic images on the sphere of
  diameter 1, and its invariance under a real rotation of the chart;
- resultants: zero for a common root (also at infinity), the product formula
  ``Res = a^n b^m prod (r_i - s_j)``, the normalised resultant's range and scale invariance;
- the distance to the real discriminant against a brute-force projection onto the subspaces
  ``{(z - x)^2 q(z)}``;
- root re-distribution: counts by closed form (``C(4, 2)`` for two real quadratics), conjugate pairs
  kept together, the rigidity of strided layers.
"""
from __future__ import annotations

from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import polynomial as P

from lcnrun.core import polynomials as poly


def match_distance(h1, h2) -> float:
    """Largest chordal distance of the best one-to-one matching of two root sets (greedy on sorted
    distances; fine for well-separated roots)."""
    d = poly.pairwise_chordal(h1, h2)
    worst, used = 0.0, set()
    for i in np.argsort(d.min(axis=1)):
        j = min((j for j in range(d.shape[1]) if j not in used), key=lambda j: d[i, j])
        used.add(j)
        worst = max(worst, d[i, j])
    return worst


def from_roots_with_infinity(finite, n_inf: int) -> np.ndarray:
    """Coefficients of the binary form with the given finite roots and ``n_inf`` roots at infinity:
    ``polyfromroots`` padded with zeros (the formal degree counts the roots at infinity)."""
    w = P.polyfromroots(finite).real if len(finite) else np.ones(1)
    return np.concatenate([w, np.zeros(n_inf)])


# -- roots ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("finite, n_inf", [([1.0, 2.0], 1), ([], 2), ([0.0], 1), ([0.5, -3.0, 2.0], 2),
                                           ([1 + 2j, 1 - 2j], 1)])
def test_roots_at_infinity_are_kept(finite, n_inf):
    w = from_roots_with_infinity(finite, n_inf)
    h = poly.form_roots(w)
    assert len(h) == len(w) - 1 == len(finite) + n_inf
    assert np.sum(poly.distance_to_infinity(h) < 1e-12) == n_inf
    expected = poly.from_affine(np.array(list(finite) + [np.inf] * n_inf, dtype=complex))
    assert match_distance(h, expected) < 1e-12
    assert len(np.roots(w[::-1])) < len(h)  # what np.roots alone would have lost


def test_tiny_leading_coefficient_matches_stable_quadratic_formula():
    eps = 1e-14
    w = np.array([1.0, 1.0, eps])  # eps z^2 + z + 1
    # stable formula: q = -(b + sign(b) sqrt(b^2 - 4ac)) / 2, roots q/a and c/q
    a, b, c = eps, 1.0, 1.0
    q = -(b + np.sqrt(b * b - 4 * a * c)) / 2
    exact = poly.from_affine(np.array([q / a, c / q]))
    assert match_distance(poly.form_roots(w), exact) < 1e-15


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(0, 2)), min_size=1, max_size=4),
       st.integers(0, 2), st.integers(0, 3))
def test_random_roots_round_trip(pairs, n_real, n_inf):
    """Real roots, conjugate pairs and roots at infinity rebuilt into coefficients and found again."""
    finite = [x for x, _ in pairs[:n_real]] + [c for x, y in pairs[n_real:] for c in (x + 1j * (y + 0.3), x - 1j * (y + 0.3))]
    h_true = poly.from_affine(np.array(finite + [np.inf] * n_inf, dtype=complex))
    d = poly.pairwise_chordal(h_true, h_true) + np.eye(len(h_true))
    if d.min() < 0.05:  # keep roots well separated (multiple roots are ill-conditioned)
        return
    w = from_roots_with_infinity(finite, n_inf)
    assert match_distance(poly.form_roots(w), h_true) < 1e-8
    assert match_distance(poly.form_roots(poly.form_from_roots(h_true)), h_true) < 1e-8


def test_batched_roots_are_the_roots_of_each_row_bit_for_bit(rng):
    """forms_roots (one batched eigvals over the identity-chart rows) against form_roots row by
    row, with rows that take form_roots' other paths: exact zero end coefficients (roots at 0 and
    infinity), a tiny leading coefficient (a rotated chart), the zero form; and the roots' product
    against the filter's coefficients (Vieta, through form_from_roots)."""
    for n in range(1, 8):
        W = rng.normal(size=(60, n + 1))
        W[::7, 0] = 0.0
        W[::11, -1] = 0.0
        W[::13, -1] *= 1e-9
        W[5] = 0.0
        H = poly.forms_roots(W)
        assert H.shape == (60, n, 2)
        for k, w in enumerate(W):
            np.testing.assert_array_equal(H[k].view(float), poly.form_roots(w).view(float))
            if np.any(w):  # the zero form has no roots to multiply out
                f = poly.form_from_roots(H[k])
                assert abs(abs(f @ w) / np.linalg.norm(w) - 1.0) < 1e-6


def test_real_roots_are_real_and_pairs_conjugate():
    w = P.polyfromroots([1.0, -0.5, 2 + 1j, 2 - 1j]).real
    h = poly.form_roots(w)
    real = poly.is_real_root(h, 1e-12)
    assert real.sum() == 2
    z = poly.to_affine(h[~real])
    assert abs(z[0] - np.conj(z[1])) < 1e-12


@pytest.mark.parametrize("S", [2, 3])
def test_hyperroots_are_the_roots_of_the_upsampled_filter(S):
    w = np.array([0.7, -1.3, 0.4, 0.0])  # a root at infinity too
    direct = poly.form_roots(poly.upsample(w, S))
    via = poly.upsample_roots(poly.form_roots(w), S)
    assert len(direct) == len(via) == (len(w) - 1) * S
    assert match_distance(direct, via) < 1e-6  # the S-fold root at infinity is ill-conditioned


# -- chordal distance ----------------------------------------------------------------------------
def stereographic(a):
    """Image of ``a`` on the sphere of diameter 1 tangent to the plane at 0 (infinity: north pole)."""
    a = np.asarray(a, dtype=complex)
    if not np.isfinite(a):
        return np.array([0.0, 0.0, 1.0])
    return np.array([a.real, a.imag, abs(a) ** 2]) / (1 + abs(a) ** 2)


@pytest.mark.parametrize("a, b", [(0.3 + 1j, -2.0), (5.0, np.inf), (np.inf, np.inf), (1e8, np.inf),
                                  (0.0, 1j), (1 + 1j, 1 - 1j)])
def test_chordal_distance_is_the_euclidean_distance_on_the_riemann_sphere(a, b):
    chord = np.linalg.norm(stereographic(a) - stereographic(b))
    assert poly.chordal_distance_affine(a, b) == pytest.approx(chord, abs=1e-15)
    h = poly.from_affine(np.array([a, b], dtype=complex))
    assert poly.chordal_distance(h[0], h[1]) == pytest.approx(chord, abs=1e-15)


def test_chordal_distance_is_invariant_under_a_rotation_of_the_chart(rng):
    phi = 0.7
    c, s = np.cos(phi), np.sin(phi)
    U = np.array([[c, -s], [s, c]])
    for _ in range(10):
        p, q = rng.standard_normal((2, 2)) + 1j * rng.standard_normal((2, 2))
        assert poly.chordal_distance(U @ p, U @ q) == pytest.approx(poly.chordal_distance(p, q), rel=1e-13)


# -- resultants ----------------------------------------------------------------------------------
def test_resultant_product_formula(rng):
    r, s = rng.standard_normal(3), rng.standard_normal(2)
    a, b = 1.7, -0.6
    f, g = a * P.polyfromroots(r), b * P.polyfromroots(s)
    expected = a ** 2 * b ** 3 * np.prod(r[:, None] - s[None, :])
    assert abs(poly.resultant(f, g)) == pytest.approx(abs(expected), rel=1e-12)


def test_resultant_vanishes_for_a_common_root_also_at_infinity():
    f = P.polyfromroots([0.5, -1.0, 2.0])
    g = P.polyfromroots([2.0, 3.0])
    assert abs(poly.normalized_resultant(f, g)) < 1e-14
    f_inf, g_inf = np.array([1.0, 2.0, 0.0]), np.array([-3.0, 1.0, 0.0])  # both with a root at infinity
    assert poly.normalized_resultant(f_inf, g_inf) == 0.0
    assert poly.normalized_resultant(f_inf, np.array([-3.0, 1.0, 1.0])) > 1e-3


def test_normalized_resultant_is_scale_free_and_at_most_one(rng):
    for _ in range(20):
        f, g = rng.standard_normal(4), rng.standard_normal(3)
        nr = poly.normalized_resultant(f, g)
        assert 0 <= nr <= 1
        assert poly.normalized_resultant(3.1 * f, -0.2 * g) == pytest.approx(nr, rel=1e-12)


# -- distance to the real discriminant -----------------------------------------------------------
def brute_force_distance(w, grid=20001):
    """``min_x dist(w, {(z - x)^2 q(z)})`` over a fine grid of real ``x`` (and ``x = inf``: the
    subspace of filters whose two top coefficients vanish), projecting with a QR factorisation of
    the basis ``(z - x)^2 z^j``."""
    n = len(w) - 1
    xs = np.tan(np.linspace(-np.pi / 2, np.pi / 2, grid)[1:-1])
    base = np.stack([xs ** 2, -2 * xs, np.ones_like(xs)], axis=1)  # (z - x)^2, ascending
    A = np.zeros((len(xs), n + 1, n - 1))
    for j in range(n - 1):
        A[:, j: j + 3, j] = base
    Q, _ = np.linalg.qr(A)
    r = w[None] - np.einsum("gij,gj->gi", Q, np.einsum("gij,i->gj", Q, w))
    return min(float(np.linalg.norm(w[-2:])), float(np.min(np.linalg.norm(r, axis=1))))


@pytest.mark.parametrize("w", [np.array([1.0, 0.0, 1.0]), np.array([1.0, 0.5, 1.0]),
                               np.array([0.3, -1.0, 0.2, 0.5]), np.array([2.0, 0.1, -0.4, 1.0])])
def test_distance_to_real_discriminant_against_brute_force(w):
    d, _ = poly.distance_to_real_discriminant(w)
    assert d == pytest.approx(brute_force_distance(w), rel=1e-4, abs=1e-8)
    assert d <= brute_force_distance(w) + 1e-12  # the brute force only samples x


def test_distance_to_real_discriminant_closed_forms():
    assert poly.distance_to_real_discriminant(np.array([1.0, 0.0, 1.0]))[0] == pytest.approx(1.0, abs=1e-12)
    assert poly.distance_to_real_discriminant(P.polyfromroots([0.4, 0.4, -2.0]))[0] < 1e-12
    assert poly.distance_to_real_discriminant(np.array([1.0, 2.0, 0.0, 0.0]))[0] < 1e-15  # double root at inf


def reference_distance_to_real_discriminant(w, grid=1024):
    """The scalar algorithm as it was before the vectorised one (the independent reference): ``d^2``
    by ``np.linalg.solve`` on the grid, then ``scipy.optimize.brentq`` on the complex-step slope
    around the three best grid minima, one filter and one angle at a time."""
    from scipy.optimize import brentq

    def d2_at(phi):
        phi = np.atleast_1d(phi)
        n = len(w) - 1
        j = np.arange(n + 1)
        a, b = np.cos(phi)[:, None], np.sin(phi)[:, None]
        A = np.stack([j * a ** np.maximum(j - 1, 0) * b ** (n - j),
                      (n - j) * a ** j * b ** np.maximum(n - j - 1, 0)], axis=-2)
        r = A @ w
        x = np.linalg.solve(A @ np.swapaxes(A, -1, -2), r[..., None])[..., 0]
        return np.sum(r * x, axis=-1)

    phis = np.pi * np.arange(grid) / grid
    d2 = d2_at(phis).real
    is_min = (d2 <= np.roll(d2, 1)) & (d2 <= np.roll(d2, -1))
    cand = np.flatnonzero(is_min)
    cand = cand[np.argsort(d2[cand])][:3]

    def slope(p):
        return float(d2_at(p + 1e-30j)[0].imag / 1e-30)

    best, best_phi = float(np.min(d2)), float(phis[np.argmin(d2)])
    for i in cand:
        lo, hi = phis[i] - np.pi / grid, phis[i] + np.pi / grid
        if slope(lo) < 0 < slope(hi):
            p = brentq(slope, lo, hi, xtol=1e-17, rtol=4 * np.finfo(float).eps, maxiter=200)
            v = float(d2_at(p)[0].real)
            if v < best:
                best, best_phi = v, p
    return np.sqrt(max(best, 0.0)), best_phi


def discriminant_cases():
    rng = np.random.default_rng(7)
    cases = [rng.standard_normal(k) for k in (3, 4, 5, 6, 7) for _ in range(12)]
    for _ in range(12):  # a hair off the discriminant: a double real root, perturbed
        r = rng.standard_normal()
        cases.append(P.polyfromroots([r, r, rng.standard_normal()]) + 1e-9 * rng.standard_normal(4))
    return cases + [np.array([1.0, 0.0, 1.0]), np.array([1.0, 2.0, 0.0, 0.0]), np.array([0.5, 1.0, 0.5])]


def test_vectorised_discriminant_distance_equals_the_scalar_brentq_reference():
    """Same distances as the scalar reference to rounding (``|d^2 - d_ref^2| <= 1e-14 |w|^2``), the
    same nearest double root where it is well defined (a minimum with ``d > 1e-6 |w|`` whose
    ``d^2`` is not flat), and the batched call equals the one-filter calls row by row."""
    cases = discriminant_cases()
    for w in cases:
        d, h = poly.distance_to_real_discriminant(w)
        d_ref, phi_ref = reference_distance_to_real_discriminant(w)
        nw2 = float(w @ w)
        assert abs(d ** 2 - d_ref ** 2) <= 1e-14 * nw2
        if d_ref > 1e-6 * np.sqrt(nw2):
            h_ref = poly.normalize_points(np.cos(phi_ref), np.sin(phi_ref))
            assert float(poly.chordal_distance(h, h_ref)) <= 1e-9
    for k in (3, 5):
        W = np.array([w for w in cases if len(w) == k])
        d_all, phi_all = poly.distances_to_real_discriminant(W)
        for w, d, phi in zip(W, d_all, phi_all):
            d1, h1 = poly.distance_to_real_discriminant(w)
            assert d == d1
            assert float(poly.chordal_distance(poly.normalize_points(np.cos(phi), np.sin(phi)), h1)) == 0.0
    # more filters than one vectorised pass takes: the same numbers, row by row
    W = np.array([w for w in cases if len(w) == 3])
    copies = poly.DISCRIMINANT_ROWS_AT_ONCE // len(W) + 2
    d_one, phi_one = poly.distances_to_real_discriminant(W)
    d_all, phi_all = poly.distances_to_real_discriminant(np.concatenate([W] * copies))
    assert len(W) * copies > poly.DISCRIMINANT_ROWS_AT_ONCE
    assert np.array_equal(d_all, np.tile(d_one, copies))
    assert np.array_equal(phi_all, np.tile(phi_one, copies), equal_nan=True)


# -- re-distributing roots -----------------------------------------------------------------------
def roots(*values):
    return poly.from_affine(np.array(values, dtype=complex))


def test_redistribution_of_real_roots_counts_all_partitions():
    pool, asg, truncated = poly.root_redistributions([roots(0.5, -1.2), roots(2.0, 0.3)], [1, 1])
    assert not truncated and len(asg) == comb(4, 2)
    for a in asg:
        for idx in a:
            w, residual = poly.layer_from_hyperroots(pool[idx], 1)
            assert residual < 1e-12


def test_redistribution_keeps_conjugate_pairs_together():
    _, asg, _ = poly.root_redistributions([roots(0.5, -1.2), roots(1 + 1j, 1 - 1j)], [1, 1])
    assert len(asg) == 2  # {real, real | pair} and {pair | real, real}
    pool, asg3, _ = poly.root_redistributions([roots(0.5, -1.2, 3.0), roots(1 + 1j, 1 - 1j, 0.1)], [1, 1])
    assert len(asg3) == comb(4, 1) * 1 + comb(4, 3)  # layer 1 gets the pair + 1 real root, or 3 real roots


def test_strided_layers_are_rigid_unless_roots_come_in_orbits():
    _, asg, _ = poly.root_redistributions([roots(0.5, -1.2), roots(2.0, 0.3)], [1, 2])
    assert len(asg) == 1  # generic: the factorization W_1(z) W_2(z^2) is unique
    pool, asg, _ = poly.root_redistributions([roots(0.5, -0.5), roots(2.0)], [1, 2])
    assert len(asg) == 2  # W_1 = z^2 - 1/4 is itself a polynomial in z^2: it can swap with W_2
    for a in asg:
        _, residual = poly.layer_from_hyperroots(pool[a[1]], 2)
        assert residual < 1e-12
