"""Quantization of features: PCA and k-means in JAX, seeded by explicit keys.

Shared by PRD curves (Sajjadi et al. 2018), MAUVE and divergence frontiers
(Pillutla et al. 2021, Liu et al. 2021) and the data-copying test (Meehan et
al. 2020): each turns continuous features into cluster histograms.

  PCA      eigh of the d x d covariance (not a full SVD of the data: 3-4x
           faster at 10k x 1024, same subspace); components sorted by
           variance, signs fixed so the largest-magnitude loading is positive.
  k-means  k-means++ (Arthur & Vassilvitskii 2007) or random init; Lloyd
           iterations in `lax.while_loop` stopping when the squared centroid
           shift falls below tol * mean feature variance (scikit-learn's rule)
           or after max_iters; empty clusters re-seeded at the points farthest
           from their centroids; restarts run one after another (`lax.map`,
           each stopping at its own convergence), the lowest inertia kept.
           Assignment is a blocked nearest-centroid search
           (`knn.knn`), so memory is block_size x k, never n x k.
           With `mesh=`, rows are sharded and sums/counts/inertia `psum`med.
"""

import functools
from typing import Optional

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.ops import distances
from gendiag.ops import knn
from gendiag.ops import sharding
from gendiag.ops import linalg

DEFAULT_BLOCK_SIZE = 4096
INITS = ("k-means++", "random")


@_results.result
class PCA:
  """A fitted PCA: x -> (x - mean) @ components.

  Attributes:
    mean: (d,) mean of the fitted data.
    components: (d, r) orthonormal principal directions, by variance.
    explained_variance_ratio: (r,) share of the total variance of each.
  """
  mean: jax.Array
  components: jax.Array
  explained_variance_ratio: jax.Array


@jax.jit
def _pca_eigh(x):
  mean, cov = linalg.mean_and_covariance(x)
  evals, evecs = jnp.linalg.eigh(cov)
  evals, evecs = evals[::-1], evecs[:, ::-1]
  signs = jnp.sign(evecs[jnp.argmax(jnp.abs(evecs), axis=0),
                         jnp.arange(evecs.shape[1])])
  ratio = jnp.maximum(evals, 0.0) / jnp.sum(jnp.maximum(evals, 0.0))
  return mean, evecs * jnp.where(signs == 0, 1.0, signs), ratio


def pca_fit(x: jax.Array, *, num_components: Optional[int] = None,
            explained_variance: Optional[float] = None) -> PCA:
  """Fits PCA by `eigh` of the covariance.

  Give at most one of `num_components` and `explained_variance`; with
  neither, all d components are kept. With `explained_variance=t` the kept
  count is the first r whose cumulative ratio reaches t
  (r = argmax(cumsum >= t) + 1, mauve-text's rule).

  Args:
    x: (n, d) data, n >= 2.
    num_components: components to keep.
    explained_variance: threshold in (0, 1].

  Returns:
    A `PCA`.
  """
  x = _checks.check_features(x, "x", min_rows=2)
  if num_components is not None and explained_variance is not None:
    raise ValueError("pass num_components or explained_variance, not both.")
  d = np.shape(x)[1]
  mean, components, ratio = _pca_eigh(jnp.asarray(x))
  if explained_variance is not None:
    if not 0.0 < explained_variance <= 1.0:
      raise ValueError("explained_variance must be in (0, 1]; got "
                       f"{explained_variance}.")
    cumulative = np.cumsum(np.asarray(ratio, np.float64))
    reached = cumulative >= explained_variance - 1e-7
    r = int(np.argmax(reached)) + 1 if reached.any() else d
  elif num_components is not None:
    _checks.check_positive_int(num_components, "num_components")
    if num_components > d:
      raise ValueError(f"num_components={num_components} exceeds the {d} "
                       "features.")
    r = int(num_components)
  else:
    r = d
  # Kept columns sliced on the host (a JAX slice compiles a program per r).
  return PCA(mean=mean, components=jnp.asarray(np.asarray(components)[:, :r]),
             explained_variance_ratio=jnp.asarray(np.asarray(ratio)[:r]))


