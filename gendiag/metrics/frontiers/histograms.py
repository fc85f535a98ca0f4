"""KL divergence frontiers, the frontier integral and MAUVE.

Orientation (as in mauve-text): P is the real/reference distribution, Q the
model, R_lam = lam P + (1 - lam) Q. The divergence frontier is

  F(P, Q) = {(KL(Q || R_lam), KL(P || R_lam)) : lam in [0, 1]},

the first coordinate the "type I" error (the model puts mass where P has
little: low quality), the second the "type II" error (the model misses P's
mass: low diversity). Both are finite for lam in (0, 1), even for disjoint
supports.

  MAUVE = area under {(exp(-c KL(Q || R_lam)), exp(-c KL(P || R_lam)))},
  closed by (1, 0) and (0, 1); in (0, 1], 1 iff P = Q, larger = closer.
  FI = 2 int_0^1 [lam KL(P || R_lam) + (1 - lam) KL(Q || R_lam)] dlam
     = sum_a m_a g(x_a),  m_a = (p_a + q_a) / 2, x_a = (p_a - q_a) / (p_a + q_a),
  g(x) = 1 - (1 - x^2) artanh(x) / x = sum_{j>=1} 2 x^{2j} / ((2j-1)(2j+1)),
  the closed form per atom of Liu et al. (2021); in [0, 1], 0 iff P = Q,
  1 iff disjoint, smaller = closer. With r = dP/dQ, x = tanh(log(r) / 2), so
  for continuous P, Q:  FI = (E_P[g(x)] + E_Q[g(x)]) / 2.

This module holds the math on histograms (`*_from_histograms`) and on
log density ratios (`ratio_frontier`); `quantized` and `classifier` (in
`gendiag.metrics.frontiers`) turn features into either.

References:
  Pillutla, Swayamdipta, Zellers, Thickstun, Welleck, Choi, Harchaoui. MAUVE:
  Measuring the Gap Between Neural Text and Human Text using Divergence
  Frontiers. NeurIPS 2021 (mauve-text 0.4.0 conventions: c = 5, 25 mixture
  weights linspace(1e-6, 1 - 1e-6), the area averaged over both integration
  directions).
  Liu, Pillutla, Welleck, Oh, Choi, Harchaoui. Divergence Frontiers for
  Generative Models: Sample Complexity, Quantization Effects, and Frontier
  Integrals. NeurIPS 2021.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results

SCALING_FACTOR = 5.0          # mauve-text's `mauve_scaling_factor` c
NUM_WEIGHTS = 25              # mauve-text's `divergence_curve_discretization_size`
WEIGHT_EPS = 1e-6             # the grid's end points: eps and 1 - eps


@_results.result
class Frontier:
  """A divergence frontier and its two summaries.

  Attributes:
    mauve: () area under the exp(-c KL) curve, in (0, 1].
    frontier_integral: () FI in [0, 1].
    weights: (m,) mixture weights lam of R_lam = lam P + (1 - lam) Q.
    kl_generated: (m,) KL(Q || R_lam), non-decreasing in lam.
    kl_real: (m,) KL(P || R_lam), non-increasing in lam.
  """
  mauve: jax.Array
  frontier_integral: jax.Array
  weights: jax.Array
  kl_generated: jax.Array
  kl_real: jax.Array


def mixture_weights(num_weights: int = NUM_WEIGHTS) -> np.ndarray:
  """mauve-text's grid: linspace(1e-6, 1 - 1e-6, num_weights), float64."""
  _checks.check_positive_int(num_weights, "num_weights", minimum=2)
  return np.linspace(WEIGHT_EPS, 1.0 - WEIGHT_EPS, int(num_weights))


def _g(x):
  """g(x) = 1 - (1 - x^2) artanh(x) / x on [-1, 1]; g(0) = 0, g(+-1) = 1.

  A series for |x| < 0.05 (the closed form cancels there), the closed form
  elsewhere, and the limit 1 at |x| = 1 (one of p, q is zero).
  """
  ax = jnp.abs(x)
  x2 = x * x
  series = x2 * (2 / 3 + x2 * (2 / 15 + x2 * (2 / 35 + x2 * (
      2 / 63 + x2 * (2 / 99)))))
  small, edge = ax < 0.05, ax >= 1.0
  safe = jnp.where(small | edge, 0.5, ax)
  closed = 1.0 - (1.0 - safe * safe) * jnp.arctanh(safe) / safe
  return jnp.where(small, series, jnp.where(edge, 1.0, closed))


