"""Filters of 1-D LCNs as binary forms: roots on the Riemann sphere, chordal distance, resultants,
distance to the real discriminant, hyperroots of strided layers and re-distribution of roots.

Conventions (used by every function here and by the diagnostics)
----------------------------------------------------------------
A filter ``w`` of size ``k`` is the binary form of *formal* degree ``n = k - 1``

    F(z, t) = sum_{j=0}^{n} w[j] z^j t^(n-j),        so that F(z, 1) = W(z) = sum_j w[j] z^j.

Its roots are ``n`` points ``[z : t]`` of the complex projective line P^1 (the Riemann sphere),
counted with multiplicity. A vanishing leading coefficient ``w[n] = 0`` is a root at infinity
``[1 : 0]`` (``np.roots`` would silently drop it and return ``n - 1`` roots). A root is stored in
*homogeneous* form, an array ``(..., 2)`` of complex numbers ``(z, t)`` normalised so that
``|z|^2 + |t|^2 = 1`` and ``t`` is real and ``>= 0``; the affine value is ``z / t`` (``inf`` for
``t = 0``). The linear form vanishing at ``[a : b]`` is ``b z - a t`` (coefficients ``(-a, b)``).

Chordal distance (the Riemann sphere of diameter 1, values in ``[0, 1]``):

    chi(p, q) = |p_z q_t - p_t q_z| / (|p| |q|)
              = |a - b| / sqrt((1 + |a|^2)(1 + |b|^2))   for affine a, b,
    chi(a, inf) = 1 / sqrt(1 + |a|^2).

It is invariant under the unitary changes of chart ``[z : t] -> U [z : t]``, ``U in SU(2)``, which is
how :func:`form_roots` stays accurate near infinity: it computes the roots in the real rotated chart
whose point at infinity is farthest from the roots, then rotates back (a real rotation keeps real
roots real and conjugate pairs exactly conjugate).

Strided layers: layer ``l`` enters the end-to-end filter as ``W_l(z^S)`` with ``S = S_{l-1}``; its
roots in ``z`` (the *hyperroots*) are the ``S``-th roots of its roots in ``y = z^S``
(:func:`upsample_roots`); ``0`` and ``inf`` each become ``S``-fold.
"""
from __future__ import annotations

import numpy as np

# -- binary forms and their roots -------------------------------------------------------------------


def _poly_power(c: np.ndarray, p: int) -> np.ndarray:
    out = np.ones(1, dtype=c.dtype)
    for _ in range(p):
        out = np.convolve(out, c)
    return out


def _rotated_form(w: np.ndarray, c: float, s: float) -> np.ndarray:
    """Coefficients (ascending in ``z'``) of ``F(c z' - s t', s z' + c t')``, a real rotation."""
    n = len(w) - 1
    out = np.zeros(n + 1, dtype=np.result_type(w, float))
    for j in range(n + 1):
        if w[j] != 0:
            out += w[j] * np.convolve(_poly_power(np.array([-s, c]), j),
                                      _poly_power(np.array([c, s]), n - j))
    return out


