"""Divergence frontiers, MAUVE and FI of feature sets, quantized.

`divergence_frontier`, `mauve` and `frontier_integral` follow mauve-text's
pipeline: L2-normalise each row, fit PCA on the union of both sets and keep
the leading components that explain 90% of the variance, cluster the union
with k-means, and compare the two cluster histograms p (real) and q (model)
with `gendiag.metrics.frontiers.histograms` (via `scores`). The
classifier estimator, without quantization, is
`gendiag.metrics.frontiers.classifier`.

Bias of the quantized estimate (measured by gendiag's tests): with
mauve-text's k = n/10 clusters, about 10 points of each set fall in a cluster
at every n, so the plug-in error never shrinks: MAUVE(P, P) ~ 0.96 and
FI(P, P) ~ 0.035 at every n from 500 to 8000 (d = 64), and PCA, normalisation
and quantization make shifted distributions look much closer than they are
(data processing). Treat those scores as a comparison tool with fixed
settings. `cluster_rule="cube_root"` (k = 5 n^(1/3), the growth that balances
the O(1/k) quantization error against the O(sqrt(k/n)) statistical error in
Liu et al. 2021) removes most of the finite-sample floor (MAUVE(P, P) -> 1 as
n grows), and is faster. `null_baseline=True` reports the floor of any
setting: the same pipeline on two random halves of the real set.

Uncertainty: `num_resamples=B` bootstraps the rows of each set given the
clustering (vmapped multinomial resamples of the cluster assignments), and
returns normal intervals centred on the estimate: replicates of a plug-in
divergence are biased (resampling repeats rows), so percentile intervals of
them can miss the estimate. The interval covers sampling noise at fixed
clusters, not the k-means seed (rerun with other keys for that).


References:
  Pillutla, Swayamdipta, Zellers, Thickstun, Welleck, Choi, Harchaoui. MAUVE:
  Measuring the Gap Between Neural Text and Human Text using Divergence
  Frontiers. NeurIPS 2021 (mauve-text 0.4.0 `compute_mauve` defaults).
  Liu, Pillutla, Welleck, Oh, Choi, Harchaoui. Divergence Frontiers for
  Generative Models: Sample Complexity, Quantization Effects, and Frontier
  Integrals. NeurIPS 2021.
"""

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag.metrics.frontiers import histograms
from gendiag.metrics.frontiers import scores as scores_lib
from gendiag.metrics.frontiers import smoothing as smoothing_lib
from gendiag.ops import quantize

CLUSTER_RULES = ("n/10", "cube_root")
CUBE_ROOT_CONSTANT = 5.0
SMOOTHINGS = tuple(m for m in smoothing_lib.ESTIMATORS if m != "add_constant")


def num_clusters_for(num_samples: int, rule: str = "n/10") -> int:
  """Number of clusters for `num_samples` points per set by a named rule.

    'n/10'       max(2, round(n / 10))       mauve-text's 'auto'
    'cube_root'  max(2, round(5 n^(1/3)))    k ~ n^(1/3) (Liu et al. 2021)

  Args:
    num_samples: n, the size of the smaller set.
    rule: one of `CLUSTER_RULES`.

  Returns:
    k >= 2.
  """
  _checks.check_positive_int(num_samples, "num_samples")
  if rule == "n/10":
    return max(2, int(round(num_samples / 10)))
  if rule == "cube_root":
    return max(2, int(round(CUBE_ROOT_CONSTANT * num_samples ** (1 / 3))))
  raise ValueError(f"cluster_rule must be one of {CLUSTER_RULES}; got "
                   f"{rule!r}. Or pass num_clusters=k.")


# --------------------------------------------------------------------------
# Features -> cluster labels.


