"""From cluster counts to the quantized frontier's scores and intervals.

Counts are smoothed (`gendiag.metrics.frontiers.smoothing`) into histograms
p (real) and q (model), whose frontier, MAUVE and FI are those of
`gendiag.metrics.frontiers.histograms`. Everything here is jitted and
vmappable over counts, so the bootstrap (`bootstrap_scores`) resamples the
rows of each set given the clustering in one vmapped call, and the
intervals are normal intervals centred on the estimate (replicates of a
plug-in divergence are biased: resampling repeats rows).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from gendiag import _results
from gendiag.metrics.frontiers import histograms
from gendiag.metrics.frontiers import smoothing as smoothing_lib
from gendiag.ops import intervals


@_results.result(static=("num_clusters", "num_components", "smoothing"))
class FrontierResult:
  """The quantized divergence frontier of two feature sets.

  Attributes:
    mauve: () MAUVE on the `smoothing` histograms, in (0, 1], 1 = identical.
    frontier_integral: () FI on the same histograms, in [0, 1], 0 = identical.
    mauve_star: () MAUVE* (Krichevsky-Trofimov histograms, mauve-text's).
    frontier_integral_star: () FI* (the same).
    weights: (m,) mixture weights lam of R_lam = lam P + (1 - lam) Q.
    kl_generated: (m,) KL(Q || R_lam) (low quality when large).
    kl_real: (m,) KL(P || R_lam) (low diversity when large).
    real_histogram: (k,) smoothed cluster probabilities of the real set.
    generated_histogram: (k,) the same for the model.
    real_counts: (k,) real rows per cluster.
    generated_counts: (k,) generated rows per cluster.
    converged: () bool, whether k-means met its tolerance before max_iters.
    num_iterations: () Lloyd iterations of the kept k-means run.
    mauve_ci: (2,) bootstrap interval of `mauve`, or None (num_resamples=0).
    frontier_integral_ci: (2,) the same for `frontier_integral`, or None.
    mauve_std: () bootstrap standard deviation of `mauve`, or None.
    frontier_integral_std: () the same for `frontier_integral`, or None.
    null_mauve: () MAUVE of two random halves of the real set with the same
      settings (the estimator's floor), or None (null_baseline=False).
    null_frontier_integral: () FI of the same halves, or None.
    num_clusters: k.
    num_components: PCA components kept (the feature dimension without PCA).
    smoothing: the distribution estimator of `mauve` and `frontier_integral`.
  """
  mauve: jax.Array
  frontier_integral: jax.Array
  mauve_star: jax.Array
  frontier_integral_star: jax.Array
  weights: jax.Array
  kl_generated: jax.Array
  kl_real: jax.Array
  real_histogram: jax.Array
  generated_histogram: jax.Array
  real_counts: jax.Array
  generated_counts: jax.Array
  converged: jax.Array
  num_iterations: jax.Array
  mauve_ci: Optional[jax.Array] = None
  frontier_integral_ci: Optional[jax.Array] = None
  mauve_std: Optional[jax.Array] = None
  frontier_integral_std: Optional[jax.Array] = None
  null_mauve: Optional[jax.Array] = None
  null_frontier_integral: Optional[jax.Array] = None
  num_clusters: int = 0
  num_components: int = 0
  smoothing: str = "empirical"


def _smooth(counts, method):
  return smoothing_lib.estimate(counts, method)


def scores(counts_real, counts_gen, scaling_factor, *, smoothing,
           num_weights):
  """(p, q, Frontier) of counts smoothed by `smoothing`; pure and jittable."""
  p, q = _smooth(counts_real, smoothing), _smooth(counts_gen, smoothing)
  lam = jnp.asarray(histograms.mixture_weights(num_weights), p.dtype)
  return p, q, histograms.frontier_from_histograms(
      p, q, lam, scaling_factor)


@functools.partial(jax.jit, static_argnames=("smoothing", "num_weights"))
def scores_jit(counts_real, counts_gen, scaling_factor, *, smoothing,
               num_weights):
  """(p, q, Frontier at `smoothing`, Frontier of the KT histograms: the *)."""
  p, q, front = scores(counts_real, counts_gen, scaling_factor,
                       smoothing=smoothing, num_weights=num_weights)
  _, _, star = scores(counts_real, counts_gen, scaling_factor,
                      smoothing="krichevsky_trofimov",
                      num_weights=num_weights)
  return p, q, front, star


@functools.partial(jax.jit, static_argnames=(
    "num_clusters", "num_resamples", "smoothing", "num_weights"))
def bootstrap_scores(key, labels_real, labels_gen, scaling_factor, *,
                     num_clusters, num_resamples, smoothing, num_weights):
  """(B,) MAUVE and FI of row-resampled cluster counts, vmapped over B."""
  key_r, key_g = jax.random.split(key)
  w_real = intervals.resample_weights(key_r, labels_real.shape[0],
                                      num_resamples)
  w_gen = intervals.resample_weights(key_g, labels_gen.shape[0],
                                     num_resamples)

  def one(wr, wg):
    cr = jax.ops.segment_sum(wr, labels_real, num_segments=num_clusters)
    cg = jax.ops.segment_sum(wg, labels_gen, num_segments=num_clusters)
    _, _, front = scores(cr, cg, scaling_factor, smoothing=smoothing,
                         num_weights=num_weights)
    return front.mauve, front.frontier_integral

  return jax.vmap(one)(w_real, w_gen)


@functools.partial(jax.jit, static_argnames=("level", "upper"))
def _interval(estimate, replicates, level, upper):
  """(the normal interval clipped to [0, upper] (2,), std of the replicates)."""
  lo, hi = intervals.normal_interval(estimate, replicates, level=level)
  return (jnp.stack([jnp.maximum(lo, 0.0), jnp.minimum(hi, upper)]),
          jnp.std(replicates, ddof=1))


def interval_fields(front, mauves, fis, level):
  """Result fields of the MAUVE and FI intervals from their replicates."""
  mauve_ci, mauve_std = _interval(front.mauve, mauves, float(level), 1.0)
  fi_ci, fi_std = _interval(front.frontier_integral, fis, float(level), 1.0)
  return dict(mauve_ci=mauve_ci, frontier_integral_ci=fi_ci,
              mauve_std=mauve_std, frontier_integral_std=fi_std)
