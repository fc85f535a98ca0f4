"""The data-copying test C_T (Meehan et al. 2020).

A Mann-Whitney U test per k-means cell of the training set of "generated
samples are closer to train than held-out test samples are"; below 0 means
copying, above 0 underfitting. Nearest-neighbour distances are blocked and
exact (`gendiag.metrics.memorization.exact_distance`); the other
memorisation diagnostics are in `gendiag.metrics.memorization`.

References:
  Meehan, Chaudhuri & Dasgupta, "A Non-Parametric Test to Detect
  Data-Copying in Generative Models", AISTATS 2020 (C_T; reference code
  github.com/casey-meehan/data-copying as vendored by marcojira/fld).
"""

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.metrics import memorization
from gendiag.ops import distances
from gendiag.ops import quantize


@_results.result(static=("num_cells",))
class DataCopyingResult:
  """C_T and its per-cell parts.

  Attributes:
    c_t: the test statistic; << 0 means generated samples sit closer to
      the training set than held-out samples do (copying), >> 0 that they sit
      farther (underfitting); about N(0, 1) under the null.
    cell_z: (k,) Z-scored Mann-Whitney U of each cell (0 for cells without
      generated samples).
    cell_test_fraction: (k,) share of the test set in each cell, P_n(pi).
    cell_generated_fraction: (k,) share of the generated set, Q_m(pi).
    cell_used: (k,) bool, Q_m(pi) > tau (the cells averaged).
    generated_distance: (m,) distance of each generated sample to its
      nearest training sample in the same cell.
    test_distance: (n,) the same for the test samples.
    generated_cells, test_cells, train_cells: cell of each sample.
    kmeans_converged: whether the k-means of the training set converged.
    num_cells: k.
  """
  c_t: jax.Array
  cell_z: jax.Array
  cell_test_fraction: jax.Array
  cell_generated_fraction: jax.Array
  cell_used: jax.Array
  generated_distance: jax.Array
  test_distance: jax.Array
  generated_cells: jax.Array
  test_cells: jax.Array
  train_cells: jax.Array
  kmeans_converged: jax.Array
  num_cells: int


