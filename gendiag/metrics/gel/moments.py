"""Moment features and problem assembly for GEL (`gendiag.metrics.gel`).

  moment_features  phi(x): the raw rows, or kernel features k(x, w_j) at J
                   witness rows, computed in row blocks
  whitening        pooled centring and whitening (an invertible map of the
                   moments, so GEL's solution is unchanged)
  stacked          the two-sample problem as one one-sample problem on the
                   pooled rows z = s [phi, 1], s = -1 (real) / +1 (generated)
  solve            L-BFGS, then Newton from its iterate (`gel_dual.solve`)
  split            per-set weights, divergences and statistic of a solution

Conventions are documented in `gendiag.metrics.gel`.
"""

import dataclasses
from typing import Optional, Union

import jax
from jax import lax
import jax.numpy as jnp

from gendiag.metrics.gel import dual as gel_dual
from gendiag.ops import distances
from gendiag.ops import kernels

HIGHEST = lax.Precision.HIGHEST
MOMENTS = ("kernel", "raw")
KERNEL_NAMES = ("exponential", "gaussian", "imq", "laplace")
LBFGS_ITERATIONS = 50  # first phase of `solve`

KernelSpec = Union[str, distances.Kernel]


def _kernel_features(pooled, witnesses, kernel, scale, block_size):
  """(N, J) kernel features of the pooled rows."""
  if kernel == "exponential":
    factor = scale / pooled.shape[1]
    logits = distances.map_row_blocks(
        lambda xb, _: factor * jnp.matmul(xb, witnesses.T, precision=HIGHEST),
        pooled, block_size=block_size)
    # exp(logit - max over rows) per witness: a per-column rescaling, which
    # GEL ignores (so it carries no gradient), keeps every feature in (0, 1].
    return jnp.exp(logits - lax.stop_gradient(jnp.max(logits, axis=0)))
  if isinstance(kernel, str):
    kernel = kernels.KERNELS[kernel](kernels.median_heuristic(pooled))
  return distances.map_row_blocks(lambda xb, _: kernel(xb, witnesses), pooled,
                                  block_size=block_size)


def moment_features(real: jax.Array, generated: jax.Array, *,
                    moments: str = "kernel",
                    witnesses: Optional[jax.Array] = None,
                    kernel: KernelSpec = "exponential", scale: float = 1.0,
                    block_size: int = distances.DEFAULT_BLOCK_SIZE):
  """phi of both sets: the raw rows, or k(x, w_j) at the witness rows.

  Args:
    real: (n, d) real features.
    generated: (m, d) generated features.
    moments: 'kernel' or 'raw'.
    witnesses: (J, d) witness points (moments='kernel').
    kernel: 'exponential' (the reference's exp(scale x.w / d)), 'gaussian',
      'imq', 'laplace' (median-heuristic bandwidth of the pooled rows), or a
      kernel object from `gendiag.ops.kernels`.
    scale: the exponential kernel's sigma.
    block_size: rows per block.

  Returns:
    ((n, J) real moments, (m, J) generated moments).
  """
  if moments == "raw":
    return real, generated
  pooled = jnp.concatenate([real, generated], axis=0)
  phi = _kernel_features(pooled, witnesses, kernel, scale, block_size)
  return phi[:real.shape[0]], phi[real.shape[0]:]


def whitening(phi: jax.Array, mask: Optional[jax.Array] = None):
  """Mean, W with W^T C W ~ I, the numerical rank, and diag(W^T C W).

  C is the (masked) covariance of the rows. Eigenvalues below 100 eps
  lambda_max are floored there, so W stays invertible (GEL is unchanged)
  and those directions keep variance lambda / floor < 1. Mean and W carry
  no gradient: GEL is invariant to any invertible affine map of the
  moments, so holding them fixed gives its exact gradient (and avoids
  eigh's unstable one at repeated eigenvalues).

  Args:
    phi: (N, J) rows.
    mask: optional (N,) bool selecting the rows used.

  Returns:
    (mean (J,), W (J, J), rank (), curvature (J,)).
  """
  weights = (jnp.ones(phi.shape[:1], phi.dtype) if mask is None
             else mask.astype(phi.dtype))
  weights = weights / jnp.maximum(jnp.sum(weights), 1.0)
  mean = jnp.matmul(weights, phi, precision=HIGHEST)
  centred = phi - mean
  cov = jnp.matmul(centred.T, centred * weights[:, None], precision=HIGHEST)
  evals, evecs = jnp.linalg.eigh(cov)
  top = jnp.maximum(evals[-1], jnp.finfo(phi.dtype).tiny)
  floor = 100.0 * jnp.finfo(phi.dtype).eps * top
  kept = jnp.maximum(evals, floor)
  rank = jnp.sum(evals > floor)
  white = lax.stop_gradient(evecs / jnp.sqrt(kept))
  return (lax.stop_gradient(mean), white, rank,
          lax.stop_gradient(jnp.maximum(evals, 0.0) / kept))


