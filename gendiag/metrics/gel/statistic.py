"""Generalized empirical likelihood (GEL): per-sample weights (`gel`).

GEL asks how the samples must be reweighted for the two sets to agree in a
set of moments phi(x) in R^J (Ravuri et al. 2023):

  one-sample  weights p on the real rows x_i with
              sum_i p_i phi(x_i) = (1/m) sum_j phi(y_j)   (the model's mean)
  two-sample  weights p on the generated rows y_j and q on the real rows,
              sum_j p_j phi(y_j) = sum_i q_i phi(x_i),

each as close to uniform as possible in the objective's divergence (EL,
ET or CUE; see `gendiag.metrics.gel.dual`). Real rows with ~0 weight are those
the model cannot account for (dropped modes); generated rows with ~0 weight
are unlike the real data (extraneous modes). Moments are the raw features
or kernel features phi_j(x) = k(x, w_j) at J witness points, so the
constraint equates the kernel mean embeddings at the witnesses (the MMD
witness function vanishes there).

Conventions (the reference notebook's unless stated):
  * kernel 'exponential': k(x, w) = exp(scale x.w / D), scale 1, D the
    feature dimension; computed as exp(logit - max logit per witness), a
    per-column rescaling that leaves GEL unchanged and cannot overflow.
    'gaussian', 'imq', 'laplace' use `gendiag.ops.kernels` with the
    median-heuristic bandwidth of the pooled sample, or pass a kernel object.
  * two-sample problems stack the rows, z = [phi(y), 1] and -[phi(x), 1],
    as one one-sample problem (the constant forces each half to mass 1/2).
    With m = n this is exactly min D(p||u_m) + D(q||u_n).
  * moments are centred and whitened by the pooled covariance (eigenvalues
    floored at 100 eps lambda_max): an invertible map, so the solution is
    unchanged (GEL is affine invariant) but float32 conditioning and the
    residual tolerance become scale-free. The reference's PCA rotation is
    another such map.
  * statistic: 2 n D (one-sample) and 2 (m D(p) + n D(q)) (two-sample) for
    EL and ET; CUE's Pearson divergence is halved, so all three agree to
    first order near the null. Infeasible problems: D = statistic = +inf
    (`gel`); `gel_test` (`gendiag.metrics.gel.test`) uses a statistic that
    stays finite (see there).

The paper's class-level metrics are in `gendiag.metrics.gel.modes`.

References:
  Ravuri, Rey, Mohamed & Deisenroth, "Understanding Deep Generative Models
  with Generalized Empirical Likelihoods", CVPR 2023.
  Owen, "Empirical Likelihood", 2001.
"""


import functools
from typing import Optional

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.metrics.gel import dual as gel_dual
from gendiag.metrics.gel import moments as gm
from gendiag.ops import distances

HIGHEST = lax.Precision.HIGHEST


@_results.result(static=("objective", "two_sample"))
class GELResult:
  """GEL weights of both sets and the divergence they cost.

  Attributes:
    statistic: 2 n D (one-sample) or 2 (m D(p) + n D(q)) (two-sample); CUE
      without the 2. +inf when infeasible.
    divergence: real_divergence + generated_divergence.
    real_divergence: D(q || uniform) of the real weights.
    generated_divergence: D(p || uniform) (0 one-sample: p is uniform).
    real_weights: (n,) weights of the real rows, summing to 1.
    generated_weights: (m,) weights of the generated rows, summing to 1.
    real_ess, generated_ess: effective sample sizes (sum w)^2 / sum w^2.
    residual: constraint violation |sum w z| in whitened moments.
    num_iterations: solver steps (L-BFGS, then Newton).
    status: `gendiag.metrics.gel.dual` SOLVED (0), INFEASIBLE (1: the target
      mean is outside the convex hull; weights are the last iterate's),
      NOT_CONVERGED (2).
    num_moments: numerical rank of the moments (chi^2 degrees of freedom).
    objective: 'el', 'et' or 'cue'.
    two_sample: which problem was solved.
  """
  statistic: jax.Array
  divergence: jax.Array
  real_divergence: jax.Array
  generated_divergence: jax.Array
  real_weights: jax.Array
  generated_weights: jax.Array
  real_ess: jax.Array
  generated_ess: jax.Array
  residual: jax.Array
  num_iterations: jax.Array
  status: jax.Array
  num_moments: jax.Array
  objective: str
  two_sample: bool

  @property
  def converged(self):
    return self.status == gel_dual.SOLVED