def pca_transform(pca: PCA, x: jax.Array) -> jax.Array:
  """Projects (n, d) rows onto the fitted components: (n, r)."""
  return _project(jnp.asarray(x), pca.mean, pca.components)


@jax.jit
def _project(x, mean, components):
  return jnp.matmul(x - mean, components, precision=linalg.HIGHEST)


@_results.result(static=("num_clusters",))
class KMeans:
  """A k-means solution.

  Attributes:
    centroids: (k, d) cluster centres.
    labels: (n,) int32 index of each point's nearest centroid.
    inertia: sum of squared distances of points to their centroids.
    num_iterations: Lloyd iterations run (of the best restart).
    converged: whether the centroid shift fell below tolerance before
      `max_iters` (of the best restart).
    num_clusters: k.
  """
  centroids: jax.Array
  labels: jax.Array
  inertia: jax.Array
  num_iterations: jax.Array
  converged: jax.Array
  num_clusters: int


def assign(x: jax.Array, centroids: jax.Array, *,
           block_size: int = DEFAULT_BLOCK_SIZE,
           mesh: Optional[Mesh] = None):
  """Nearest centroid of each row, blocked: ((n,) labels, (n,) sq. distances).

  With `mesh`, the rows of x are sharded over its devices and each device
  searches its shard against the (replicated, small) centroids; the per-row
  results come back replicated.
  """
  if mesh is None:
    return _nearest_centroid(x, centroids, block_size)
  spec = PartitionSpec(tuple(mesh.axis_names))
  labels, sq = jax.shard_map(
      lambda xl, c: assign(xl, c, block_size=block_size), mesh=mesh,
      in_specs=(spec, PartitionSpec()), out_specs=(spec, spec))(
          sharding.shard_rows(x, mesh), centroids)
  n = x.shape[0]
  return (sharding.unshard_rows(labels, n, mesh),
          sharding.unshard_rows(sq, n, mesh))


# Up to this many clusters, Lloyd's two steps take a shortcut on CPU: the
# assignment is one matmul and an argmin over (rows, k) blocks of at most
# ASSIGN_BLOCK_BYTES (no padded copy of x for row blocks; ~2.4x faster at
# k = 20), and the update sums by one-hot matmul (2 n k d FLOPs) instead of
# a scatter, which is serial on XLA:CPU and, under vmap over runs (PRD,
# restarts), copies x once per run. Above it `knn`'s blocked search and the
# scatter are faster (measured at k = 2000, d = 300).
FEW_CLUSTERS = 64
ASSIGN_BLOCK_BYTES = 1 << 25


def _nearest_centroid(x, centroids, block_size):
  """(labels, squared distances) of the nearest centroid; ties go to the
  lower index (as `knn`)."""
  if centroids.shape[0] > FEW_CLUSTERS:
    dist, idx = knn.knn(x, centroids, k=1, block_size=block_size)
    return idx[:, 0], dist[:, 0] ** 2
  rows = max(block_size, ASSIGN_BLOCK_BYTES // (4 * centroids.shape[0]))

  def nearest(xb, _):
    d2 = distances.sq_distances(xb, centroids)
    return jnp.argmin(d2, axis=1).astype(jnp.int32), jnp.min(d2, axis=1)
  return distances.map_row_blocks(nearest, x, block_size=rows)


def _init_plus_plus(key, x, k):
  """k-means++: each new centre drawn with probability prop. to D(x)^2.

  Draws by inverse CDF (one uniform against the cumulative D^2; a
  Gumbel-max draw would need n random numbers per centre, 25% of the time
  at k = 1000). The loop carries the chosen row indices, not the centres:
  under vmap (restarts, PRD's runs) a (runs, k, d) carry is rewritten each
  step.
  """
  n = x.shape[0]
  key_first, key_rest = jax.random.split(key)
  first = jax.random.randint(key_first, (), 0, n)
  picks = jnp.zeros((k,), jnp.int32).at[0].set(first)
  x_sq = jnp.sum(x * x, axis=1)
  min_sq = _sq_dist_to(x, x_sq, first)

  def body(i, state):
    chosen, best = state
    # All points coincide with chosen centres: fall back to uniform.
    weights = jnp.where(jnp.sum(best) > 0, best, jnp.ones_like(best))
    cdf = jnp.cumsum(weights)
    u = jax.random.uniform(jax.random.fold_in(key_rest, i), (), cdf.dtype)
    pick = jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"),
                       n - 1)
    # A weight-0 row (a chosen centre) is never drawn in exact arithmetic;
    # if rounding in the parallel cumsum lands on one, take the farthest.
    pick = jnp.where(weights[pick] > 0, pick, jnp.argmax(weights))
    chosen = chosen.at[i].set(pick.astype(jnp.int32))
    return chosen, jnp.minimum(best, _sq_dist_to(x, x_sq, pick))

  picks, _ = lax.fori_loop(1, k, body, (picks, min_sq))
  return x[picks]