@functools.partial(jax.jit, static_argnames="normalize")
def _union(real, generated, normalize):
  """[real; generated] in float32, rows L2-normalised if `normalize`.

  One program (the concatenation and the normalisation would otherwise
  compile separately on a first call).
  """
  x = jnp.concatenate([jnp.asarray(real, jnp.float32),
                       jnp.asarray(generated, jnp.float32)], axis=0)
  if not normalize:
    return x
  norm = jnp.linalg.norm(x, axis=1, keepdims=True)
  return x / jnp.where(norm > 0, norm, 1.0)   # zero rows stay zero (sklearn)


def _quantize(real, generated, key, *, num_clusters, normalize,
              explained_variance, num_restarts, max_iters, tol, init,
              block_size):
  """Cluster labels and counts of each set's rows after normalisation, PCA.

  Returns:
    (labels_real, labels_gen, counts_real, counts_gen, the k-means fit, the
    dimension clustered).
  """
  union = _union(real, generated, normalize)
  if explained_variance is not None:
    pca = quantize.pca_fit(union, explained_variance=explained_variance)
    union = quantize.pca_transform(pca, union)
  fit = quantize.kmeans(union, key=key, num_clusters=num_clusters,
                        num_restarts=num_restarts, max_iters=max_iters,
                        tol=tol, init=init, block_size=block_size)
  labels_real, labels_gen, counts_real, counts_gen = _split_counts(
      fit.labels, np.shape(real)[0], num_clusters)
  return (labels_real, labels_gen, counts_real, counts_gen, fit,
          int(union.shape[1]))


@functools.partial(jax.jit, static_argnames=("n", "k"))
def _split_counts(labels, n, k):
  """(labels[:n], labels[n:], and their (k,) float32 cluster counts)."""
  real, generated = labels[:n], labels[n:]
  return (real, generated, jnp.bincount(real, length=k).astype(jnp.float32),
          jnp.bincount(generated, length=k).astype(jnp.float32))


def _check_settings(smoothing, cluster_rule, num_clusters, explained_variance,
                    num_resamples, level, scaling_factor, num_weights):
  if smoothing not in SMOOTHINGS:
    raise ValueError(f"smoothing must be one of {SMOOTHINGS}; got "
                     f"{smoothing!r}.")
  if cluster_rule not in CLUSTER_RULES:
    raise ValueError(f"cluster_rule must be one of {CLUSTER_RULES}; got "
                     f"{cluster_rule!r}. Or pass num_clusters=k.")
  if num_clusters is not None:
    _checks.check_positive_int(num_clusters, "num_clusters", minimum=2)
  if explained_variance is not None and not 0.0 < explained_variance <= 1.0:
    raise ValueError("explained_variance must be in (0, 1], or None to skip "
                     f"PCA; got {explained_variance}.")
  _checks.check_positive_int(num_resamples, "num_resamples", minimum=0)
  if num_resamples == 1:
    raise ValueError("num_resamples must be 0 (no interval) or >= 2.")
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1); got {level}.")
  if not (math.isfinite(scaling_factor) and scaling_factor > 0):
    raise ValueError(f"scaling_factor must be > 0; got {scaling_factor}.")
  _checks.check_positive_int(num_weights, "num_weights", minimum=2)


