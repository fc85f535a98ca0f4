"""PR curves, PR-divergences and f-divergences of discrete distributions.

Orientation as in `gendiag.ops.fdiv`: P is the real distribution, Q the
model.

Mixture theorem (Verine et al. 2023): for every f in the table

  D_f(P || Q) = int_0^inf D_lam-PR(P || Q) w(lam) dlam + sum_atoms mass D_lam,

where D_lam-PR = min(lam, 1) - alpha_lam and alpha_lam = int min(lam dP, dQ)
is the precision at trade-off lam (Sajjadi et al. 2018; Simon et al. 2019);
the recall is beta_lam = alpha_lam / lam. `f_divergence_from_pr` evaluates
the right-hand side by quadrature; `f_divergence` the left-hand side.
"""

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.ops import fdiv


def angle_slopes(num_angles: int, epsilon: float = 1e-10) -> np.ndarray:
  """The trade-offs lam = tan(theta), theta evenly spaced in (0, pi/2).

  Sajjadi et al.'s grid: theta = linspace(epsilon, pi/2 - epsilon,
  num_angles). Computed in float64 numpy (float32 pi/2 overshoots and its
  tangent is negative), so it is a static constant under `jit`.
  """
  if num_angles < 3:
    raise ValueError(f"`num_angles` must be >= 3; got {num_angles}.")
  return np.tan(np.linspace(epsilon, math.pi / 2 - epsilon, num_angles))


def max_f_beta(precision, recall, *, beta: float = 8.0):
  """Sajjadi et al.'s summary of a PR curve: (max F_beta, max F_1/beta).

  F_beta(p, r) = (1 + beta^2) p r / (beta^2 p + r + 1e-10). With beta = 8,
  F_8 weights recall (it is high only if the model covers the real data) and
  F_1/8 weights precision (high only if the samples are realistic).

  Args:
    precision: (num_angles,) precisions in [0, 1].
    recall: (num_angles,) recalls in [0, 1].
    beta: > 0.

  Returns:
    (F_beta, F_1/beta), scalars.
  """
  if beta <= 0:
    raise ValueError(f"`beta` must be > 0; got {beta}.")

  def f(p, r, b):
    return (1 + b ** 2) * p * r / (b ** 2 * p + r + 1e-10)

  return jnp.max(f(precision, recall, beta)), jnp.max(f(recall, precision,
                                                        beta))


@_results.result
class PRCurve:
  """A precision-recall curve and its F_8 / F_1/8 summary.

  Attributes:
    precision: (num_angles,) alpha(lam) on the angle grid.
    recall: (num_angles,) beta(lam) = alpha(lam) / lam.
    slopes: (num_angles,) the trade-offs lam = tan(theta).
    f_beta: max F_8: recall-like summary (Sajjadi et al.'s "recall").
    f_inv_beta: max F_1/8: precision-like summary.
  """
  precision: jax.Array
  recall: jax.Array
  slopes: jax.Array
  f_beta: jax.Array
  f_inv_beta: jax.Array


def curve_from_precision(precision, slopes, *, beta: float = 8.0) -> PRCurve:
  """Builds a PRCurve from alpha(lam) on `slopes`, clipped to [0, 1]."""
  slopes = jnp.asarray(slopes, precision.dtype)
  recall = jnp.clip(precision / slopes, 0.0, 1.0)
  precision = jnp.clip(precision, 0.0, 1.0)
  f_b, f_ib = max_f_beta(precision, recall, beta=beta)
  return PRCurve(precision=precision, recall=recall, slopes=slopes, f_beta=f_b,
                 f_inv_beta=f_ib)


@functools.partial(jax.jit, static_argnames=("num_angles", "beta"))
def _pr_curve(p, q, num_angles, beta):
  slopes = jnp.asarray(angle_slopes(num_angles), p.dtype)
  precision = jnp.sum(jnp.minimum(slopes[:, None] * p[None, :], q[None, :]),
                      axis=1)
  return curve_from_precision(precision, slopes, beta=beta)


def pr_curve(p: jax.Array, q: jax.Array, *, num_angles: int = 1001,
             beta: float = 8.0) -> PRCurve:
  """The exact PR curve of two discrete distributions (Sajjadi et al. 2018).

  alpha(lam) = sum_i min(lam p_i, q_i),  beta(lam) = alpha(lam) / lam,

  on lam = tan(theta) for `num_angles` angles theta in (0, pi/2), both clipped
  to [0, 1]. alpha(1) = 1 - TV(P, Q); max precision Q(supp P); max recall
  P(supp Q).

  Args:
    p: (k,) real distribution (Sajjadi's `ref_dist`).
    q: (k,) model distribution (Sajjadi's `eval_dist`).
    num_angles: points on the curve (1001 in the reference code).
    beta: the F_beta summary's beta.

  Returns:
    PRCurve.

  References:
    Sajjadi, Bachem, Lucic, Bousquet, Gelly. Assessing Generative Models via
    Precision and Recall. NeurIPS 2018 (`compute_prd`, epsilon = 1e-10).
  """
  _checks.check_probability_vectors(p, q)
  p, q = jnp.asarray(p), jnp.asarray(q)
  return _pr_curve(p, q, num_angles=int(num_angles), beta=float(beta))