def _kl_rows(p, r):
  """sum_a p_a log(p_a / r_a) along the last axis (0 log 0 = 0), >= 0.

  The clip removes rounding below 0 (float32 histograms that do not sum to
  exactly 1), which would otherwise put a curve point above y = 1 and out of
  order with the closing point (0, 1).
  """
  return jnp.maximum(jnp.sum(jax.scipy.special.rel_entr(p, r), axis=-1), 0.0)


def mauve_area(kl_generated, kl_real, scaling_factor=SCALING_FACTOR):
  """Area under the MAUVE curve, as mauve-text computes it.

  The curve is (exp(-c KL(Q || R_lam)), exp(-c KL(P || R_lam))) on the lam
  grid, preceded by (1, 0) and followed by (0, 1); the area is the mean of
  the trapezoid rule along x (points sorted by x) and along y (sorted by y),
  `sklearn.metrics.auc` both ways. Ties are broken by lam order (stable
  sorts), which makes MAUVE(P, P) exactly 1.

  Args:
    kl_generated: (m,) KL(Q || R_lam) on increasing lam.
    kl_real: (m,) KL(P || R_lam) on the same grid.
    scaling_factor: c > 0.

  Returns:
    A scalar in (0, 1].
  """
  dtype = jnp.result_type(kl_generated, float)
  one, zero = jnp.ones(1, dtype), jnp.zeros(1, dtype)
  x = jnp.concatenate([one, jnp.exp(-scaling_factor * kl_generated), zero])
  y = jnp.concatenate([zero, jnp.exp(-scaling_factor * kl_real), one])
  xr, yr = x[::-1], y[::-1]
  i = jnp.argsort(xr, stable=True)
  j = jnp.argsort(y, stable=True)
  along_x = jnp.trapezoid(yr[i], xr[i])
  along_y = jnp.trapezoid(x[j], y[j])
  return jnp.minimum(0.5 * (along_x + along_y), 1.0)  # 1 + 2e-16 when P = Q


def frontier_from_histograms(p, q, lam, scaling_factor):
  """The `Frontier` of histograms p, q on the weights `lam` (pure, jittable)."""
  r = lam[:, None] * p + (1.0 - lam[:, None]) * q
  kl_gen, kl_real = _kl_rows(q, r), _kl_rows(p, r)
  return Frontier(mauve=mauve_area(kl_gen, kl_real, scaling_factor),
                  frontier_integral=_fi_from_histograms(p, q), weights=lam,
                  kl_generated=kl_gen, kl_real=kl_real)


def _fi_from_histograms(p, q):
  s = p + q
  x = (p - q) / jnp.where(s > 0, s, 1.0)
  return jnp.sum(0.5 * s * _g(x), axis=-1)


@functools.partial(jax.jit, static_argnames=("num_weights",))
def _frontier_jit(p, q, scaling_factor, num_weights):
  lam = jnp.asarray(mixture_weights(num_weights), p.dtype)
  return frontier_from_histograms(p, q, lam, scaling_factor)


def divergence_frontier_from_histograms(
    p: jax.Array, q: jax.Array, *, scaling_factor: float = SCALING_FACTOR,
    num_weights: int = NUM_WEIGHTS) -> Frontier:
  """The KL frontier of two histograms, with MAUVE and FI.

  KL(Q || R_lam) and KL(P || R_lam) on lam = linspace(1e-6, 1 - 1e-6, m),
  KL(A || B) = sum_{a: A_a > 0} A_a log(A_a / B_a) (finite: B_a > 0 wherever
  A_a > 0 since lam is inside (0, 1)).

  Args:
    p: (k,) real histogram (sums to 1).
    q: (k,) model histogram on the same bins.
    scaling_factor: MAUVE's c (mauve-text: 5).
    num_weights: m, the size of the lam grid (mauve-text: 25).

  Returns:
    Frontier. The MAUVE of mauve-text's `get_divergence_curve_for_multinomials`
    + `auc` and FI of its `get_fronter_integral`, to rounding.

  References:
    Pillutla et al. 2021 (mauve-text 0.4.0 `compute_mauve`).
  """
  _checks.check_probability_vectors(p, q)
  _checks.check_positive_int(num_weights, "num_weights", minimum=2)
  p, q = jnp.asarray(p), jnp.asarray(q)
  dtype = jnp.result_type(p, q, float)
  return _frontier_jit(p.astype(dtype), q.astype(dtype),
                       jnp.asarray(scaling_factor, dtype), int(num_weights))


