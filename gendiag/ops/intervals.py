"""Resampling and confidence intervals: the one interval module.

A bootstrap resample of n rows is a vector of counts w (sum n) drawn from a
multinomial; statistics that are sums over rows become weighted sums, so B
replicates of a kernel statistic need one blocked pass computing K W for the
(n, B) weight matrix instead of B passes. U-statistics drop pairs of the same
*original* row (the w_i^2 k(x_i, x_i) terms), which keeps them unbiased under
resampling with replacement. Replicates come from `vmap`ped resampling
weights, never from Python loops.

Intervals, each documented where a metric or report family uses it:
  percentile  the central `level` interval of bootstrap replicates (means of
              per-row quantities: unbiased under resampling, so the interval
              sits around the estimate);
  normal      estimate -+ z std(replicates), for statistics that resampling
              biases (FID, max F_beta, Hellinger distances, divergences):
              centred on the estimate, with the replicates' spread;
  seeds       estimate -+ sqrt((t_{S-1} sd_seeds)^2 + (z sd_boot)^2), for
              quantities that involve a fit (FLD): the spread of the fit over
              S seeds and, where the fitted model can be held fixed, the
              bootstrap spread of the rows it is scored on;
  mean        mean -+ t_{S-1} sd / sqrt(S) over S repetitions (CAS seeds,
              random real-vs-real splits).

References:
  Efron & Tibshirani, "An Introduction to the Bootstrap", 1993 (percentile
  intervals).
"""

import functools
import math
import statistics

import jax
from jax import lax
import jax.numpy as jnp
import jax.scipy.stats  # noqa: F401  (registers jax.scipy.stats)
import numpy as np

# Two-sided 97.5% Student-t quantiles for 1..9 degrees of freedom.
_T975 = (12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)


def resample_weights(key: jax.Array, n: int, num_resamples: int) -> jax.Array:
  """(num_resamples, n) float32 counts of each row in n draws with replacement."""
  idx = jax.random.randint(key, (num_resamples, n), 0, n)
  return jax.vmap(lambda i: jnp.zeros(n, jnp.float32).at[i].add(1.0))(idx)


def percentile_interval(values: jax.Array, *, level: float = 0.95):
  """The central `level` percentile interval of bootstrap replicates."""
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1); got {level}.")
  alpha = (1.0 - level) / 2.0
  return (jnp.quantile(values, alpha), jnp.quantile(values, 1.0 - alpha))


def normal_interval(estimate: jax.Array, values: jax.Array, *,
                    level: float = 0.95):
  """estimate -+ z * std(replicates): for statistics biased under resampling.

  Resamples repeat rows, which shifts biased statistics (FID rises as the
  effective sample shrinks), so percentile intervals of their replicates can
  miss the estimate itself. Centring on the estimate and using only the
  replicates' spread measures the sampling uncertainty at this n.
  """
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1); got {level}.")
  z = jax.scipy.stats.norm.ppf(0.5 + level / 2.0)
  half = z * jnp.std(values, ddof=1)
  return estimate - half, estimate + half


@functools.partial(jax.jit, static_argnames="num_first")
def permuted_split(key: jax.Array, x: jax.Array, num_first: int):
  """Rows of x in a seeded random order, cut after the first `num_first`.

  Returns:
    (the other rows (n - num_first, ...), the first rows (num_first, ...),
    their int32 indices into x (num_first,)).
  """
  perm = jax.random.permutation(key, x.shape[0])
  return (x[perm[num_first:]], x[perm[:num_first]],
          perm[:num_first].astype(jnp.int32))


def z_value(level: float) -> float:
  """The standard normal quantile 0.5 + level / 2."""
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1); got {level}.")
  return statistics.NormalDist().inv_cdf(0.5 + level / 2.0)


@functools.partial(jax.jit, static_argnames=("num_resamples",))
def bootstrap_means(key, values, *, num_resamples: int):
  """Bootstrap replicates of the column means of per-row values.

  theta*_b = (1/n) sum_i w_bi v_i with w_b ~ Multinomial(n; 1/n, ..., 1/n)
  (`ops.resample_weights`): one (B, n) x (n, K) product gives all
  B replicates of all K means.

  Args:
    key: PRNG key of the resamples.
    values: (n,) or (n, K) per-row values (flags, counts, NLLs).
    num_resamples: B.

  Returns:
    (B, K) replicates (K = 1 for a vector).
  """
  values = jnp.asarray(values, jnp.float32)
  values = values.reshape(values.shape[0], -1)
  w = resample_weights(key, values.shape[0], num_resamples)
  return jnp.matmul(w, values, precision=lax.Precision.HIGHEST) / (
      values.shape[0])


