"""Distribution estimators: bin counts -> probability vectors, by name.

With counts N_a over k bins and n = sum_a N_a samples:

  empirical            N_a / n
  add_constant (b)     (N_a + b) / (n + k b)
  laplace              add-constant with b = 1
  krichevsky_trofimov  add-constant with b = 1/2 (mauve-text's MAUVE*, FI*)
  braess_sauer         N_a + b_a, b_a = 1/2 if N_a = 0, 1 if N_a = 1, 3/4 if
                       N_a >= 2, renormalised
  good_turing          with Phi_t = #bins seen t times, the count-t class gets
                       mass S_t = (Phi_{t+1} + 1)(t + 1) / n if t <= Phi_{t+1}
                       (Good-Turing), else its empirical mass t Phi_t / n;
                       each of its Phi_t bins gets S_t / Phi_t; renormalised.
                       Unseen bins share (Phi_1 + 1) / n.

Smoothed estimators put mass on unseen bins (the missing mass problem), which
Liu et al. (2021) show gives faster rates for divergence frontiers and the
frontier integral than the empirical estimator.

All functions take (k,) counts (integers or floats, e.g. bootstrap-weighted
counts) and are jittable and vmappable.

References:
  Liu, Pillutla, Welleck, Oh, Choi, Harchaoui. Divergence Frontiers for
  Generative Models: Sample Complexity, Quantization Effects, and Frontier
  Integrals. NeurIPS 2021 (the estimators as coded in the authors'
  `divergence-frontier-bounds/utils.py`, including its hybrid Good-Turing).
  Krichevsky & Trofimov 1981; Braess & Sauer 2004; Good 1953.
"""

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks

ESTIMATORS = ("empirical", "add_constant", "laplace", "krichevsky_trofimov",
              "braess_sauer", "good_turing")


def _normalise(v):
  return v / jnp.sum(v, axis=-1, keepdims=True)


def empirical(counts: jax.Array) -> jax.Array:
  """N_a / n."""
  return _normalise(jnp.asarray(counts, float))


def add_constant(counts: jax.Array, b: float) -> jax.Array:
  """(N_a + b) / (n + k b)."""
  return _normalise(jnp.asarray(counts, float) + b)


def laplace(counts: jax.Array) -> jax.Array:
  """(N_a + 1) / (n + k)."""
  return add_constant(counts, 1.0)


def krichevsky_trofimov(counts: jax.Array) -> jax.Array:
  """(N_a + 1/2) / (n + k/2): mauve-text's smoothing for MAUVE* and FI*."""
  return add_constant(counts, 0.5)


def braess_sauer(counts: jax.Array) -> jax.Array:
  """N_a + (1/2, 1, 3/4 for N_a = 0, 1, >= 2), renormalised."""
  c = jnp.asarray(counts, float)
  b = jnp.where(c == 0, 0.5, jnp.where(c == 1, 1.0, 0.75))
  return _normalise(c + b)


def good_turing(counts: jax.Array) -> jax.Array:
  """The hybrid Good-Turing estimator (module docstring), for (k,) counts.

  Phi_t is counted by comparing all pairs of bins (k^2 work; k is a number
  of clusters, at most a few thousand).
  """
  c = jnp.asarray(counts, float)
  n = jnp.sum(c)
  phi_t = jnp.sum(c[None, :] == c[:, None], axis=1)            # Phi_{N_a}
  phi_next = jnp.sum(c[None, :] == c[:, None] + 1, axis=1)     # Phi_{N_a+1}
  good_turing_mass = (phi_next + 1) * (c + 1) / n
  class_mass = jnp.where(c <= phi_next, good_turing_mass, c * phi_t / n)
  return _normalise(class_mass / phi_t)


def estimate(counts: jax.Array, method: str = "empirical", *,
             constant: Optional[float] = None) -> jax.Array:
  """Probability vector from bin counts by the named estimator.

  Args:
    counts: (k,) non-negative counts, not all zero.
    method: one of `ESTIMATORS`.
    constant: b for 'add_constant' (required there, rejected elsewhere).

  Returns:
    (k,) probabilities summing to 1 (float dtype of the default precision).
  """
  if method not in ESTIMATORS:
    raise ValueError(f"unknown distribution estimator {method!r}; choose "
                     f"from {ESTIMATORS}.")
  if (constant is not None) != (method == "add_constant"):
    raise ValueError("pass `constant` (b > 0) with method='add_constant' and "
                     "only then.")
  if np.ndim(counts) != 1 or np.size(counts) == 0:
    raise ValueError(f"`counts` must be a non-empty 1-D array; got shape "
                     f"{np.shape(counts)}.")
  if _checks.is_concrete(counts):
    c = np.asarray(counts, np.float64)
    if not np.all(np.isfinite(c)) or np.any(c < 0) or c.sum() <= 0:
      raise ValueError("`counts` must be finite, non-negative and not all "
                       "zero.")
  if method == "add_constant":
    if not constant > 0:
      raise ValueError(f"`constant` must be > 0; got {constant}.")
    return add_constant(counts, constant)
  return {"empirical": empirical, "laplace": laplace,
          "krichevsky_trofimov": krichevsky_trofimov,
          "braess_sauer": braess_sauer, "good_turing": good_turing}[method](
              counts)