def pr_precision(p: jax.Array, q: jax.Array, lam) -> jax.Array:
  """alpha_lam = sum_i min(lam p_i, q_i); `lam` a scalar or any array."""
  lam = jnp.asarray(lam)
  return jnp.sum(jnp.minimum(lam[..., None] * p, q), axis=-1)


def pr_divergence(p: jax.Array, q: jax.Array, *, lam) -> jax.Array:
  """The PR-divergence D_lam(P || Q) = min(lam, 1) - alpha_lam.

  Equal to E_Q[f_lam(p/q)] + lam P(q = 0), with f_lam(u) = max(lam u, 1) -
  max(lam, 1); in [0, min(lam, 1)], 0 iff alpha_lam is as large as it can be.
  Symmetry: D_lam(P || Q) = lam D_{1/lam}(Q || P).

  Args:
    p: (k,) real distribution.
    q: (k,) model distribution.
    lam: trade-off > 0, a scalar or an array (one value per element).

  Returns:
    An array shaped like `lam`.

  References:
    Verine, Negrevergne, Pydi, Chevaleyre. Precision-Recall Divergence
    Optimization for Generative Modeling with GANs and Normalizing Flows.
    NeurIPS 2023.
  """
  _checks.check_probability_vectors(p, q)
  if fdiv.concrete_nonpositive(lam):
    raise ValueError(f"`lam` must be > 0; got {lam}.")
  return pr_divergence_unchecked(jnp.asarray(p), jnp.asarray(q), jnp.asarray(lam))


def pr_divergence_unchecked(p, q, lam):
  """min(lam, 1) - alpha_lam as a sum of non-negative terms (no input checks).

  With sum p = sum q = 1 it equals sum_i (lam p_i - q_i)_+ for lam <= 1 and
  sum_i (q_i - lam p_i)_+ for lam > 1: exactly 0 where no mass is in excess,
  and free of the cancellation that the weights' 1/lam^3 would amplify.
  """
  lam = lam[..., None]
  excess = jnp.where(lam <= 1.0, lam * p - q, q - lam * p)
  return jnp.sum(jnp.maximum(excess, 0.0), axis=-1)


def f_divergence(p: jax.Array, q: jax.Array, div: fdiv.FDivergence) -> jax.Array:
  """D_f(P || Q) of discrete distributions, boundary terms included.

  D_f = sum_{q_i > 0} q_i f(p_i / q_i) + f'(inf) P(q = 0)

  (0 * inf = 0). May be inf (e.g. KL when Q misses part of P's support).

  Args:
    p: (k,) real distribution.
    q: (k,) model distribution.
    div: an `fdiv.FDivergence` (e.g. `fdiv.DIVERGENCES["kl"]`).

  Returns:
    A scalar.
  """
  _checks.check_probability_vectors(p, q)
  p, q = jnp.asarray(p), jnp.asarray(q)
  pos = q > 0
  terms = jnp.where(pos, q * div.f(p / jnp.where(pos, q, 1.0)), 0.0)
  missed = jnp.sum(jnp.where(pos, 0.0, p))
  boundary = jnp.where(missed > 0, div.slope_at_infinity * missed, 0.0)
  return jnp.sum(terms) + boundary


def mixture_integral(d_lam: Callable[[jax.Array], jax.Array],
                     div: fdiv.FDivergence, *, lam_min: float = 1e-8,
                     lam_max: float = 1e8,
                     num_points: int = 20001) -> jax.Array:
  """int D_lam w(lam) dlam + sum_atoms mass D_atom: the mixture theorem's RHS.

  The integral runs over log lam (trapezoid rule on `num_points` points in
  [lam_min, lam_max]): int D_lam w(lam) lam dlog(lam). Mass outside that range
  is dropped; D_lam is piecewise linear for discrete P, Q, so the rule's error
  is O(h^2).

  Args:
    d_lam: maps an array of lam to D_lam-PR(P || Q) (same shape).
    div: the `fdiv.FDivergence` whose mixture weight is used.
    lam_min, lam_max: the integration range.
    num_points: quadrature points.

  Returns:
    A scalar, equal to D_f(P || Q) up to quadrature and truncation error.
  """
  s = np.linspace(math.log(lam_min), math.log(lam_max), num_points)
  lam = jnp.asarray(np.exp(s), jnp.float32)
  integrand = d_lam(lam) * div.pr_weight(lam) * lam
  h = float(s[1] - s[0])
  total = h * (jnp.sum(integrand) - 0.5 * (integrand[0] + integrand[-1]))
  for atom, mass in div.pr_atoms:
    total = total + mass * d_lam(jnp.asarray(atom, jnp.float32))
  return total


def f_divergence_from_pr(p: jax.Array, q: jax.Array, div: fdiv.FDivergence,
                         **quadrature) -> jax.Array:
  """D_f(P || Q) of discrete distributions as a mixture of PR-divergences.

  Numerical evidence of Verine et al.'s theorem: this equals
  `f_divergence(p, q, div)` up to quadrature error.

  Args:
    p: (k,) real distribution.
    q: (k,) model distribution.
    div: an `fdiv.FDivergence`.
    **quadrature: `mixture_integral`'s lam_min, lam_max, num_points.

  Returns:
    A scalar.
  """
  _checks.check_probability_vectors(p, q)
  p, q = jnp.asarray(p), jnp.asarray(q)
  return mixture_integral(lambda lam: pr_divergence_unchecked(p, q, lam), div,
                          **quadrature)