def percentile_intervals(replicates, *, level: float = 0.95):
  """(K, 2) percentile intervals of the columns of (B, K) replicates.

  Host-side numpy (`percentile_interval`'s linear quantiles): a
  handful of numbers, not worth compiling a program for.
  """
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1); got {level}.")
  alpha = (1.0 - level) / 2.0
  reps = np.asarray(replicates)
  return np.quantile(reps, [alpha, 1.0 - alpha], axis=0).T


def normal_intervals(estimates, replicates, *, level: float = 0.95,
                     bounds=(0.0, 1.0)):
  """(K, 2) estimate -+ z std(replicates), clipped to `bounds`.

  Non-finite replicates (e.g. an infeasible refit) are left out of the
  spread; a column with fewer than two finite replicates, or a non-finite
  estimate, gets NaN bounds (no interval).
  """
  est = np.asarray(estimates, np.float64).reshape(-1)
  reps = np.asarray(replicates, np.float64).reshape(-1, est.size)
  z = z_value(level)
  out = np.full((est.size, 2), np.nan)
  for j in range(est.size):
    finite = reps[np.isfinite(reps[:, j]), j]
    if finite.size >= 2 and np.isfinite(est[j]):
      half = z * finite.std(ddof=1)
      out[j] = (est[j] - half, est[j] + half)
  lo, hi = bounds
  return np.clip(out, lo, hi)


def standard_error_intervals(estimates, standard_errors, *,
                             level: float = 0.95, bounds=(0.0, 1.0)):
  """(K, 2) estimate -+ z se, clipped to `bounds` (NaN where not finite)."""
  est = np.asarray(estimates, np.float64).reshape(-1)
  se = np.asarray(standard_errors, np.float64).reshape(-1)
  half = z_value(level) * se
  out = np.stack([est - half, est + half], axis=1)
  out[~(np.isfinite(est) & np.isfinite(se))] = np.nan
  lo, hi = bounds
  return np.clip(out, lo, hi)


def count_interval(estimate, replicates, *, level: float = 0.95):
  """Percentile interval of integer replicates, widened to hold the estimate.

  For counts (e.g. classes flagged dropped): the replicates' central `level`
  range, extended to the estimate when every resample disagrees with it.
  """
  reps = np.asarray(replicates, np.float64)
  alpha = (1.0 - level) / 2.0
  lo, hi = np.quantile(reps, alpha), np.quantile(reps, 1.0 - alpha)
  return (min(float(lo), float(estimate)), max(float(hi), float(estimate)))


def seed_interval(estimate, seed_values, boot_std=0.0, *,
                  level: float = 0.95):
  """estimate -+ sqrt((t_{S-1} sd_seeds)^2 + (z boot_std)^2).

  Args:
    estimate: the reported value (seed 0's).
    seed_values: the value under S >= 1 seeds of the fit (seed 0 included).
    boot_std: bootstrap standard deviation with the fit held fixed (0 when
      there is none).
    level: interval level.

  Returns:
    (lo, hi), or None when the estimate or a seed's value is not finite.
  """
  values = np.asarray(seed_values, np.float64)
  if not (np.isfinite(estimate) and np.all(np.isfinite(values))
          and np.isfinite(boot_std)):
    return None
  s = values.size
  z = z_value(level)
  if s >= 2:
    t = _T975[s - 2] if level == 0.95 and s - 2 < len(_T975) else z
    seed_half = t * values.std(ddof=1)
  else:
    seed_half = 0.0
  half = math.hypot(seed_half, z * float(boot_std))
  return (float(estimate) - half, float(estimate) + half)


def mean_interval(values, *, level: float = 0.95):
  """mean -+ t_{S-1} sd / sqrt(S) of S >= 2 values (None for fewer).

  The Student-t interval of the mean over S repetitions of a random
  procedure (e.g. random splits of the real set); t falls back to z past
  the tabulated degrees of freedom or at another level.
  """
  values = np.asarray(values, np.float64)
  s = values.size
  if s < 2 or not np.all(np.isfinite(values)):
    return None
  t = _T975[s - 2] if level == 0.95 and s - 2 < len(_T975) else z_value(level)
  half = t * values.std(ddof=1) / math.sqrt(s)
  return (float(values.mean()) - half, float(values.mean()) + half)


def as_ci(row):
  """A (2,) bounds row as an entry's ci (None when either bound is NaN)."""
  if row is None:
    return None
  lo, hi = (float(v) for v in row)
  return None if math.isnan(lo) or math.isnan(hi) else (lo, hi)
