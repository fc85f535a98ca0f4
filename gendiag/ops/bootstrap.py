"""Bootstrap resampling as integer weights, and percentile intervals.

A bootstrap resample of n rows is a vector of counts w (sum n) drawn from a
multinomial; statistics that are sums over rows become weighted sums, so B
replicates of a kernel statistic need one blocked pass computing K W for the
(n, B) weight matrix instead of B passes. U-statistics drop pairs of the same
*original* row (the w_i^2 k(x_i, x_i) terms), which keeps them unbiased under
resampling with replacement.

References:
  Efron & Tibshirani, "An Introduction to the Bootstrap", 1993 (percentile
  intervals).
"""

import functools

import jax
import jax.numpy as jnp
import jax.scipy.stats  # noqa: F401  (registers jax.scipy.stats)


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