def _nn_in_cell(x, x_cells, train, train_cells, block_size):
  """Distance of each row of x to its nearest training row of the same cell.

  Blocked over rows of x (block_size x n_train at a time); the minimum is
  recomputed as an exact difference.
  """
  def block(args, _):
    xb, cb = args
    d2 = distances.sq_distances(xb, train)
    d2 = jnp.where(cb[:, None] == train_cells[None, :], d2, jnp.inf)
    j = jnp.argmin(d2, axis=1)
    exact = memorization.exact_distance(xb, train[j])
    return jnp.where(jnp.isfinite(jnp.min(d2, axis=1)), exact, jnp.inf)

  n = x.shape[0]
  if n <= block_size:
    return block((x, x_cells), 0)
  num_blocks = -(-n // block_size)
  pad = num_blocks * block_size - n
  xs = jnp.pad(x, ((0, pad), (0, 0))).reshape(num_blocks, block_size, -1)
  cs = jnp.pad(x_cells, (0, pad)).reshape(num_blocks, block_size)
  out = jax.lax.map(lambda a: block(a, 0), (xs, cs))
  return out.reshape(-1)[:n]


def _mann_whitney_u(gen_d, gen_cells, test_d, test_cells, k):
  """Per cell U = sum over (g, t) pairs of [L(g) > L(t)] + [L(g) = L(t)] / 2.

  scipy.stats.mannwhitneyu(L(Q_m), L(P_n)).statistic, by binary search of
  each generated distance in the cell's sorted test distances.
  """
  def one_cell(c):
    sorted_t = jnp.sort(jnp.where(test_cells == c, test_d, jnp.inf))
    less = jnp.searchsorted(sorted_t, gen_d, side="left")
    leq = jnp.searchsorted(sorted_t, gen_d, side="right")
    counts = less + 0.5 * (leq - less)
    return jnp.sum(jnp.where(gen_cells == c, counts, 0.0))

  return jax.vmap(one_cell)(jnp.arange(k))


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _c_t(train, test, gen, train_cells, test_cells, gen_cells, min_count, k,
         block_size):
  gen_d = _nn_in_cell(gen, gen_cells, train, train_cells, block_size)
  test_d = _nn_in_cell(test, test_cells, train, train_cells, block_size)
  u = _mann_whitney_u(gen_d, gen_cells, test_d, test_cells, k)
  m_c = jnp.bincount(gen_cells, length=k).astype(jnp.float32)
  n_c = jnp.bincount(test_cells, length=k).astype(jnp.float32)
  mean = m_c * n_c / 2.0 - 0.5      # the reference's continuity correction
  std = jnp.sqrt(m_c * n_c * (m_c + n_c + 1.0) / 12.0)
  z = jnp.where(m_c > 0, (u - mean) / jnp.where(std > 0, std, 1.0), 0.0)
  p_n = n_c / test.shape[0]
  q_m = m_c / gen.shape[0]
  used = m_c > min_count
  c_t = jnp.sum(jnp.where(used, p_n * z, 0.0)) / jnp.sum(
      jnp.where(used, p_n, 0.0))
  return c_t, z, p_n, q_m, used, gen_d, test_d


def train_projection(train: jax.Array, *, max_dim: Optional[int] = 64
                     ) -> Optional[quantize.PCA]:
  """C_T's PCA of the training set, fitted once to share between tests.

  The top `max_dim` principal components of `train` (x -> (x - mean) C),
  as `data_copying_test` fits them when d > max_dim; None when d <= max_dim
  or max_dim is None (no projection). Pass it as `data_copying_test(...,
  projection=...)` to test several generated sets or k-means keys against
  one training set without refitting it.

  Args:
    train: (l, d) training features.
    max_dim: PCA dimension when d exceeds it; None never projects.

  Returns:
    A `quantize.PCA` (mean in the caller's units), or None.
  """
  train = _checks.check_features(train, "train", min_rows=2)
  if max_dim is None or np.shape(train)[1] <= max_dim:
    return None
  (train,), s = _checks.rescale(train)
  pca = quantize.pca_fit(jnp.asarray(train, jnp.float32),
                         num_components=max_dim)
  return dataclasses.replace(pca, mean=_checks.scale_pow2(pca.mean, -s))


def _check_projection(projection, d):
  shape = np.shape(projection.components)
  if len(shape) != 2 or shape[0] != d or np.shape(projection.mean) != (d,):
    raise ValueError(
        f"`projection` must map the {d} features (components of shape "
        f"({d}, r), mean ({d},)); got components {shape}. Fit it on this "
        "training set with `train_projection(train)`.")


def data_copying_test(train: jax.Array, test: jax.Array,
                      generated: jax.Array, *, key: jax.Array,
                      num_cells: int = 3, num_restarts: int = 10,
                      max_dim: Optional[int] = 64,
                      min_cell_samples: int = 20,
                      block_size: int = distances.DEFAULT_BLOCK_SIZE,
                      projection: Optional[quantize.PCA] = None
                      ) -> DataCopyingResult:
  """The data-copying test C_T of Meehan et al. (2020).

  The training set T is partitioned into k cells by k-means. In each cell pi,
  with L(x) the distance from x to its nearest training sample in pi, the
  Mann-Whitney U statistic of {L(q): q in Q_m(pi)} against {L(p): p in
  P_n(pi)} (generated vs held-out test samples) is Z-scored under the null:
  Z(pi) = (U - (m n / 2 - 0.5)) / sqrt(m n (m + n + 1) / 12). Then

    C_T = sum_{pi: Q_m(pi) > tau} P_n(pi) Z(pi) / sum_{pi: Q_m(pi) > tau} P_n(pi),

  with tau = min_cell_samples / m (cells with more than 20 generated
  samples). C_T << 0: generated samples are closer to the training set than
  fresh data are (copying); >> 0: farther (underfitting).

  Conventions of the FLD package's CTTest (vendored from
  casey-meehan/data-copying): features with more than 64 dimensions are first
  projected on the training set's top 64 principal components (fit them
  once with `train_projection` to share between calls); k = 3 cells
  from k-means with 10 restarts (k-means++); the 0.5 continuity correction
  in the null mean; ties in U count 1/2 (scipy's convention).

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact); distances come back in the
  caller's units.

  Not a loss: U counts pairwise comparisons and the cells are a k-means
  partition, both piecewise constant in the features, so C_T's gradient
  is zero almost everywhere.

  Args:
    train: (l, d) training features.
    test: (n, d) held-out real features.
    generated: (m, d) generated features.
    key: `jax.random` key for k-means.
    num_cells: k, the number of cells.
    num_restarts: k-means restarts (best inertia kept).
    max_dim: PCA dimension when d exceeds it; None never projects.
    min_cell_samples: cells with at most this many generated samples are
      left out (tau = min_cell_samples / m).
    block_size: rows per block of the nearest-neighbour searches.
    projection: the training set's PCA from `train_projection(train)`,
      used instead of fitting it here (then `max_dim` is not used): the
      same results, bitwise when no set needs rescaling. None fits it here
      when d > max_dim.

  Returns:
    A `DataCopyingResult`; `.c_t` is the statistic.

  Raises:
    ValueError: a cell has no test sample (use fewer cells), or no cell
      holds more than `min_cell_samples` generated samples.

  References:
    Meehan, Chaudhuri & Dasgupta, AISTATS 2020; marcojira/fld CTTest.
  """
  _checks.check_addressable("data_copying_test", train=train, test=test,
                            generated=generated)
  train, test, generated, s = memorization.check_sets(
      train, test, generated, names=("train", "test", "generated"))
  d = np.shape(train)[1]
  _checks.check_positive_int(num_cells, "num_cells")
  _checks.check_positive_int(block_size, "block_size")
  if num_cells > np.shape(train)[0]:
    raise ValueError(f"`num_cells`={num_cells} exceeds the "
                     f"{np.shape(train)[0]} training samples.")
  train, test, generated = (jnp.asarray(a, jnp.float32)
                            for a in (train, test, generated))
  if projection is not None:
    _check_projection(projection, d)
    projection = dataclasses.replace(
        projection, mean=_checks.scale_pow2(projection.mean, s))
  elif max_dim is not None and d > max_dim:
    projection = quantize.pca_fit(train, num_components=max_dim)
  if projection is not None:
    train, test, generated = (quantize.pca_transform(projection, a)
                              for a in (train, test, generated))
  km = quantize.kmeans(train, key=key, num_clusters=num_cells,
                       num_restarts=num_restarts)
  train_cells = quantize.assign(train, km.centroids)[0]
  test_cells = quantize.assign(test, km.centroids)[0]
  gen_cells = quantize.assign(generated, km.centroids)[0]
  if _checks.is_concrete(test_cells):
    n_c = np.bincount(np.asarray(test_cells), minlength=num_cells)
    l_c = np.bincount(np.asarray(train_cells), minlength=num_cells)
    m_c = np.bincount(np.asarray(gen_cells), minlength=num_cells)
    empty = np.flatnonzero((n_c == 0) | (l_c == 0))
    if empty.size:
      raise ValueError(
          f"cells {empty.tolist()} have no test (counts {n_c.tolist()}) or "
          f"training samples; use fewer cells (num_cells={num_cells}) or "
          "more test samples.")
    if not np.any(m_c > min_cell_samples):
      raise ValueError(
          f"no cell holds more than min_cell_samples={min_cell_samples} "
          f"generated samples (counts {m_c.tolist()}); pass more generated "
          "samples or lower min_cell_samples.")
  c_t, z, p_n, q_m, used, gen_d, test_d = _c_t(
      train, test, generated, train_cells, test_cells, gen_cells,
      jnp.float32(min_cell_samples), k=int(num_cells),
      block_size=int(block_size))
  gen_d, test_d = (_checks.scale_pow2(a, -s) for a in (gen_d, test_d))
  return DataCopyingResult(
      c_t=c_t, cell_z=z, cell_test_fraction=p_n, cell_generated_fraction=q_m,
      cell_used=used, generated_distance=gen_d, test_distance=test_d,
      generated_cells=gen_cells, test_cells=test_cells,
      train_cells=train_cells, kmeans_converged=km.converged,
      num_cells=int(num_cells))