def _split_real(real, key):
  """Two random halves of the real rows (sizes floor(n/2), ceil(n/2))."""
  n = np.shape(real)[0]
  perm = np.asarray(jax.random.permutation(key, n))
  real = np.asarray(real)
  return real[np.sort(perm[:n // 2])], real[np.sort(perm[n // 2:])]


def _null_fields(real, key_null, num_clusters, cluster_rule, c, settings, *,
                 smoothing, num_weights):
  """`null_baseline`'s MAUVE and FI: the pipeline on two halves of `real`.

  The halves get `num_clusters` clusters if given, else the rule's k at
  their size.
  """
  n = np.shape(real)[0]
  if n < 2:
    raise ValueError("null_baseline needs at least 2 real samples.")
  half_a, half_b = _split_real(real, key_null)
  k_null = (num_clusters if num_clusters is not None else
            num_clusters_for(len(half_a), cluster_rule))
  if n < k_null:
    raise ValueError(
        f"null_baseline: num_clusters={k_null} exceeds the {n} real "
        "points; pass more samples or a smaller num_clusters.")
  _, _, counts_a, counts_b, _, _ = _quantize(
      half_a, half_b, jax.random.fold_in(key_null, 1), num_clusters=k_null,
      **settings)
  _, _, null_front, _ = scores_lib.scores_jit(
      counts_a, counts_b, c, smoothing=smoothing, num_weights=num_weights)
  return dict(null_mauve=null_front.mauve,
              null_frontier_integral=null_front.frontier_integral)


def divergence_frontier(real: jax.Array, generated: jax.Array, *,
                        key: jax.Array,
                        num_clusters: Optional[int] = None,
                        cluster_rule: str = "n/10",
                        explained_variance: Optional[float] = 0.9,
                        normalize: bool = True,
                        num_restarts: int = 5, max_iters: int = 500,
                        tol: float = 1e-4, init: str = "random",
                        smoothing: str = "empirical",
                        scaling_factor: float = histograms.SCALING_FACTOR,
                        num_weights: int = histograms.NUM_WEIGHTS,
                        num_resamples: int = 0, level: float = 0.95,
                        null_baseline: bool = False,
                        block_size: int = quantize.DEFAULT_BLOCK_SIZE
                        ) -> scores_lib.FrontierResult:
  """The KL divergence frontier, MAUVE and FI of two feature sets, quantized.

  Pipeline (mauve-text's `compute_mauve`): x <- x / ||x||_2 per row; PCA of
  the union [real; generated] keeping the first r components whose
  cumulative explained variance reaches `explained_variance`; k-means of the
  union (`num_restarts` runs, the lowest inertia kept); counts N^P_a, N^Q_a
  of each set's rows in cluster a; p, q = smoothed counts; then

    F(P, Q) = {(KL(q || r_lam), KL(p || r_lam))}, r_lam = lam p + (1 - lam) q,
    MAUVE = area under (exp(-c KL(q || r_lam)), exp(-c KL(p || r_lam))),
    FI = sum_a [(p_a + q_a)/2 - p_a q_a (log p_a - log q_a)/(p_a - q_a)].

  The default k = max(2, round(min(n, m) / 10)) leaves MAUVE(P, P) ~ 0.96
  and FI(P, P) ~ 0.035 at every n (module docstring); compare scores only at
  identical settings and sample sizes, or use cluster_rule='cube_root'.
  Not jittable end to end (the PCA dimension depends on the data); the
  histogram scores and the bootstrap are jitted and vmapped.

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact).

  Not a loss: the scores depend on the features only through k-means
  cluster assignments, which are piecewise constant, so their gradient is
  zero almost everywhere.

  Args:
    real: (n, d) real (reference) features, P.
    generated: (m, d) model features, Q.
    key: PRNG key (k-means init, bootstrap, the null split).
    num_clusters: k; overrides `cluster_rule`. Needs n + m >= k.
    cluster_rule: 'n/10' (mauve-text) or 'cube_root' (k = 5 n^(1/3)),
      applied to n = min(n, m).
    explained_variance: PCA threshold in (0, 1] (mauve-text: 0.9); None
      skips PCA.
    normalize: L2-normalise rows first (hard-wired in mauve-text).
    num_restarts: k-means runs (mauve-text's `kmeans_num_redo`: 5).
    max_iters: Lloyd iterations per run at most (`kmeans_max_iter`: 500).
    tol: k-means stops when the squared centroid shift is below
      tol x mean feature variance.
    init: 'random' (k distinct points, as faiss does) or 'k-means++'.
    smoothing: distribution estimator of `mauve`/`frontier_integral`, one of
      `SMOOTHINGS` ('empirical' is mauve-text's MAUVE; MAUVE* is always in
      `mauve_star`).
    scaling_factor: MAUVE's c (mauve-text: 5).
    num_weights: lam grid size (mauve-text: 25).
    num_resamples: bootstrap replicates for `*_ci` and `*_std` (0: none).
    level: confidence level of the intervals.
    null_baseline: also score two random halves of `real` against each
      other with the same settings (k from the rule at the halves' size, or
      the given num_clusters): `null_mauve`, `null_frontier_integral`.
    block_size: rows per block in the k-means assignment.

  Returns:
    FrontierResult. Check `.converged`: False means k-means hit max_iters.

  Raises:
    ValueError: non-2-D, empty or non-finite inputs, mismatched feature
      dimensions, fewer points than clusters, unknown settings.

  References:
    Pillutla et al. 2021 and mauve-text 0.4.0 (`compute_mauve`: normalise,
    PCA at 0.9, faiss k-means with k = n/10, 5 redos, 500 iterations, random
    init; c = 5; 25 weights). Differences: real rows are stacked first, PCA
    is fitted by `eigh` of the covariance (the same subspace), k-means
    stops at a centroid-shift tolerance, and its seed is a JAX key, so
    values match mauve-text in distribution over seeds, not bitwise.
    Liu et al. 2021 (the frontier integral, the smoothed estimators and the
    k ~ n^(1/3) rate).
  """
  _check_settings(smoothing, cluster_rule, num_clusters, explained_variance,
                  num_resamples, level, scaling_factor, num_weights)
  _checks.check_addressable("divergence_frontier", real=real,
                            generated=generated)
  real, generated = _checks.check_pair(real, generated, min_rows=1)
  (real, generated), _ = _checks.rescale(real, generated)  # scale-invariant
  n, m = np.shape(real)[0], np.shape(generated)[0]
  k = (int(num_clusters) if num_clusters is not None
       else num_clusters_for(min(n, m), cluster_rule))
  if n + m < k:
    raise ValueError(
        f"num_clusters={k} exceeds the {n + m} points of both sets together; "
        "pass more samples or a smaller num_clusters.")
  settings = dict(normalize=normalize, explained_variance=explained_variance,
                  num_restarts=num_restarts, max_iters=max_iters, tol=tol,
                  init=init, block_size=block_size)
  key_kmeans, key_boot, key_null = jax.random.split(key, 3)
  labels_real, labels_gen, counts_real, counts_gen, fit, dim = _quantize(
      real, generated, key_kmeans, num_clusters=k, **settings)
  # A host scalar: a jnp conversion would compile a program of its own.
  c = np.float32(scaling_factor)
  p, q, front, star = scores_lib.scores_jit(counts_real, counts_gen, c,
                                            smoothing=smoothing,
                                            num_weights=int(num_weights))
  extra = {}
  if num_resamples:
    mauves, fis = scores_lib.bootstrap_scores(
        key_boot, labels_real, labels_gen, c, num_clusters=k,
        num_resamples=int(num_resamples), smoothing=smoothing,
        num_weights=int(num_weights))
    extra.update(scores_lib.interval_fields(front, mauves, fis, level))
  if null_baseline:
    extra.update(_null_fields(
        real, key_null, k if num_clusters is not None else None, cluster_rule,
        c, settings, smoothing=smoothing, num_weights=int(num_weights)))
  return scores_lib.FrontierResult(
      mauve=front.mauve, frontier_integral=front.frontier_integral,
      mauve_star=star.mauve, frontier_integral_star=star.frontier_integral,
      weights=front.weights, kl_generated=front.kl_generated,
      kl_real=front.kl_real, real_histogram=p, generated_histogram=q,
      real_counts=counts_real, generated_counts=counts_gen,
      converged=fit.converged, num_iterations=fit.num_iterations,
      num_clusters=k, num_components=dim, smoothing=smoothing, **extra)


def mauve(real: jax.Array, generated: jax.Array, *, key: jax.Array,
          **kwargs) -> scores_lib.FrontierResult:
  """MAUVE of two feature sets (Pillutla et al. 2021), quantized.

  MAUVE(P, Q) = area under {(exp(-c KL(Q || R_lam)), exp(-c KL(P || R_lam)))
  : lam in (0, 1)} closed by (1, 0) and (0, 1), on cluster histograms of the
  features; in (0, 1], 1 iff the histograms are equal, larger = closer.
  With the defaults this is mauve-text's `compute_mauve(p_features=real,
  q_features=generated)` (up to the k-means seed): MAUVE(P, P) ~ 0.96 with
  k = n/10, so read scores relative to `null_baseline=True`'s floor or use
  cluster_rule='cube_root'.

  Not a loss: the scores depend on the features only through k-means
  cluster assignments, which are piecewise constant, so their gradient is
  zero almost everywhere.

  Args:
    real: (n, d) real features.
    generated: (m, d) model features.
    key: PRNG key.
    **kwargs: the keyword-only settings of `divergence_frontier`
      (num_clusters, cluster_rule, explained_variance, num_restarts,
      max_iters, smoothing, scaling_factor, num_weights, num_resamples,
      level, null_baseline, ...).

  Returns:
    FrontierResult; the score is `.mauve` (and `.mauve_ci`, `.null_mauve`).

  References:
    Pillutla et al. NeurIPS 2021; mauve-text 0.4.0 defaults.
  """
  return divergence_frontier(real, generated, key=key, **kwargs)


def frontier_integral(real: jax.Array, generated: jax.Array, *,
                      key: jax.Array, **kwargs) -> scores_lib.FrontierResult:
  """The frontier integral of two feature sets (Liu et al. 2021), quantized.

  FI(P, Q) = 2 int_0^1 [lam KL(P || R_lam) + (1 - lam) KL(Q || R_lam)] dlam
           = sum_a [(p_a + q_a)/2 - p_a q_a (log p_a - log q_a)/(p_a - q_a)]
  on cluster histograms; in [0, 1], 0 iff equal, 1 iff disjoint, smaller =
  closer, independent of MAUVE's c. Quantization lowers it (data
  processing); small samples raise it. Liu et al. recommend k ~ n^(1/3)
  (cluster_rule='cube_root') and smoothed histograms (e.g.
  smoothing='krichevsky_trofimov', also always in `.frontier_integral_star`).

  Not a loss: the scores depend on the features only through k-means
  cluster assignments, which are piecewise constant, so their gradient is
  zero almost everywhere.

  Args:
    real: (n, d) real features.
    generated: (m, d) model features.
    key: PRNG key.
    **kwargs: the keyword-only settings of `divergence_frontier`.

  Returns:
    FrontierResult; the score is `.frontier_integral`.

  References:
    Liu, Pillutla, Welleck, Oh, Choi, Harchaoui. NeurIPS 2021.
  """
  return divergence_frontier(real, generated, key=key, **kwargs)


def null_baseline(real: jax.Array, *, key: jax.Array,
                  **kwargs) -> scores_lib.FrontierResult:
  """The quantized frontier of two random halves of the real set.

  Real against real, so the population MAUVE is 1 and FI 0: the values show
  the estimator's floor at these settings (about half the sample size).

  Args:
    real: (n, d) real features, n >= 2.
    key: PRNG key (the split, then the pipeline).
    **kwargs: the settings of `divergence_frontier` (null_baseline excluded).

  Returns:
    FrontierResult of (first half, second half).
  """
  if kwargs.get("null_baseline"):
    raise ValueError("null_baseline() already is the null baseline.")
  _checks.check_addressable("null_baseline", real=real)
  real = _checks.check_features(real, "real", min_rows=2)
  key_split, key_run = jax.random.split(key)
  half_a, half_b = _split_real(real, key_split)
  return divergence_frontier(half_a, half_b, key=key_run, **kwargs)