def mauve_from_histograms(p: jax.Array, q: jax.Array, *,
                          scaling_factor: float = SCALING_FACTOR,
                          num_weights: int = NUM_WEIGHTS) -> jax.Array:
  """MAUVE(P, Q) of two histograms (see `divergence_frontier_from_histograms`).

  Returns:
    A scalar in (0, 1]. Decreasing in c; symmetric on a symmetric grid;
    disjoint supports give c B(c + 1, c) = 1/252 at c = 5 (0.0040721 on the
    25-point grid).
  """
  return divergence_frontier_from_histograms(
      p, q, scaling_factor=scaling_factor, num_weights=num_weights).mauve


@jax.jit
def _fi_jit(p, q):
  return _fi_from_histograms(p, q)


def frontier_integral_from_histograms(p: jax.Array,
                                      q: jax.Array) -> jax.Array:
  """FI(P, Q) = sum_a [(p_a + q_a)/2 - p_a q_a (log p_a - log q_a)/(p_a - q_a)].

  Evaluated as sum_a m_a g(x_a) (module docstring), which is stable when
  p_a ~ q_a and gives (p_a + q_a)/2 when one of them is 0.

  Args:
    p: (k,) real histogram.
    q: (k,) model histogram.

  Returns:
    A scalar in [0, 1]: 0 iff P = Q, 1 iff disjoint supports. Symmetric,
    independent of MAUVE's c, lowered by merging bins (data processing).

  References:
    Liu et al. 2021 (closed form per atom; mauve-text `get_fronter_integral`).
  """
  _checks.check_probability_vectors(p, q)
  p, q = jnp.asarray(p), jnp.asarray(q)
  dtype = jnp.result_type(p, q, float)
  return _fi_jit(p.astype(dtype), q.astype(dtype))


def ratio_frontier(log_ratio_real: jax.Array, log_ratio_generated: jax.Array,
                   *, weights_real=None, weights_generated=None,
                   scaling_factor: float = SCALING_FACTOR,
                   num_weights: int = NUM_WEIGHTS) -> Frontier:
  """The frontier, MAUVE and FI from log density ratios s = log dP/dQ.

  With r = dP/dQ, dP/dR_lam = r / (lam r + 1 - lam), so

    KL(P || R_lam) = E_P[s - log(lam e^s + 1 - lam)],
    KL(Q || R_lam) = -E_Q[log(lam e^s + 1 - lam)],
    FI = (E_P[g(tanh(s/2))] + E_Q[g(tanh(s/2))]) / 2,

  the expectations replaced by (weighted) means over samples of P and Q.
  Sample means can make a KL slightly negative when the ratio estimate is
  off (E_Q[r] != 1); they are clipped at 0. Pure and jittable.

  Args:
    log_ratio_real: (n,) s at samples of P.
    log_ratio_generated: (m,) s at samples of Q.
    weights_real: optional (n,) non-negative weights (e.g. bootstrap counts).
    weights_generated: optional (m,) weights.
    scaling_factor: MAUVE's c.
    num_weights: size of the lam grid.

  Returns:
    Frontier.
  """
  s_p, s_q = jnp.asarray(log_ratio_real), jnp.asarray(log_ratio_generated)
  dtype = jnp.result_type(s_p, float)
  w_p = jnp.ones_like(s_p) if weights_real is None else weights_real
  w_q = jnp.ones_like(s_q) if weights_generated is None else weights_generated
  lam = jnp.asarray(mixture_weights(num_weights), dtype)

  def mean(v, w):
    return jnp.sum(v * w, axis=-1) / jnp.sum(w)

  def log_mix(s):  # (m, n): log(lam e^s + 1 - lam)
    return jnp.logaddexp(jnp.log(lam)[:, None] + s[None, :],
                         jnp.log1p(-lam)[:, None])

  kl_real = jnp.maximum(mean(s_p[None, :] - log_mix(s_p), w_p), 0.0)
  kl_gen = jnp.maximum(-mean(log_mix(s_q), w_q), 0.0)
  fi = 0.5 * (mean(_g(jnp.tanh(s_p / 2)), w_p) +
              mean(_g(jnp.tanh(s_q / 2)), w_q))
  return Frontier(mauve=mauve_area(kl_gen, kl_real, scaling_factor),
                  frontier_integral=fi, weights=lam, kl_generated=kl_gen,
                  kl_real=kl_real)