def _sq_dist_to(x, x_sq, row):
  """|x_i - x_row|^2 = |x_i|^2 - 2 x_i.x_row + |x_row|^2 (clipped at 0;
  exactly 0 at `row`): one matrix-vector product, which reads x once for all
  runs under vmap (PRD's 10; the fused difference form read it per run)."""
  point = x[row]
  sq = x_sq - 2.0 * jnp.matmul(x, point, precision=linalg.HIGHEST) + x_sq[row]
  return jnp.maximum(sq, 0.0).at[row].set(0.0)


def _update(x, labels, sq_dists, k):
  """New centroids; empty clusters re-seeded at the farthest points."""
  if k <= FEW_CLUSTERS:   # see FEW_CLUSTERS
    one_hot = jax.nn.one_hot(labels, k, dtype=x.dtype)
    sums = jnp.matmul(one_hot.T, x, precision=linalg.HIGHEST)
    counts = jnp.sum(one_hot, axis=0)
  else:
    sums = jax.ops.segment_sum(x, labels, num_segments=k)
    counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), labels,
                                 num_segments=k)
  centroids = sums / jnp.maximum(counts, 1.0)[:, None]
  empty = counts == 0
  _, farthest = lax.top_k(sq_dists, min(k, x.shape[0]))
  rank = jnp.clip(jnp.cumsum(empty) - 1, 0, farthest.shape[0] - 1)
  return jnp.where(empty[:, None], x[farthest[rank]], centroids)


def _initial_centroids(key, x, k, init):
  if init == "k-means++":
    return _init_plus_plus(key, x, k)
  return x[jax.random.choice(key, x.shape[0], (k,), replace=False)]


def _kmeans_single(centroids, x, *, k, max_iters, tol, block_size):
  """Lloyd's iterations from `centroids`: (centroids, labels, inertia,
  iterations, converged)."""
  threshold = tol * jnp.mean(jnp.var(x, axis=0))

  def cond(state):
    _, it, shift = state
    return (it < max_iters) & (shift > threshold)

  def body(state):
    cents, it, _ = state
    labels, sq = assign(x, cents, block_size=block_size)
    new = _update(x, labels, sq, k)
    return new, it + 1, jnp.sum((new - cents) ** 2)

  centroids, iters, shift = lax.while_loop(
      cond, body, (centroids, jnp.int32(0), jnp.asarray(jnp.inf, x.dtype)))
  labels, sq = assign(x, centroids, block_size=block_size)
  return centroids, labels, jnp.sum(sq), iters, shift <= threshold


