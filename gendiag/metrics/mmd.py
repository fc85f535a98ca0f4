"""Maximum mean discrepancy: estimators, the witness and a permutation test.

MMD^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y)  (Gretton et al. 2012).

Estimators on x_1..x_n ~ P, y_1..y_m ~ Q (S_XX = sum of k(x_i, x_j) etc.):
  biased    S_XX / n^2 + S_YY / m^2 - 2 S_XY / (n m)
  unbiased  S_XX' / (n (n-1)) + S_YY' / (m (m-1)) - 2 S_XY / (n m),
            ' = without the diagonal; the estimator of KID and every KID peer
            (KID itself: `gendiag.metrics.kid`)
  linear    mean over i < min(n, m) // 2 of
            k(x_2i, x_2i+1) + k(y_2i, y_2i+1) - k(x_2i, y_2i+1) - k(x_2i+1, y_2i)

Every kernel sum is blocked (`gendiag.ops.distances`), so memory is
block_size x max(n, m). The unbiased and linear estimators can be negative
when P = Q; that is expected, not a bug.

References:
  Gretton, Borgwardt, Rasch, Schoelkopf & Smola, "A Kernel Two-Sample Test",
  JMLR 2012.
  Binkowski, Sutherland, Arbel & Gretton, "Demystifying MMD GANs", ICLR 2018
  (KID).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from gendiag import _checks
from gendiag import _results
from gendiag.ops import intervals
from gendiag.ops import distances
from gendiag.ops import kernels

ESTIMATORS = ("biased", "unbiased", "linear")
_MIN_ROWS = {"biased": 1, "unbiased": 2, "linear": 2}


def _default_kernel(real, generated, kernel):
  if kernel is None:
    return kernels.Gaussian(kernels.median_heuristic(real, generated))
  return kernel


def _prepare(real, generated, kernel, *, min_rows=1, points=None):
  """Checked float arrays (real, generated[, points]) for an MMD function.

  Array-likes and integer arrays are cast to float32. Without a kernel the
  median-heuristic MMD is scale-invariant: inputs outside [2^-32, 2^32] are
  rescaled together by a power of two (exact). With a kernel, values beyond
  `_checks.check_range`'s bound (|x| <= 7.2e16 / sqrt(d)) raise ValueError.
  """
  real, generated = _checks.check_pair(real, generated, min_rows=min_rows)
  xs, names = [real, generated], ["real", "generated"]
  if points is not None:
    xs.append(_checks.check_features(points, "points", dim=real.shape[1]))
    names.append("points")
  return _checks.fit_range(xs, names, invariant=kernel is None)


def _check_estimator(estimator):
  if estimator not in ESTIMATORS:
    raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}.")


def combine_sums(s_xx, s_yy, s_xy, n, m, estimator):
  """The biased or unbiased MMD^2 from the three kernel sums."""
  # Python floats: n * (n - 1) overflows int32 from n = 46,341 on.
  n, m = float(n), float(m)
  if estimator == "biased":
    return s_xx / n ** 2 + s_yy / m ** 2 - 2.0 * s_xy / (n * m)
  return (s_xx / (n * (n - 1)) + s_yy / (m * (m - 1))
          - 2.0 * s_xy / (n * m))


def mmd2(x, y, kernel, estimator, block_size, mesh=None):
  """MMD^2 of checked float arrays by `estimator` (no input checks)."""
  n, m = x.shape[0], y.shape[0]
  if estimator == "linear":
    half = min(n, m) // 2
    x1, x2 = x[0:2 * half:2], x[1:2 * half:2]
    y1, y2 = y[0:2 * half:2], y[1:2 * half:2]
    h = (kernel.paired(x1, x2) + kernel.paired(y1, y2)
         - kernel.paired(x1, y2) - kernel.paired(x2, y1))
    return jnp.mean(h)
  unbiased = estimator == "unbiased"
  # K_XX and K_YY are symmetric: half their blocks (`gram_matvec`).
  s_xx, s_yy = (jnp.sum(distances.gram_matvec(
      kernel, a, jnp.ones((a.shape[0],), a.dtype), exclude_diagonal=unbiased,
      block_size=block_size, mesh=mesh)) for a in (x, y))
  s_xy = distances.kernel_sum(kernel, x, y, block_size=block_size, mesh=mesh)
  return combine_sums(s_xx, s_yy, s_xy, n, m, estimator)


# `mmd2`, jitted.
mmd2_jit = jax.jit(mmd2, static_argnames=("estimator", "block_size", "mesh"))


def mmd(real: jax.Array, generated: jax.Array, *,
        kernel: Optional[distances.Kernel] = None,
        estimator: str = "unbiased",
        block_size: int = distances.DEFAULT_BLOCK_SIZE,
        mesh: Optional[Mesh] = None) -> jax.Array:
  """Squared MMD between two samples, blocked; differentiable in both inputs.

  Inputs: array-likes and integer arrays are cast to float32. Without
  `kernel` the (median-heuristic) value is scale-invariant and sets with
  max|x| outside [2^-32, 2^32] are rescaled by a power of two (exact);
  with a kernel, |x| > 7.2e16 / sqrt(d) raises ValueError, as does a
  non-finite result (standardise the features).

  Args:
    real: (n, d) samples of P.
    generated: (m, d) samples of Q.
    kernel: a kernel from `gendiag.ops.kernels`; default a Gaussian with the
      median-heuristic bandwidth of the pooled sample. That bandwidth is
      treated as a constant (no gradient flows through it): pass `kernel=`
      to differentiate through a bandwidth.
    estimator: 'unbiased' (default), 'biased' or 'linear' (see module doc).
    block_size: rows per block; memory is block_size x max(n, m) floats.
    mesh: shard both sets by rows over this mesh's devices (see
      `gendiag.ops.distances`); the linear estimator ignores it.

  Returns:
    Scalar MMD^2 estimate (may be slightly negative unless 'biased').
  """
  _check_estimator(estimator)
  _checks.check_mesh("mmd", mesh, real=real, generated=generated)
  real, generated = _prepare(real, generated, kernel,
                             min_rows=_MIN_ROWS[estimator])
  kernel = _default_kernel(real, generated, kernel)
  value = mmd2_jit(real, generated, kernel, estimator, block_size, mesh)
  _checks.check_finite_result(value, "MMD^2")
  return value


@functools.partial(jax.jit, static_argnames=("block_size", "mesh"))
def _witness(real, generated, points, kernel, block_size, mesh=None):
  mean_real = distances.kernel_row_sums(
      kernel, points, real, block_size=block_size, mesh=mesh) / real.shape[0]
  mean_gen = distances.kernel_row_sums(
      kernel, points, generated, block_size=block_size,
      mesh=mesh) / generated.shape[0]
  return mean_real - mean_gen


def witness(real: jax.Array, generated: jax.Array, points: jax.Array, *,
            kernel: Optional[distances.Kernel] = None,
            block_size: int = distances.DEFAULT_BLOCK_SIZE,
            mesh: Optional[Mesh] = None) -> jax.Array:
  """The (unnormalised) MMD witness function evaluated at `points`.

  f(t) = mean_i k(x_i, t) - mean_j k(y_j, t). Positive where the real
  distribution has more mass than the model (dropped or under-weighted
  regions), negative where the model puts too much (over-represented modes,
  artefacts). MMD^2 (biased) = mean_i f(x_i) - mean_j f(y_j).

  Inputs: array-likes and integer arrays are cast to float32. Without
  `kernel` the (median-heuristic) value is scale-invariant and sets with
  max|x| outside [2^-32, 2^32] are rescaled by a power of two (exact);
  with a kernel, |x| > 7.2e16 / sqrt(d) raises ValueError, as does a
  non-finite result (standardise the features).

  Args:
    real: (n, d) real features.
    generated: (m, d) generated features.
    points: (p, d) where to evaluate f.
    kernel: default a Gaussian with the pooled median-heuristic bandwidth,
      treated as a constant (no gradient through it; pass `kernel=` for one).
    block_size: rows of `points` per block.
    mesh: shard the sets by rows over this mesh's devices.

  Returns:
    (p,) witness values.
  """
  _checks.check_mesh("witness", mesh, real=real, generated=generated)
  real, generated, points = _prepare(real, generated, kernel, points=points)
  kernel = _default_kernel(real, generated, kernel)
  values = _witness(real, generated, points, kernel, block_size, mesh)
  _checks.check_finite_result(values, "The witness")
  return values


@_results.result(static=("num_permutations",))
class MMDTestResult:
  """A permutation two-sample test of P = Q with the MMD^2 statistic.

  Attributes:
    statistic: MMD^2 of the observed split.
    p_value: (1 + #{null >= statistic}) / (1 + num_permutations).
    null_statistics: (num_permutations,) MMD^2 of random relabellings.
  """
  statistic: jax.Array
  p_value: jax.Array
  null_statistics: jax.Array
  num_permutations: int


@functools.partial(jax.jit, static_argnames=("n", "num_permutations",
                                             "estimator", "block_size", "mesh"))
def permutation_statistics(pooled, kernel, key, n, num_permutations,
                           estimator, block_size, mesh=None):
  """MMD^2 of the identity split (column 0) and of random relabellings.

  With u the 0/1 indicator of "real" rows and K0 the pooled Gram matrix with
  zero diagonal: S_XX' = u^T K0 u, S_XY = u^T K0 1 - S_XX', and
  S_YY' = 1^T K0 1 - 2 u^T K0 1 + S_XX'. One blocked pass computes K0 U for
  every indicator column U (and 1) at once, over half the kernel blocks
  (`distances.gram_matvec`: K0 is symmetric).
  """
  total = pooled.shape[0]
  m = total - n
  observed = (jnp.arange(total) < n).astype(pooled.dtype)
  keys = jax.random.split(key, num_permutations)
  shuffled = jax.vmap(lambda k: jax.random.permutation(k, observed))(keys)
  u = jnp.concatenate([observed[None, :], shuffled], axis=0).T  # (N, P + 1)
  # The row sums K0 1 ride along as one more column: one pass, not two.
  ku = distances.gram_matvec(
      kernel, pooled, jnp.concatenate([u, jnp.ones((total, 1), u.dtype)], 1),
      exclude_diagonal=True, block_size=block_size, mesh=mesh)
  ku, row_sums = ku[:, :-1], ku[:, -1]
  s_xx = jnp.sum(u * ku, axis=0)
  u_r = jnp.matmul(u.T, row_sums, precision=distances.HIGHEST)
  s_xy = u_r - s_xx
  s_yy = jnp.sum(row_sums) - 2.0 * u_r + s_xx
  if estimator == "biased":
    diag = kernel.paired(pooled, pooled)
    u_diag = jnp.matmul(u.T, diag, precision=distances.HIGHEST)
    s_xx = s_xx + u_diag
    s_yy = s_yy + jnp.sum(diag) - u_diag
  return combine_sums(s_xx, s_yy, s_xy, n, m, estimator)


def mmd_test(real: jax.Array, generated: jax.Array, *, key: jax.Array,
             kernel: Optional[distances.Kernel] = None,
             num_permutations: int = 1000,
             estimator: str = "unbiased",
             block_size: int = distances.DEFAULT_BLOCK_SIZE,
             mesh: Optional[Mesh] = None) -> MMDTestResult:
  """Permutation test of P = Q (Gretton et al. 2012, section 5).

  The pooled sample is relabelled `num_permutations` times (permutations
  drawn with `vmap`); the p-value counts relabellings whose MMD^2 is at least
  the observed one, plus one, so it is valid at finite sizes. The pooled
  kernel is evaluated once; memory is block_size x (n + m) plus
  (n + m) x (num_permutations + 1) indicator floats.

  Inputs: array-likes and integer arrays are cast to float32. Without
  `kernel` the (median-heuristic) value is scale-invariant and sets with
  max|x| outside [2^-32, 2^32] are rescaled by a power of two (exact);
  with a kernel, |x| > 7.2e16 / sqrt(d) raises ValueError, as does a
  non-finite result (standardise the features).

  Args:
    real: (n, d) real features.
    generated: (m, d) generated features.
    key: a `jax.random` key for the permutations.
    kernel: default a Gaussian with the pooled median-heuristic bandwidth,
      treated as a constant (no gradient through it; pass `kernel=` for one).
    num_permutations: relabellings drawn.
    estimator: 'unbiased' or 'biased'.
    block_size: rows per block.
    mesh: shard the pooled sample (and the indicators) over this mesh.

  Returns:
    An `MMDTestResult`.
  """
  if estimator not in ("biased", "unbiased"):
    raise ValueError("mmd_test supports estimator='unbiased' or 'biased'; got "
                     f"{estimator!r}.")
  _checks.check_positive_int(num_permutations, "num_permutations")
  _checks.check_mesh("mmd_test", mesh, real=real, generated=generated)
  _checks.check_same_key(key, "mmd_test", real, generated)
  real, generated = _prepare(real, generated, kernel, min_rows=2)
  kernel = _default_kernel(real, generated, kernel)
  pooled = jnp.concatenate([real, generated], axis=0)
  stats = permutation_statistics(pooled, kernel, key, real.shape[0],
                                 num_permutations, estimator, block_size,
                                 mesh)
  _checks.check_finite_result(stats, "The MMD^2 test statistic")
  observed, null, p_value = permutation_p_value(stats)
  return MMDTestResult(statistic=observed, p_value=p_value,
                       null_statistics=null, num_permutations=num_permutations)


@jax.jit
def permutation_p_value(stats):
  """(observed, null, (1 + #{null >= observed}) / (1 + P)) from stats[0|1:]."""
  observed, null = stats[0], stats[1:]
  return observed, null, (1.0 + jnp.sum(null >= observed)) / (1.0 + null.size)


@_results.result(static=("num_resamples", "level"))
class MMDBootstrapResult:
  """Bootstrap replicates of MMD^2 and their percentile interval.

  Attributes:
    statistic: MMD^2 on the original samples.
    ci_low, ci_high: the central `level` percentile interval.
    replicates: (num_resamples,) MMD^2 of each resample pair.
  """
  statistic: jax.Array
  ci_low: jax.Array
  ci_high: jax.Array
  replicates: jax.Array
  num_resamples: int
  level: float


@functools.partial(jax.jit, static_argnames=("num_resamples", "estimator",
                                             "block_size", "mesh"))
def bootstrap_statistics(real, generated, kernel, key, num_resamples,
                         estimator, block_size, mesh=None):
  """MMD^2 for the identity weights (column 0) and bootstrap weights.

  With count vectors w (real) and v (generated) and K0 the pooled Gram
  matrix with zero diagonal: S_XX' = w^T K0_XX w sums pairs of distinct
  original rows, normalised by n^2 - |w|^2; S_XY = w^T K_XY v / (n m).
  """
  n, m = real.shape[0], generated.shape[0]
  key_x, key_y = jax.random.split(key)
  w = jnp.concatenate([jnp.ones((1, n)),
                       intervals.resample_weights(key_x, n, num_resamples)])
  v = jnp.concatenate([jnp.ones((1, m)),
                       intervals.resample_weights(key_y, m, num_resamples)])
  pooled = jnp.concatenate([real, generated], axis=0)
  cols = jnp.concatenate([
      jnp.concatenate([w.T, jnp.zeros((m, w.shape[0]))], axis=0),
      jnp.concatenate([jnp.zeros((n, v.shape[0])), v.T], axis=0)], axis=1)
  k_cols = distances.gram_matvec(kernel, pooled, cols, exclude_diagonal=True,
                                 block_size=block_size, mesh=mesh)
  b = w.shape[0]
  s_xx = jnp.sum(cols[:n, :b] * k_cols[:n, :b], axis=0)
  s_yy = jnp.sum(cols[n:, b:] * k_cols[n:, b:], axis=0)
  s_xy = jnp.sum(cols[:n, :b] * k_cols[:n, b:], axis=0)
  sq_w, sq_v = jnp.sum(w * w, axis=1), jnp.sum(v * v, axis=1)
  if estimator == "biased":
    diag = kernel.paired(pooled, pooled)
    s_xx = s_xx + jnp.matmul(w * w, diag[:n], precision=distances.HIGHEST)
    s_yy = s_yy + jnp.matmul(v * v, diag[n:], precision=distances.HIGHEST)
    return s_xx / n ** 2 + s_yy / m ** 2 - 2.0 * s_xy / (n * m)
  return (s_xx / (n ** 2 - sq_w) + s_yy / (m ** 2 - sq_v)
          - 2.0 * s_xy / (n * m))


def mmd_bootstrap(real: jax.Array, generated: jax.Array, *, key: jax.Array,
                  kernel: Optional[distances.Kernel] = None,
                  num_resamples: int = 200, level: float = 0.95,
                  estimator: str = "unbiased",
                  block_size: int = distances.DEFAULT_BLOCK_SIZE,
                  mesh: Optional[Mesh] = None) -> MMDBootstrapResult:
  """Percentile bootstrap interval for MMD^2, all replicates in one pass.

  Both samples are resampled with replacement, independently. Each
  replicate's U-statistic skips pairs of the same original row, so it stays
  unbiased; the kernel is evaluated once for every replicate (blocked K W).
  With `kernel=Polynomial()` this is the interval for KID's population value.

  Inputs: array-likes and integer arrays are cast to float32. Without
  `kernel` the (median-heuristic) value is scale-invariant and sets with
  max|x| outside [2^-32, 2^32] are rescaled by a power of two (exact);
  with a kernel, |x| > 7.2e16 / sqrt(d) raises ValueError, as does a
  non-finite result (standardise the features).

  Args:
    real: (n, d) real features.
    generated: (m, d) generated features.
    key: a `jax.random` key for the resamples.
    kernel: default a Gaussian with the pooled median-heuristic bandwidth,
      treated as a constant (no gradient through it; pass `kernel=` for one).
    num_resamples: bootstrap replicates B; memory adds (n + m) x 2B floats.
    level: coverage of the interval.
    estimator: 'unbiased' or 'biased'.
    block_size: rows per block.
    mesh: shard the pooled sample over this mesh's devices.

  Returns:
    An `MMDBootstrapResult`.
  """
  if estimator not in ("biased", "unbiased"):
    raise ValueError("mmd_bootstrap supports estimator='unbiased' or "
                     f"'biased'; got {estimator!r}.")
  _checks.check_positive_int(num_resamples, "num_resamples", minimum=2)
  _checks.check_mesh("mmd_bootstrap", mesh, real=real, generated=generated)
  _checks.check_same_key(key, "mmd_bootstrap", real, generated)
  real, generated = _prepare(real, generated, kernel, min_rows=2)
  kernel = _default_kernel(real, generated, kernel)
  stats = bootstrap_statistics(real, generated, kernel, key, num_resamples,
                               estimator, block_size, mesh)
  _checks.check_finite_result(stats, "The bootstrapped MMD^2")
  low, high = intervals.percentile_interval(stats[1:], level=level)
  return MMDBootstrapResult(statistic=stats[0], ci_low=low, ci_high=high,
                            replicates=stats[1:], num_resamples=num_resamples,
                            level=level)
