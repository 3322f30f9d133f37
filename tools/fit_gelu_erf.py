#!/usr/bin/env python3
"""Fits the polynomial constants in Sources/Engine/VectorMath.swift (not run by the build or CI).

  ~/.cache/earshot-reference-venv/bin/python tools/fit_gelu_erf.py

1. Exact GELU's erf(x / sqrt 2) as x P(x^2) / Q(x^2) on |x| <= 4 sqrt 2 (erf is +-1 in float32
   beyond): P of degree 6 and Q of degree 4 in x^2, Q(0) = 1, by linearised least squares
   (x P - erf Q = 0) with the 1/Q weights of Sanathanan-Koerner iteration. Prints P, Q and the
   worst GELU error evaluated in float32 as the Swift code does.
2. 2^r on r in [-0.5, 0.5] as 1 + r q(r), q of degree 4, for relative error by Lawson's
   reweighted least squares. Prints the coefficients and the float32 relative error.
"""
import numpy as np
from scipy.special import erf

Z = 4.0  # fit erf(z) on z in [0, Z]; x = z sqrt 2


def fit_erf_rational(p_degree=6, q_degree=4, rounds=30):
    z = np.cos(np.linspace(0, np.pi, 20000)) * Z / 2 + Z / 2
    t, f = z * z, erf(z)
    w = np.ones_like(z)
    for _ in range(rounds):
        a = np.hstack([z[:, None] * t[:, None] ** np.arange(p_degree + 1),
                       -(f[:, None] * t[:, None] ** np.arange(1, q_degree + 1))])
        c, *_ = np.linalg.lstsq(a * w[:, None], f * w, rcond=None)
        p, q = c[:p_degree + 1], np.concatenate([[1], c[p_degree + 1:]])
        w = 1 / np.abs(np.polyval(q[::-1], t))
    # Fold z = x / sqrt 2 into the coefficients: erf(x / sqrt 2) = x P'(x^2) / Q'(x^2).
    s = np.sqrt(2)
    return [p[k] / 2 ** k / s for k in range(len(p))], [q[k] / 2 ** k for k in range(len(q))]


def horner32(coefficients, t):
    acc = np.zeros_like(t)
    for c in coefficients[::-1]:
        acc = (acc * t + np.float32(c)).astype(np.float32)
    return acc


def gelu32(x, p, q):
    limit = np.float32(Z * np.sqrt(2))
    xc = np.clip(x, -limit, limit)
    t = (xc * xc).astype(np.float32)
    half = (np.float32(0.5) * x).astype(np.float32)
    return (half + half * ((xc * horner32(p, t)).astype(np.float32) / horner32(q, t))).astype(np.float32)


def fit_exp2(degree=5, rounds=200):
    r = np.cos(np.linspace(0, np.pi, 20001)) * 0.5
    f = 2 ** r
    a, b = (r[:, None] ** np.arange(1, degree + 1)) / f[:, None], (f - 1) / f
    w = np.ones_like(r)
    for _ in range(rounds):
        c, *_ = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)
        w = w * np.sqrt(np.abs(a @ c - b) + 1e-30)
        w /= w.max()
    return np.concatenate([[1], c])


if __name__ == "__main__":
    p, q = fit_erf_rational()
    print("GELU P (x^0 first):", ", ".join("%.9e" % c for c in p))
    print("GELU Q (x^0 first):", ", ".join("%.9e" % c for c in q))
    x = np.linspace(-12, 12, 2_000_001).astype(np.float32)
    exact = 0.5 * x.astype(np.float64) * (1 + erf(x.astype(np.float64) / np.sqrt(2)))
    print("GELU worst |error| in float32: %.3g" % np.abs(gelu32(x, p, q) - exact).max())
    c = fit_exp2()
    print("2^r (r^0 first):", ", ".join("%.10e" % v for v in c))
    r = np.linspace(-0.5, 0.5, 200_001).astype(np.float32)
    print("2^r worst relative error in float32: %.3g" % np.abs(horner32(c, r) / 2 ** r.astype(np.float64) - 1).max())