def _kmeans_single_sharded(centroids, x, *, k, max_iters, tol, block_size,
                           mesh):
  """`_kmeans_single` with the rows of x sharded over `mesh`.

  The initialisation (`_kmeans_best`'s) and the tolerance are the
  single-device code in the global view, run on x as it comes in:
  replicated when x is a host array (each device then does the k cheap D^2
  passes itself), partitioned by
  `jit` when the caller passes x already row-sharded. This is the choice
  that picks exactly the same points as the single-device path with the
  same key (the categorical draws are the same Gumbel-max over all n
  points); k-means here serves PRD/MAUVE/C_T histograms of at most ~1e5
  rows of PCA-reduced features, which fit one device. Lloyd's iterations,
  the part that scales with n x k x iterations, run under `shard_map`:
  each device assigns its rows to the replicated centroids, and the
  centroid sums, counts and inertia are `psum`med; empty clusters are
  re-seeded from the global k farthest points, found among each shard's k
  farthest (k distances all-gathered per device).
  """
  n = x.shape[0]
  axes = tuple(mesh.axis_names)
  spec = PartitionSpec(axes)
  threshold = tol * jnp.mean(jnp.var(x, axis=0))
  num_far = min(k, n)

  def shard_fn(xl, valid, cents, threshold):
    w = valid.astype(xl.dtype)

    def update(labels, sq):
      sums = lax.psum(jax.ops.segment_sum(xl * w[:, None], labels,
                                          num_segments=k), axes)
      counts = lax.psum(jax.ops.segment_sum(w, labels, num_segments=k), axes)
      new = sums / jnp.maximum(counts, 1.0)[:, None]
      empty = counts == 0
      # Global top-k farthest rows, ties to the lower row as in `_update`:
      # every shard's k farthest, gathered in device (= row) order, top-k'd
      # again; the owner of each pick sends its row by a psum.
      num_local = min(num_far, xl.shape[0])
      local_d, local_i = lax.top_k(jnp.where(valid, sq, -jnp.inf), num_local)
      _, far = lax.top_k(lax.all_gather(local_d, axes, tiled=True), num_far)
      rank = jnp.clip(jnp.cumsum(empty) - 1, 0, num_far - 1)
      pick = far[rank]
      mine = pick // num_local == lax.axis_index(axes)
      seeds = lax.psum(jnp.where(mine[:, None],
                                 xl[local_i[pick % num_local]], 0.0), axes)
      return jnp.where(empty[:, None], seeds, new)

    def cond(state):
      _, it, shift = state
      return (it < max_iters) & (shift > threshold)

    def body(state):
      cents, it, _ = state
      new = update(*assign(xl, cents, block_size=block_size))
      return new, it + 1, jnp.sum((new - cents) ** 2)

    cents, iters, shift = lax.while_loop(
        cond, body, (cents, jnp.int32(0), jnp.asarray(jnp.inf, xl.dtype)))
    labels, sq = assign(xl, cents, block_size=block_size)
    inertia = lax.psum(jnp.sum(jnp.where(valid, sq, 0.0)), axes)
    return cents, labels, inertia, iters, shift <= threshold

  centroids, labels, inertia, iters, converged = jax.shard_map(
      shard_fn, mesh=mesh,
      in_specs=(spec, spec, PartitionSpec(), PartitionSpec()),
      out_specs=(PartitionSpec(), spec, PartitionSpec(), PartitionSpec(),
                 PartitionSpec()))(
                     sharding.shard_rows(x, mesh),
                     sharding.shard_rows(jnp.ones((n,), bool), mesh),
                     centroids, threshold)
  return (centroids, sharding.unshard_rows(labels, n, mesh), inertia, iters,
          converged)


@functools.partial(jax.jit, static_argnames=("k", "num_restarts", "max_iters",
                                             "init", "block_size", "mesh"))