def fit_one_sample(phi_real, phi_gen, objective, max_iterations, tol):
  """The one-sample fit of whitened moments: weights on the real rows."""
  n, m = phi_real.shape[0], phi_gen.shape[0]
  _, white, rank, _ = gm.whitening(jnp.concatenate([phi_real, phi_gen]))
  # z = phi(x) - mean phi(y): centring phi first would not change it.
  z = jnp.matmul(phi_real - jnp.mean(phi_gen, axis=0), white,
                 precision=HIGHEST)
  sol = gm.solve(z, objective, max_iterations, tol,
                 diag=jnp.maximum(jnp.mean(z * z, axis=0), 1e-3))
  div = jnp.where(sol.status == gel_dual.INFEASIBLE, jnp.inf,
                  gel_dual.divergence(sol.weights, objective))
  return GELResult(
      statistic=gm.statistic(objective, div, n), divergence=div,
      real_divergence=div, generated_divergence=jnp.zeros_like(div),
      real_weights=sol.weights,
      generated_weights=jnp.full((m,), 1.0 / m, phi_real.dtype),
      real_ess=gm.ess(sol.weights), generated_ess=jnp.asarray(m, div.dtype),
      residual=sol.residual, num_iterations=sol.num_iterations,
      status=sol.status,
      num_moments=rank, objective=objective, two_sample=False)


def fit_two_sample(phi_real, phi_gen, objective, max_iterations, tol,
                   problem=None):
  n = phi_real.shape[0]
  z, signs, rank, diag = problem or gm.stacked(phi_real, phi_gen)
  sol = gm.solve(z, objective, max_iterations, tol, signs=signs, diag=diag)
  q, p, div_q, div_p, stat = gm.split(sol, signs < 0, objective)
  return GELResult(
      statistic=stat, divergence=div_q + div_p, real_divergence=div_q,
      generated_divergence=div_p, real_weights=q[:n], generated_weights=p[n:],
      real_ess=gm.ess(q), generated_ess=gm.ess(p), residual=sol.residual,
      num_iterations=sol.num_iterations, status=sol.status, num_moments=rank,
      objective=objective, two_sample=True)


# The static arguments of every jitted GEL core.
STATIC_ARGNAMES = ("objective", "moments", "kernel", "max_iterations", "tol",
                   "block_size")


def features(real, generated, witnesses, kernel_obj, scale, moments, kernel,
             block_size):
  """The moments of both sets (`kernel_obj` overrides a kernel name)."""
  return gm.moment_features(
      real, generated, moments=moments, witnesses=witnesses,
      kernel=kernel if kernel_obj is None else kernel_obj, scale=scale,
      block_size=block_size)


@functools.partial(jax.jit, static_argnames=STATIC_ARGNAMES + ("two_sample",))
def _gel(real, generated, witnesses, kernel_obj, scale, *, two_sample,
         objective, moments, kernel, max_iterations, tol, block_size):
  phi_real, phi_gen = features(real, generated, witnesses, kernel_obj, scale,
                               moments, kernel, block_size)
  core = fit_two_sample if two_sample else fit_one_sample
  return core(phi_real, phi_gen, objective, max_iterations, tol)


def check_inputs(real, generated, objective, moments, kernel,
                 max_iterations):
  """Checks the settings; returns (real, generated) as float arrays.

  The moments depend on the features' scale: values beyond
  `_checks.check_range`'s bound (|x| <= 7.2e16 / sqrt(d)) raise ValueError.
  """
  _checks.check_addressable("GEL", real=real, generated=generated)
  real, generated = _checks.check_pair(real, generated, min_rows=2)
  _checks.fit_range((real, generated), ("real", "generated"), invariant=False)
  if objective not in gel_dual.OBJECTIVES:
    raise ValueError(f"objective must be one of {gel_dual.OBJECTIVES}; got "
                     f"{objective!r}.")
  if moments not in gm.MOMENTS:
    raise ValueError(f"moments must be one of {gm.MOMENTS}; got {moments!r}.")
  if isinstance(kernel, str) and kernel not in gm.KERNEL_NAMES:
    raise ValueError(f"kernel must be one of {gm.KERNEL_NAMES} or a kernel "
                     f"object; got {kernel!r}.")
  _checks.check_positive_int(max_iterations, "max_iterations")
  return real, generated