def stacked(phi_real: jax.Array, phi_gen: jax.Array,
            max_moments: Optional[int] = None):
  """The two-sample problem as one: whitened pooled rows [phi, 1].

  `max_moments` K < J keeps only the top K principal directions of the
  pooled moments (which no relabelling changes; `gendiag.metrics.gel.
  gel_test`): z is then (N, K + 1).

  Returns:
    (z (N, J + 1) with real rows first, signs (N,) -1 real / +1 generated,
    rank, diag (J + 1,) of H(0) = z^T z / N, which no relabelling of the rows
    changes: the L-BFGS start shared by permutation replicates).
  """
  n, m = phi_real.shape[0], phi_gen.shape[0]
  pooled = jnp.concatenate([phi_real, phi_gen])
  mean, white, rank, curvature = whitening(pooled)
  if max_moments is not None and max_moments < white.shape[1]:
    # eigh's eigenvalues ascend: the last columns are the top directions.
    white, curvature = white[:, -max_moments:], curvature[-max_moments:]
    rank = jnp.minimum(rank, max_moments)
  z = jnp.matmul(pooled - mean, white, precision=HIGHEST)
  z = jnp.concatenate([z, jnp.ones((n + m, 1), z.dtype)], axis=1)
  signs = jnp.concatenate([-jnp.ones((n,), z.dtype), jnp.ones((m,), z.dtype)])
  diag = jnp.maximum(jnp.append(curvature, 1.0), 1e-3)
  return z, signs, rank, diag


def solve(z, objective, max_iterations, tol, *, signs=None, mask=None,
          diag=None, cap=None) -> gel_dual.DualSolution:
  """L-BFGS (O(N J) a step) from diag, then Newton from its iterate.

  Easy problems finish in the first phase (`LBFGS_ITERATIONS` steps at
  most); Newton (O(N J^2) a step, at most `max_iterations`) polishes the
  rest and takes no step if the first phase already SOLVED or certified
  infeasibility. `cap`: the penalised dual (`gel_dual.solve`).
  """
  first = gel_dual.solve(z, objective=objective, signs=signs, mask=mask,
                         method="lbfgs", preconditioner=diag,
                         max_iterations=LBFGS_ITERATIONS, tol=tol, cap=cap)
  second = gel_dual.solve(z, objective=objective, signs=signs, mask=mask,
                          method="newton", init=first.lam,
                          max_iterations=max_iterations, tol=tol, cap=cap)
  return dataclasses.replace(
      second, num_iterations=first.num_iterations + second.num_iterations)


def normalise(w):
  """w / sum w (w itself when the sum is 0)."""
  total = jnp.sum(w)
  return w / jnp.where(total == 0, 1.0, total)


def ess(w):
  """Effective sample size (sum w)^2 / sum w^2."""
  return jnp.sum(w) ** 2 / jnp.maximum(jnp.sum(w * w), jnp.finfo(w.dtype).tiny)


def statistic(objective, div_real, n, div_gen=0.0, m=0):
  """2 (n D_real + m D_gen); CUE's Pearson divergence without the 2."""
  factor = 1.0 if objective == "cue" else 2.0
  return factor * (n * div_real + m * div_gen)


def split(sol: gel_dual.DualSolution, real_rows, objective, mask=None,
          cap=None):
  """Per-set weights, divergences and the statistic of a stacked solution.

  With `cap` (a solution of the penalised dual, `gel_dual.solve(cap=)`),
  the statistic adds what the moment mismatch r = sum_k w_k z_k left by
  the weights costs: 2 (m D(p) + n D(q)) + 2 N (cap |r| + |r|^2 / 2), N
  the rows (`gendiag.metrics.gel.gel_test`).

  Args:
    sol: the solution on the pooled rows.
    real_rows: (N,) bool, True for rows with sign -1.
    objective: 'el', 'et' or 'cue'.
    mask: optional (N,) bool of the rows in the problem.

  Returns:
    (q (N,) real weights summing to 1, p (N,) generated weights, D(q), D(p),
    statistic); divergences and statistic are +inf if infeasible (never
    with `cap`).
  """
  mask = jnp.ones(sol.weights.shape, bool) if mask is None else mask
  real_mask, gen_mask = mask & real_rows, mask & ~real_rows
  q = normalise(jnp.where(real_mask, sol.weights, 0.0))
  p = normalise(jnp.where(gen_mask, sol.weights, 0.0))
  infeasible = sol.status == gel_dual.INFEASIBLE
  div_q = jnp.where(infeasible, jnp.inf,
                    gel_dual.divergence(q, objective, mask=real_mask))
  div_p = jnp.where(infeasible, jnp.inf,
                    gel_dual.divergence(p, objective, mask=gen_mask))
  stat = statistic(objective, div_q, jnp.sum(real_mask), div_p,
                   jnp.sum(gen_mask))
  if cap is not None:
    r = sol.residual
    stat = stat + statistic(objective, cap * r + 0.5 * r * r, jnp.sum(mask))
  return q, p, div_q, div_p, stat
