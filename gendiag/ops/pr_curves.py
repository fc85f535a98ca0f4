"""Precision-recall curves and PR-divergences of discrete distributions.

Orientation as in `gendiag.ops.fdiv`: P is the real distribution, Q the
model. alpha_lam = int min(lam dP, dQ) is the precision at trade-off lam
(Sajjadi et al. 2018; Simon et al. 2019), beta_lam = alpha_lam / lam the
recall, and D_lam-PR = min(lam, 1) - alpha_lam the PR-divergence (Verine et
al. 2023), whose mixtures give every f-divergence of the table
(`gendiag.ops.fdiv.f_divergence_from_pr`).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _results


def concrete_nonpositive(x) -> bool:
  """True when `x` is concrete (not traced) and has an element <= 0."""
  return not isinstance(x, jax.core.Tracer) and bool(np.any(np.asarray(x) <= 0))



def check_distributions(p, q):
  """Raises ValueError unless p, q are probability vectors of one shape."""
  if np.ndim(p) != 1 or np.shape(p) != np.shape(q):
    raise ValueError(
        "`p` and `q` must be 1-D probability vectors of the same length; got "
        f"shapes {np.shape(p)} and {np.shape(q)}.")
  for name, v in (("p", p), ("q", q)):
    if isinstance(v, jax.core.Tracer):
      continue
    v = np.asarray(v, np.float64)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
      raise ValueError(f"`{name}` must be finite and non-negative.")
    if abs(v.sum() - 1.0) > 1e-4:
      raise ValueError(f"`{name}` sums to {v.sum():.6g}, not 1; normalise it "
                       "(e.g. counts / counts.sum()).")


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
  check_distributions(p, q)
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
  check_distributions(p, q)
  if concrete_nonpositive(lam):
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