def pick_witnesses(real, generated, moments, witnesses, num_witnesses, key):
  """The witness rows: given, or drawn from the pooled sample with `key`."""
  if moments != "kernel":
    return None
  if witnesses is not None:
    witnesses = _checks.check_features(witnesses, "witnesses",
                                       dim=np.shape(real)[1])
    _checks.check_range(witnesses, "witnesses")
    return jnp.asarray(witnesses, jnp.result_type(real))
  if key is None:
    raise ValueError(
        "moments='kernel' needs witness points: pass `witnesses=` (e.g. "
        "held-out real rows, as the paper does) or a `key` to draw "
        "`num_witnesses` rows of the pooled sample.")
  _checks.check_positive_int(num_witnesses, "num_witnesses")
  total = np.shape(real)[0] + np.shape(generated)[0]
  if num_witnesses > total:
    raise ValueError(f"num_witnesses={num_witnesses} exceeds the pooled "
                     f"sample ({total} rows); pass fewer.")
  idx = jax.random.choice(key, total, (num_witnesses,), replace=False)
  return jnp.concatenate([real, generated])[idx]


def kernel_args(kernel):
  """(static name, traced kernel object or None)."""
  return (kernel, None) if isinstance(kernel, str) else ("object", kernel)


def gel(real: jax.Array, generated: jax.Array, *, two_sample: bool = False,
        objective: str = "et", moments: str = "kernel",
        witnesses: Optional[jax.Array] = None, num_witnesses: int = 256,
        kernel: gm.KernelSpec = "exponential", scale: float = 1.0,
        key: Optional[jax.Array] = None, max_iterations: int = 100,
        tol: Optional[float] = None,
        block_size: int = distances.DEFAULT_BLOCK_SIZE) -> GELResult:
  """GEL weights: how must the samples be reweighted to agree in moments?

  One-sample: min_q D(q || u_n) s.t. sum_i q_i phi(x_i) = mean_j phi(y_j).
  Two-sample: min D(p || u_m) + D(q || u_n) s.t. sum p phi(y) = sum q phi(x).
  Solved in the dual (`gendiag.metrics.gel.dual`); check `.status`: SOLVED
  requires the constraint residual below `tol`, and INFEASIBLE means no
  weights exist (with kernel moments: too few real rows per present mode
  relative to J; use fewer witnesses).

  Inputs: array-likes and integer arrays are cast to float32; values
  beyond float32's safe range for squared distances and products,
  |x| > 7.2e16 / sqrt(d), raise ValueError.

  Args:
    real: (n, d) real features.
    generated: (m, d) generated features.
    two_sample: reweight both sets (default: only the real rows).
    objective: 'et' (exponential tilting, the paper's default), 'el'
      (empirical likelihood) or 'cue' (Euclidean; weights may be negative).
    moments: 'kernel' (k(x, w_j) at witness rows) or 'raw' (the features).
    witnesses: (J, d) witness points; by default `num_witnesses` rows of the
      pooled sample drawn with `key` (the paper uses held-out real rows).
    num_witnesses: J when witnesses are drawn.
    kernel: see `gendiag.metrics.gel.moments.moment_features`.
    scale: sigma of the exponential kernel.
    key: `jax.random` key for drawing witnesses.
    max_iterations: Newton steps allowed after 50 L-BFGS steps.
    tol: residual tolerance; default 1e-5 (float32), 1e-10 (float64).
    block_size: rows per block of the kernel features.

  Returns:
    A `GELResult`.

  References:
    Ravuri et al., CVPR 2023, and its reference notebook (one-sample weights
    on the real rows, the stacked two-sample problem, the exponential
    kernel); matches its outputs to 1e-6 in float64 (tests/data).
  """
  real, generated = check_inputs(real, generated, objective, moments, kernel,
                                 max_iterations)
  w = pick_witnesses(real, generated, moments, witnesses, num_witnesses, key)
  name, obj = kernel_args(kernel)
  return _gel(real, generated, w, obj, scale, two_sample=two_sample,
              objective=objective, moments=moments, kernel=name,
              max_iterations=max_iterations, tol=tol, block_size=block_size)