def normalize_points(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Homogeneous points ``(..., 2)`` from coordinates ``z, t`` (see module doc: ``t >= 0`` real,
    unit norm). ``z = t = 0`` gives ``nan``."""
    z = np.asarray(z, dtype=complex)
    t = np.asarray(t, dtype=complex)
    at, az = np.abs(t), np.abs(z)
    with np.errstate(all="ignore"):
        phase = np.where(at > 0, np.conj(t) / np.where(at > 0, at, 1),
                         np.where(az > 0, np.conj(z) / np.where(az > 0, az, 1), np.nan))
        norm = np.sqrt(az ** 2 + at ** 2)
        zz = z * phase / norm
        tt = (t * phase / norm).real + 0j
    return np.stack([zz, tt], axis=-1)


def from_affine(a) -> np.ndarray:
    """Homogeneous points of affine values ``a`` (``inf`` allowed): ``[a : 1]`` or ``[1 : 0]``."""
    a = np.asarray(a, dtype=complex)
    inf = ~np.isfinite(a)
    return normalize_points(np.where(inf, 1.0, a), np.where(inf, 0.0, 1.0))


def to_affine(h: np.ndarray) -> np.ndarray:
    """Affine values ``z / t`` of homogeneous points (``inf + 0j`` where ``t = 0``)."""
    h = np.asarray(h)
    t = h[..., 1].real
    with np.errstate(all="ignore"):
        return np.where(t > 0, h[..., 0] / np.where(t > 0, t, 1), complex(np.inf, 0.0))


def form_roots(w, *, grid: int = 64) -> np.ndarray:
    """The ``n = len(w) - 1`` roots of the binary form of ``w`` (see module doc), shape ``(n, 2)``.

    Exactly vanishing leading (trailing) coefficients are exact roots at infinity (at 0): the form
    is ``t^a z^b G`` and they are split off before ``G`` is solved, so a multiple root there is not
    smeared by the ``eps^(1/m)`` conditioning of multiple roots. The roots of ``G`` are computed in
    a chart: the identity if ``|G(1, 0)|`` is at least a quarter of ``max_phi |G(cos phi, sin phi)|``
    over ``grid`` angles, else the maximising real rotation (its point at infinity is then far from
    every root, so the companion matrix is well scaled); a leading coefficient that is tiny but not
    zero thus still gives a root close to infinity in the chordal metric. The zero form (every point
    a root) gives ``nan`` points.
    """
    w = np.asarray(w)
    if w.ndim != 1:
        raise ValueError("form_roots takes a 1-D coefficient vector")
    n = len(w) - 1
    if n <= 0:
        return np.zeros((0, 2), dtype=complex)
    nonzero = np.flatnonzero(w != 0)
    if nonzero.size == 0:
        return np.full((n, 2), np.nan + 0j)
    at_zero, at_inf = int(nonzero[0]), int(n - nonzero[-1])
    special = [np.array([[0.0 + 0j, 1.0 + 0j]])] * at_zero + [np.array([[1.0 + 0j, 0.0 + 0j]])] * at_inf
    g = w[at_zero: n + 1 - at_inf]
    m = len(g) - 1
    if m == 0:
        return np.concatenate(special)
    phis = np.pi * np.arange(grid) / grid
    j = np.arange(m + 1)
    vals = np.abs((np.cos(phis)[:, None] ** j * np.sin(phis)[:, None] ** (m - j)) @ g)
    best = int(np.argmax(vals))
    phi = 0.0 if vals[0] >= 0.25 * vals[best] else phis[best]
    c, s = np.cos(phi), np.sin(phi)
    rotated = g if phi == 0.0 else _rotated_form(g, c, s)
    r = np.roots(rotated[::-1])
    if len(r) < m:  # cannot happen for the chosen chart unless g is (numerically) tiny
        r = np.concatenate([r, np.full(m - len(r), np.inf)])
    with np.errstate(all="ignore"):
        finite = np.isfinite(r)
        z = np.where(finite, c * r - s, c)
        t = np.where(finite, s * r + c, s)
    return np.concatenate(special + [normalize_points(z, t)])


def forms_roots(W, *, grid: int = 64) -> np.ndarray:
    """:func:`form_roots` of every row of ``W (m, n+1)``: ``(m, n, 2)``, the same numbers.

    The rows :func:`form_roots` solves in the identity chart (no exactly vanishing end
    coefficient, ``|G(1, 0)|`` at least a quarter of the grid maximum) have their companion
    matrices (``np.roots``' own) solved in one batched ``eigvals``; the others go through
    :func:`form_roots` one by one. A trajectory's stored filters are mostly the former.
    """
    W = np.atleast_2d(np.asarray(W, dtype=float))
    m, n = W.shape[0], W.shape[1] - 1
    out = np.empty((m, max(n, 0), 2), dtype=complex)
    if n <= 0 or m == 0:
        return out
    phis = np.pi * np.arange(grid) / grid
    j = np.arange(n + 1)
    basis = np.cos(phis)[:, None] ** j * np.sin(phis)[:, None] ** (n - j)
    batch = []
    for k in range(m):
        w = W[k]
        if w[0] != 0 and w[n] != 0:
            vals = np.abs(basis @ w)  # form_roots' chart test, the same product
            if vals[0] >= 0.25 * vals[int(np.argmax(vals))]:
                batch.append(k)
                continue
        out[k] = form_roots(w, grid=grid)
    if batch:
        P = W[batch][:, ::-1]  # np.roots' descending coefficients, leading one nonzero
        A = np.zeros((len(batch), n, n))
        A[:, np.arange(1, n), np.arange(n - 1)] = 1.0
        A[:, 0, :] = -P[:, 1:] / P[:, :1]
        r = np.linalg.eigvals(A)
        c, s = np.cos(0.0), np.sin(0.0)
        with np.errstate(all="ignore"):
            finite = np.isfinite(r)
            z = np.where(finite, c * r - s, c)
            t = np.where(finite, s * r + c, s)
        out[batch] = normalize_points(z, t)
    return out


def form_from_roots(h: np.ndarray, *, real: bool = True) -> np.ndarray:
    """Coefficients (ascending, formal degree ``len(h)``) of ``prod_r (t_r z - z_r t)``, unit norm.

    With ``real=True`` the roots must be closed under conjugation; the common phase is removed
    (largest coefficient made real positive) and the real part returned.
    """
    out = np.ones(1, dtype=complex)
    for z, t in np.asarray(h).reshape(-1, 2):
        out = np.convolve(out, np.array([-z, t]))
    out = out / np.linalg.norm(out)
    i = int(np.argmax(np.abs(out)))
    out = out * (np.abs(out[i]) / out[i])
    return out.real.copy() if real else out


def upsample(w, S: int) -> np.ndarray:
    """Coefficients of ``W(z^S)``: ``w`` spread out at spacing ``S`` (formal degree ``n S``)."""
    w = np.asarray(w)
    out = np.zeros((len(w) - 1) * S + 1, dtype=w.dtype)
    out[::S] = w
    return out


def upsample_roots(h: np.ndarray, S: int) -> np.ndarray:
    """Hyperroots: the ``n S`` roots in ``z`` of ``F(z^S, t^S)`` from the ``n`` roots ``h`` of ``F``.

    ``[a : b] -> [a^(1/S) zeta^m : b^(1/S)]``, ``m = 0..S-1``, ``zeta = exp(2 pi i / S)``.
    """
    h = np.asarray(h).reshape(-1, 2)
    if S == 1:
        return h.copy()
    zeta = np.exp(2j * np.pi * np.arange(S) / S)
    a = h[:, 0][:, None] ** (1.0 / S) * zeta[None, :]
    b = np.broadcast_to((h[:, 1].real ** (1.0 / S))[:, None], a.shape)
    return normalize_points(a.reshape(-1), b.reshape(-1).astype(complex))


# -- distances ---------------------------------------------------------------------------------------


def chordal_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``chi(p, q) = |p_z q_t - p_t q_z| / (|p| |q|)`` for homogeneous points ``(..., 2)`` (broadcast)."""
    p, q = np.asarray(p), np.asarray(q)
    num = np.abs(p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0])
    return num / (np.linalg.norm(p, axis=-1) * np.linalg.norm(q, axis=-1))


def chordal_distance_affine(a, b) -> np.ndarray:
    """The closed form ``|a - b| / sqrt((1+|a|^2)(1+|b|^2))``, ``1/sqrt(1+|a|^2)`` against ``inf``."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=complex), np.asarray(b, dtype=complex))
    ia, ib = ~np.isfinite(a), ~np.isfinite(b)
    with np.errstate(all="ignore"):
        both = np.abs(a - b) / np.sqrt((1 + np.abs(a) ** 2) * (1 + np.abs(b) ** 2))
        out = np.where(ia & ib, 0.0,
                       np.where(ia, 1 / np.sqrt(1 + np.abs(b) ** 2),
                                np.where(ib, 1 / np.sqrt(1 + np.abs(a) ** 2), both)))
    return out


def pairwise_chordal(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """Matrix ``(n1, n2)`` of chordal distances between two sets of homogeneous points."""
    return chordal_distance(np.asarray(h1)[:, None, :], np.asarray(h2)[None, :, :])


def min_chordal_distance(h1: np.ndarray, h2: np.ndarray) -> float:
    """Smallest chordal distance between a root of one set and a root of the other (``nan`` if a
    set is empty): zero iff the two forms share a root in P^1."""
    if len(h1) == 0 or len(h2) == 0:
        return float("nan")
    return float(np.min(pairwise_chordal(h1, h2)))


def distance_to_infinity(h: np.ndarray) -> np.ndarray:
    """``chi([z : t], [1 : 0]) = |t|`` for normalised points."""
    return np.abs(np.asarray(h)[..., 1])


def distance_to_conjugate(h: np.ndarray) -> np.ndarray:
    """``chi(p, conj p) = 2 |Im z| t`` for normalised points: zero iff ``p`` is real (``inf`` is)."""
    h = np.asarray(h)
    return 2 * np.abs(h[..., 0].imag) * np.abs(h[..., 1])


def is_real_root(h: np.ndarray, tol: float) -> np.ndarray:
    """Root lies on the real projective line: ``chi(p, conj p) <= tol``."""
    return distance_to_conjugate(h) <= tol


# -- resultants --------------------------------------------------------------------------------------


def sylvester_matrix(f, g) -> np.ndarray:
    """Sylvester matrix ``(m+n, m+n)`` of binary forms of formal degrees ``m = len(f)-1``, ``n = len(g)-1``."""
    f, g = np.asarray(f, dtype=float), np.asarray(g, dtype=float)
    m, n = len(f) - 1, len(g) - 1
    M = np.zeros((m + n, m + n))
    for i in range(n):
        M[i, i: i + m + 1] = f
    for i in range(m):
        M[n + i, i: i + n + 1] = g
    return M


def resultant(f, g) -> float:
    """``Res(F, G)`` up to sign: the Sylvester determinant with *formal* degrees, zero iff the forms
    share a root in P^1 (including infinity: both leading coefficients zero)."""
    if len(f) + len(g) == 2:
        return 1.0
    return float(np.linalg.det(sylvester_matrix(f, g)))


def normalized_resultant(f, g) -> float:
    """``|Res(F, G)| / (|f|^n |g|^m)`` in ``[0, 1]`` (Hadamard's inequality on the Sylvester rows),
    invariant under scaling either filter; zero iff a common root. Computed from ``slogdet``."""
    f, g = np.asarray(f, dtype=float), np.asarray(g, dtype=float)
    m, n = len(f) - 1, len(g) - 1
    nf, ng = np.linalg.norm(f), np.linalg.norm(g)
    if nf == 0 or ng == 0:
        return 0.0
    if m + n == 0:
        return 1.0
    sign, logdet = np.linalg.slogdet(sylvester_matrix(f, g))
    if sign == 0:
        return 0.0
    return float(np.exp(logdet - n * np.log(nf) - m * np.log(ng)))


# -- the real discriminant ---------------------------------------------------------------------------


def _double_root_conditions(n: int, phi: np.ndarray) -> np.ndarray:
    """Rows ``(F_z, F_t)`` at ``[cos phi : sin phi]`` as functionals of ``w``: ``(..., 2, n+1)``."""
    j = np.arange(n + 1)
    a, b = np.cos(phi)[..., None], np.sin(phi)[..., None]
    fz = j * a ** np.maximum(j - 1, 0) * b ** (n - j)
    ft = (n - j) * a ** j * b ** np.maximum(n - j - 1, 0)
    return np.stack([fz, ft], axis=-2)


def _squared_distance_to_double_root_at(W: np.ndarray, phi) -> np.ndarray:
    """``d(phi)^2 = r^T (A A^T)^{-1} r`` with ``r = A w``, for filters ``W (..., n+1)`` and angles
    ``phi`` broadcast against ``W``'s leading axes; analytic in ``phi`` (plain transposes, no
    conjugation), so a complex ``phi`` gives complex-step derivatives."""
    W = np.asarray(W)
    A = _double_root_conditions(W.shape[-1] - 1, np.asarray(phi))
    r = (A @ W[..., :, None])[..., 0]
    fz, ft = A[..., 0, :], A[..., 1, :]
    # A A^T = [[p, q], [q, s]] (symmetric, also for complex phi): Cramer's rule, a 2 x 2 system
    p, q, s = np.sum(fz * fz, axis=-1), np.sum(fz * ft, axis=-1), np.sum(ft * ft, axis=-1)
    r0, r1 = r[..., 0], r[..., 1]
    return (s * r0 * r0 - 2 * q * r0 * r1 + p * r1 * r1) / (p * s - q * q)


#: the zero of the slope in a bracket of width 2 pi / grid: this many halvings, then this many
#: regula falsi steps inside the bracket
_HALVINGS = 6
_SECANTS = 6


#: filters per vectorised pass of :func:`distances_to_real_discriminant` (a few MB of work arrays)
DISCRIMINANT_ROWS_AT_ONCE = 256


def distances_to_real_discriminant(W, *, grid: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """:func:`distance_to_real_discriminant` of every row of ``W (m, n+1)`` at once: the distances
    ``(m,)`` and the angles ``phi (m,)`` of the nearest double roots ``[cos phi : sin phi]``
    (``nan`` for ``n <= 1``).

    The same algorithm as the single filter's, vectorised over filters and candidate minima: ``d^2``
    on the common grid of angles, the three best local grid minima of each filter, and the zero of
    ``(d^2)'`` (complex-step derivative) in each bracket ``[phi_i - pi/grid, phi_i + pi/grid]`` whose
    ends have the signs of a minimum, located for all brackets together by a few halvings and then
    regula falsi steps kept inside the bracket (the zero to ~1e-11 in ``phi`` or better; ``d^2`` is
    stationary there, so it agrees with Brent's method to rounding, ~1e-16 ``|w|^2``).
    """
    W = np.atleast_2d(np.asarray(W, dtype=float))
    m, n = W.shape[0], W.shape[1] - 1
    if n <= 1:
        return np.linalg.norm(W, axis=1), np.full(m, np.nan)
    if m > DISCRIMINANT_ROWS_AT_ONCE:  # bounded memory ((rows, grid) arrays); rows are independent
        parts = [distances_to_real_discriminant(W[i:i + DISCRIMINANT_ROWS_AT_ONCE], grid=grid)
                 for i in range(0, m, DISCRIMINANT_ROWS_AT_ONCE)]
        return np.concatenate([d for d, _ in parts]), np.concatenate([a for _, a in parts])
    phis = np.pi * np.arange(grid) / grid
    d2 = _squared_distance_to_double_root_at(W[:, None, :], phis[None, :]).real  # (m, grid)
    best_i = np.argmin(d2, axis=1)
    best_d2 = d2[np.arange(m), best_i].copy()
    best_phi = phis[best_i].copy()
    is_min = (d2 <= np.roll(d2, 1, axis=1)) & (d2 <= np.roll(d2, -1, axis=1))
    rows, cols = [], []
    for k in range(m):  # the three smallest local minima of each filter, smallest first
        c = np.flatnonzero(is_min[k])
        c = c[np.argsort(d2[k, c], kind="stable")][:3]
        rows.extend([k] * len(c))
        cols.extend(c)
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if rows.size:
        step, h = np.pi / grid, 1e-30
        Wc = W[rows]

        def slope(p):
            return _squared_distance_to_double_root_at(Wc, p + 1j * h).imag / h

        lo, hi = phis[cols] - step, phis[cols] + step
        s_lo, s_hi = slope(lo), slope(hi)
        ok = (s_lo < 0) & (0 < s_hi)
        lo, hi, s_lo, s_hi = lo[ok], hi[ok], s_lo[ok], s_hi[ok]
        rows, Wc = rows[ok], Wc[ok]
        # a few halvings (the bracket around the one zero of a smooth slope), then regula falsi
        # steps kept inside the bracket: superlinear from there, the zero to ~1e-15 in phi after
        # _SECANTS steps (56 halvings to adjacent floats cost 4x as many evaluations; d^2 is
        # stationary at the zero, so its value differs from theirs by rounding only)
        for _ in range(_HALVINGS):
            mid = 0.5 * (lo + hi)
            s_mid = slope(mid)
            neg = s_mid < 0
            lo, s_lo = np.where(neg, mid, lo), np.where(neg, s_mid, s_lo)
            hi, s_hi = np.where(neg, hi, mid), np.where(neg, s_hi, s_mid)
        best_x = np.where(np.abs(s_lo) <= np.abs(s_hi), lo, hi)
        best_s = np.minimum(np.abs(s_lo), np.abs(s_hi))
        for _ in range(_SECANTS):
            with np.errstate(all="ignore"):
                x = lo - s_lo * (hi - lo) / (s_hi - s_lo)
            x = np.where(np.isfinite(x) & (x > lo) & (x < hi), x, 0.5 * (lo + hi))
            s_x = slope(x)
            better = np.abs(s_x) < best_s
            best_x, best_s = np.where(better, x, best_x), np.where(better, np.abs(s_x), best_s)
            neg = s_x < 0
            lo, s_lo = np.where(neg, x, lo), np.where(neg, s_x, s_lo)
            hi, s_hi = np.where(neg, hi, x), np.where(neg, s_hi, s_x)
        root = best_x
        v = _squared_distance_to_double_root_at(Wc, root).real
        for k, vk, pk in zip(rows, v, root):  # candidates in the single filter's order
            if vk < best_d2[k]:
                best_d2[k], best_phi[k] = vk, pk
    return np.sqrt(np.maximum(best_d2, 0.0)), best_phi


def distance_to_real_discriminant(w, *, grid: int = 1024) -> tuple[float, np.ndarray | None]:
    """Euclidean distance from ``w`` to the nearest filter (same size) with a *real* root of
    multiplicity ``>= 2`` (on the real projective line, infinity included), and that root.

    For a real point ``x = [a : b]``, the filters with a double root at ``x`` are the linear
    subspace ``{F_z(a, b) = F_t(a, b) = 0}`` (codimension 2), so the distance is
    ``d(x) = sqrt(r^T (A A^T)^{-1} r)`` with ``A`` the two functionals and ``r = A w``; the result is
    ``min_x d(x)``: ``d^2`` on a grid of ``grid`` angles ``x = [cos phi : sin phi]``, then around the
    three best grid minima the zero of ``(d^2)'`` (complex-step derivative), to machine precision in
    ``phi`` (:func:`distances_to_real_discriminant`, which does many filters at once). Size ``<= 2``
    filters (``n <= 1``): ``|w|``.
    """
    w = np.asarray(w, dtype=float)
    if len(w) - 1 <= 1:
        return float(np.linalg.norm(w)), None
    d, phi = distances_to_real_discriminant(w[None], grid=grid)
    return float(d[0]), normalize_points(np.cos(phi[0]), np.sin(phi[0]))


# -- re-distributing roots among layers -------------------------------------------------------------


def _orbits(pool: np.ndarray, avail: list[int], S: int, tol: float):
    """Split the points ``pool[avail]`` into orbits under rotation by ``exp(2 pi i/S)`` and
    conjugation (``0`` and ``inf``: ``S`` equal copies). Returns ``(orbits, blocked)``: index lists,
    and the indices whose orbit is incomplete (they cannot belong to a layer of spacing ``S``)."""
    free = list(avail)
    orbits, blocked = [], []
    zeta = np.exp(2j * np.pi * np.arange(S) / S)
    while free:
        p = free.pop(0)
        P = pool[p]
        special = distance_to_infinity(P) <= tol or abs(P[0]) <= tol
        if special:
            same = [q for q in free if chordal_distance(pool[q], P) <= tol]
            if len(same) >= S - 1:
                members = [p] + same[: S - 1]
                for q in members[1:]:
                    free.remove(q)
                orbits.append(members)
            else:
                blocked.append(p)
            continue
        images = normalize_points(np.concatenate([P[0] * zeta, np.conj(P[0] * zeta)]),
                                  np.full(2 * S, P[1]))
        distinct = [P]
        for im in images:
            if all(chordal_distance(im, d) > tol for d in distinct):
                distinct.append(im)
        members, taken = [p], []
        for im in distinct[1:]:
            dists = [(float(chordal_distance(pool[q], im)), q) for q in free if q not in taken]
            close = [dq for dq in dists if dq[0] <= tol]
            if not close:
                members = None
                break
            q = min(close)[1]
            taken.append(q)
            members.append(q)
        if members is None:
            blocked.append(p)
        else:
            for q in taken:
                free.remove(q)
            orbits.append(members)
    return orbits, blocked


def root_redistributions(layer_roots: list[np.ndarray], spacings: list[int], *, tol: float = 1e-6,
                         max_count: int = 64, max_nodes: int = 20000):
    """Every way of dealing the roots of ``v`` to the layers so that each layer is again a real
    filter of its size in its own variable ``y_l = z^{S_{l-1}}``.

    ``layer_roots[l]``: homogeneous roots ``(k_l - 1, 2)`` of ``W_l`` (in ``y_l``); ``spacings[l] = S_{l-1}``.
    The pool is the multiset of hyperroots of all layers (the roots of ``v``). A layer of spacing
    ``S`` may receive a sub-multiset of size ``(k_l - 1) S`` that is closed under conjugation (real
    coefficients) and under rotation by ``S``-th roots of unity, with ``0`` and ``inf`` ``S``-fold
    (so that it is a polynomial in ``z^S``). Points are matched with chordal tolerance ``tol``.

    Returns ``(pool (N, 2), assignments, truncated)``; an assignment is a list (one per layer) of
    index arrays into ``pool``; the original assignment is among them. At most ``max_count``
    assignments and ``max_nodes`` search nodes (``truncated`` says whether a cap was hit).
    """
    L = len(layer_roots)
    pool_parts = [upsample_roots(r, S) for r, S in zip(layer_roots, spacings)]
    pool = np.concatenate(pool_parts) if pool_parts else np.zeros((0, 2), complex)
    sizes = [len(r) * S for r, S in zip(layer_roots, spacings)]
    order = sorted(range(L), key=lambda l: -spacings[l])
    out: list[list[np.ndarray]] = []
    state = {"nodes": 0, "truncated": False}
    if np.any(~np.isfinite(pool)):
        return pool, out, False

    def rec(pos: int, avail: list[int], chosen: dict):
        state["nodes"] += 1
        if len(out) >= max_count or state["nodes"] > max_nodes:
            state["truncated"] = True
            return
        if pos == L:
            if not avail:
                out.append([np.array(sorted(chosen[l]), dtype=int) for l in range(L)])
            return
        l = order[pos]
        S, m = spacings[l], sizes[l]
        orbs, _ = _orbits(pool, avail, S, tol)
        lens = [len(o) for o in orbs]

        def pick(i: int, need: int, acc: list[int]):
            if state["truncated"]:
                return
            if need == 0:
                rest = [q for q in avail if q not in set(acc)]
                rec(pos + 1, rest, {**chosen, l: acc})
                return
            if i == len(orbs) or sum(lens[i:]) < need:
                return
            if lens[i] <= need:
                pick(i + 1, need - lens[i], acc + orbs[i])
            pick(i + 1, need, acc)
        pick(0, m, [])

    rec(0, list(range(len(pool))), {})
    return pool, out, state["truncated"]


def layer_from_hyperroots(h: np.ndarray, S: int) -> tuple[np.ndarray, float]:
    """The unit-norm real filter ``w`` (in ``y = z^S``) whose hyperroots are ``h`` (``(n S, 2)``),
    and a residual: the size of the coefficients of ``prod (t_r z - z_r t)`` (unit norm) off the
    multiples of ``S`` plus the imaginary part left after removing the common phase (zero iff ``h``
    is the hyperroot set of a real filter)."""
    u = form_from_roots(h, real=False)
    w = u[::S]
    off = float(np.linalg.norm(np.delete(u, np.arange(0, len(u), S))))
    i = int(np.argmax(np.abs(w)))
    w = w * (np.abs(w[i]) / w[i])
    residual = off + float(np.linalg.norm(w.imag))
    return w.real / np.linalg.norm(w.real), residual