def _kmeans_best(key, x, tol, *, k, num_restarts, max_iters, init,
                 block_size, mesh=None):
  """Restarts' Lloyd loops one after another; the lowest-inertia run.

  The initialisations are vmapped: k-means++ is k sequential D^2 passes,
  each a matrix-vector product that reads all of x, so the restarts share
  each read (one (n, d) x (d, restarts) product per step; 5 restarts at
  k = 1000 on 20k x 934 rows: 14.2 -> 4.5 s). The Lloyd loops run by
  `lax.map`, not `vmap`: each stops at its own convergence, where vmapped
  loops would all run as long as the slowest (mauve-text's 5 restarts at
  5k x 1024 stop after 12 to 21 iterations: 78 instead of 105
  restart-iterations, 1.6x faster; results bitwise equal).
  """
  keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(
      jnp.arange(num_restarts))
  starts = jax.vmap(lambda kr: _initial_centroids(kr, x, k, init))(keys)
  options = dict(x=x, k=k, max_iters=max_iters, tol=tol,
                 block_size=block_size)
  if mesh is None:
    single = functools.partial(_kmeans_single, **options)
  else:
    single = functools.partial(_kmeans_single_sharded, **options, mesh=mesh)
  runs = jax.lax.map(single, starts)
  best = jnp.argmin(runs[2])
  return jax.tree.map(lambda a: a[best], runs)


def kmeans(x: jax.Array, *, key: jax.Array, num_clusters: int,
           num_restarts: int = 1, max_iters: int = 300, tol: float = 1e-4,
           init: str = "k-means++",
           block_size: int = DEFAULT_BLOCK_SIZE,
           mesh: Optional[Mesh] = None) -> KMeans:
  """Lloyd's k-means with k-means++ (or random) init and restarts.

  Args:
    x: (n, d) points, n >= num_clusters.
    key: a `jax.random` key (restart r uses fold_in(key, r)).
    num_clusters: k.
    num_restarts: independent runs; the one with the lowest inertia is kept.
    max_iters: cap on Lloyd iterations per run.
    tol: stop when the summed squared centroid shift is below
      tol * mean(var(x, axis=0)).
    init: 'k-means++' or 'random' (k distinct points).
    block_size: rows per block in assignment.
    mesh: shard the rows of x over this mesh's devices (see
      `_kmeans_single_sharded`): same centroids and labels as without, up
      to float32 summation order.

  Returns:
    A `KMeans` (check `.converged`; it is False when max_iters was hit).
  """
  _checks.check_positive_int(num_clusters, "num_clusters")
  _checks.check_positive_int(num_restarts, "num_restarts")
  _checks.check_positive_int(max_iters, "max_iters")
  x = _checks.check_features(x, "x", min_rows=num_clusters)
  if init not in INITS:
    raise ValueError(f"init must be one of {INITS}; got {init!r}.")
  centroids, labels, inertia, iters, converged = _kmeans_best(
      key, jnp.asarray(x), tol, k=num_clusters, num_restarts=num_restarts,
      max_iters=max_iters, init=init, block_size=block_size, mesh=mesh)
  return KMeans(centroids=centroids, labels=labels, inertia=inertia,
                num_iterations=iters, converged=converged,
                num_clusters=num_clusters)


def cluster_histograms(real: jax.Array, generated: jax.Array, *,
                       key: jax.Array, num_clusters: int,
                       num_restarts: int = 1, max_iters: int = 300,
                       tol: float = 1e-4, init: str = "k-means++",
                       block_size: int = DEFAULT_BLOCK_SIZE):
  """Cluster the union jointly; return each side's normalised histogram.

  Args:
    real: (n, d) real features.
    generated: (m, d) generated features.
    key, num_clusters, num_restarts, max_iters, tol, init, block_size: as
      in `kmeans`, applied to the (n + m, d) union (real rows first).

  Returns:
    (p, q): (k,) probability vectors of real and generated rows over the
    clusters.
  """
  real, generated = _checks.check_pair(real, generated)
  union = jnp.concatenate([jnp.asarray(real), jnp.asarray(generated)], axis=0)
  fit = kmeans(union, key=key, num_clusters=num_clusters,
               num_restarts=num_restarts, max_iters=max_iters, tol=tol,
               init=init, block_size=block_size)
  n = np.shape(real)[0]
  p = jnp.bincount(fit.labels[:n], length=num_clusters) / n
  q = jnp.bincount(fit.labels[n:], length=num_clusters) / (union.shape[0] - n)
  return p, q
