"""Memorisation diagnostics: copy flags, authenticity (AuthPct), data copying (C_T).

Three views of whether generated samples reproduce training samples:

* `copy_flags`: per generated sample g, its nearest and second-nearest
  training samples t_1, t_2 and the ratio rho = |g - t_1| / |g - t_2|. g is
  flagged as a copy of t_1 when rho < threshold (default 1/3, the rule of
  Yoon et al. 2023 and Gu et al. 2023 for diffusion-model memorisation): an
  exact copy has rho = 0, a fresh sample in a dense region has rho near 1.
* `auth_pct`: the FLD package's AuthPct (authenticity of Alaa et al. 2022):
  g is authentic when its nearest training sample t* lies closer to its own
  nearest other training sample than to g; AuthPct = 100 * mean(authentic)
  - 50. Higher = more novel; exact copies are never authentic.
* `data_copying_test`: C_T of Meehan et al. 2020, a Mann-Whitney U test per
  k-means cell of the training set of "generated samples are closer to
  train than held-out test samples are"; below 0 means copying, above 0
  underfitting.

Nearest-neighbour searches are blocked (`gendiag.ops.knn.knn`), and
each reported distance is recomputed as an exact difference so exact copies
are at distance 0 (the matmul formula leaves ~sqrt(eps |x|^2)).

References:
  Alaa, van Breugel, Saveliev & van der Schaar, "How Faithful is your
  Synthetic Data? Sample-level Metrics for Evaluating and Auditing Generative
  Models", ICML 2022 (authenticity); AuthPct as implemented in
  github.com/marcojira/fld (fld/metrics/AuthPct.py).
  Meehan, Chaudhuri & Dasgupta, "A Non-Parametric Test to Detect
  Data-Copying in Generative Models", AISTATS 2020 (C_T; reference code
  github.com/casey-meehan/data-copying as vendored by marcojira/fld).
  Yoon, Choi, Kwon & Ryu, "Diffusion Probabilistic Models Generalize when
  They Fail to Memorize", ICML 2023 workshop; Gu, Du, Pang, Li, Lin & Wang,
  "On Memorization in Diffusion Models", 2023 (the 1/3 ratio rule).
"""

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag import _results
from gendiag.ops import distances
from gendiag.ops import knn


def _exact_distance(a, b):
  """Row-wise |a_i - b_i| by differences (no cancellation)."""
  return jnp.sqrt(jnp.sum(jnp.square(a - b), axis=-1))


# --------------------------------------------------------------------------
# Copy flags.


@_results.result(static=("threshold",))
class CopyFlags:
  """Which generated samples copy a training sample, and which one.

  Attributes:
    flagged: (N,) bool, ratio < threshold.
    train_index: (N,) int32 nearest training sample (the one copied).
    distance: (N,) |g - t_1|.
    second_distance: (N,) |g - t_2|, the second-nearest training sample.
    ratio: (N,) distance / second_distance (0 when both are 0).
    num_flagged: number of flagged samples.
    fraction: num_flagged / N.
    threshold: the ratio below which a sample is flagged.
  """
  flagged: jax.Array
  train_index: jax.Array
  distance: jax.Array
  second_distance: jax.Array
  ratio: jax.Array
  num_flagged: jax.Array
  fraction: jax.Array
  threshold: float


@functools.partial(jax.jit, static_argnames=("threshold", "block_size"))
def _copy_flags(train, generated, threshold, block_size):
  _, idx = knn.knn(generated, train, k=2, block_size=block_size)
  d = jnp.stack([_exact_distance(generated, train[idx[:, 0]]),
                 _exact_distance(generated, train[idx[:, 1]])], axis=1)
  swap = d[:, 1] < d[:, 0]            # round-off can misorder near-ties
  idx = jnp.where(swap[:, None], idx[:, ::-1], idx)
  d = jnp.sort(d, axis=1)
  ratio = jnp.where(d[:, 1] > 0, d[:, 0] / jnp.where(d[:, 1] > 0, d[:, 1], 1.0),
                    0.0)
  flagged = ratio < threshold
  num = jnp.sum(flagged.astype(jnp.int32))
  return CopyFlags(flagged=flagged, train_index=idx[:, 0].astype(jnp.int32),
                   distance=d[:, 0], second_distance=d[:, 1], ratio=ratio,
                   num_flagged=num, fraction=num / generated.shape[0],
                   threshold=threshold)


def _check_sets(train, *others, names=("train", "generated")):
  """Float arrays (train, *others, s), rescaled together by 2^s.

  Nearest-neighbour comparisons are invariant to a common scale, so inputs
  outside [2^-32, 2^32] are brought into float32's range exactly
  (`_checks.rescale`); distances in the result are scaled back.
  """
  train = _checks.check_features(train, names[0], min_rows=2)
  others = [_checks.check_features(x, name, dim=np.shape(train)[1])
            for x, name in zip(others, names[1:])]
  xs, s = _checks.rescale(train, *others)
  return (*xs, s)


def _unscale(res, s, fields):
  """`res` with its distance `fields` multiplied back by 2^-s (exact)."""
  return dataclasses.replace(res, **{
      f: _checks.scale_pow2(getattr(res, f), -s) for f in fields})


def copy_flags(train: jax.Array, generated: jax.Array, *,
               threshold: float = 1.0 / 3.0,
               block_size: int = distances.DEFAULT_BLOCK_SIZE) -> CopyFlags:
  """Flags generated samples that copy a training sample.

  rho(g) = |g - t_1(g)| / |g - t_2(g)| with t_1, t_2 the nearest and
  second-nearest training samples; g is a copy of t_1 when rho < threshold.
  The ratio is invariant to rescaling all features together, needs no
  calibration to the feature scale, is 0 for exact copies and stays near 1
  for fresh samples of a smooth distribution (rho < 1/3 happens by chance
  only where training samples are isolated). Distances are Euclidean in the
  given features; standardise first if dimensions have different scales.

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact); distances come back in the
  caller's units.

  The flags (and `num_flagged`) are piecewise constant in the features, so
  their gradient is zero almost everywhere; the distances and ratios are
  differentiable.

  Args:
    train: (n, d) training features, n >= 2.
    generated: (N, d) generated features.
    threshold: ratio below which a sample is flagged, in (0, 1].
    block_size: query rows per block of the nearest-neighbour search.

  Returns:
    A `CopyFlags` with the per-sample flags, copied index, distances and
    ratios, and `.num_flagged`.

  References:
    Yoon et al. 2023 and Gu et al. 2023 (the 1/3 ratio rule for memorised
    diffusion samples).
  """
  _checks.check_addressable("copy_flags", train=train, generated=generated)
  train, generated, s = _check_sets(train, generated)
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"`threshold` must lie in (0, 1]; got {threshold}.")
  _checks.check_positive_int(block_size, "block_size")
  flags = _copy_flags(jnp.asarray(train, jnp.float32),
                      jnp.asarray(generated, jnp.float32),
                      threshold=float(threshold), block_size=int(block_size))
  return _unscale(flags, s, ("distance", "second_distance"))


# --------------------------------------------------------------------------
# AuthPct.


@_results.result
class AuthPctResult:
  """Authenticity of each generated sample and AuthPct.

  Attributes:
    auth_pct: 100 * mean(authentic) - 50, in [-50, 50]; higher = more novel.
    authentic: (M,) bool per generated sample used.
    generated_index: (M,) int32 rows of `generated` used.
    train_index: (M,) int32 nearest training row of each (into `train`).
    distance: (M,) |g - t*|.
    train_nn_distance: (M,) |t* - NN_train(t*)|, the distance it is
      compared with.
  """
  auth_pct: jax.Array
  authentic: jax.Array
  generated_index: jax.Array
  train_index: jax.Array
  distance: jax.Array
  train_nn_distance: jax.Array


@functools.partial(jax.jit, static_argnames=("block_size",))
def _auth(train, generated, train_rows, gen_rows, block_size):
  t, g = train[train_rows], generated[gen_rows]
  _, t_idx = knn.knn(t, t, k=1, exclude_self=True,
                           block_size=block_size)
  t_nn = _exact_distance(t, t[t_idx[:, 0]])
  _, g_idx = knn.knn(g, t, k=1, block_size=block_size)
  g_idx = g_idx[:, 0]
  dg = _exact_distance(g, t[g_idx])
  authentic = t_nn[g_idx] < dg
  return AuthPctResult(
      auth_pct=100.0 * jnp.sum(authentic).astype(jnp.float32)
      / authentic.shape[0] - 50.0,
      authentic=authentic, generated_index=gen_rows.astype(jnp.int32),
      train_index=train_rows[g_idx].astype(jnp.int32), distance=dg,
      train_nn_distance=t_nn[g_idx])


def _subset(key, n, cap):
  if cap is None or n <= cap:
    return jnp.arange(n)
  return jax.random.permutation(key, n)[:cap]


def auth_pct(train: jax.Array, generated: jax.Array, *,
             key: Optional[jax.Array] = None,
             max_samples: Optional[int] = 10_000,
             block_size: int = distances.DEFAULT_BLOCK_SIZE) -> AuthPctResult:
  """AuthPct: the share of generated samples that are authentic, minus 50.

  For generated g with nearest training sample t* = NN_train(g),
  authentic(g) = 1[|t* - NN_train\\{t*}(t*)| < |g - t*|], and
  AuthPct = 100 * mean_g authentic(g) - 50, in [-50, 50]. A model that
  only outputs training samples scores -50; fresh samples score around
  +25 in the reference's experiments (not 50: a fresh sample is often
  closer to t* than t*'s own neighbour is).

  Inputs: array-likes and integer arrays are cast to float32. The result
  is invariant to a common scale of the sets, so sets with max|x|
  outside [2^-32, 2^32] (e.g. 1e20 or 1e-20) are rescaled internally by
  a power of two (exact); distances come back in the
  caller's units.

  Not a loss: AuthPct counts nearest-neighbour comparisons, which are
  piecewise constant in the features, so its gradient is zero almost
  everywhere.

  Args:
    train: (n, d) training features, n >= 2.
    generated: (N, d) generated features.
    key: `jax.random` key for the subsets; required only when a set has more
      than `max_samples` rows.
    max_samples: as the reference, use random subsets of at most this many
      rows of each set; None uses everything (the search is blocked).
    block_size: query rows per block.

  Returns:
    An `AuthPctResult`; `.auth_pct` is the score.

  References:
    Alaa et al., ICML 2022 (authenticity); the FLD package's AuthPct
    (marcojira/fld), whose convention (strict <, Euclidean, 10k subsets) this
    follows.
  """
  _checks.check_addressable("auth_pct", train=train, generated=generated)
  train, generated, s = _check_sets(train, generated)
  _checks.check_positive_int(block_size, "block_size")
  if max_samples is not None:
    _checks.check_positive_int(max_samples, "max_samples", minimum=2)
  n, m = np.shape(train)[0], np.shape(generated)[0]
  needs_key = max_samples is not None and max(n, m) > max_samples
  if needs_key and key is None:
    raise ValueError(
        f"auth_pct subsamples to max_samples={max_samples} rows (train has "
        f"{n}, generated {m}); pass key=jax.random.key(...) or "
        "max_samples=None to use every row.")
  key_t, key_g = (jax.random.split(key) if key is not None else (None, None))
  res = _auth(jnp.asarray(train, jnp.float32),
              jnp.asarray(generated, jnp.float32),
              _subset(key_t, n, max_samples), _subset(key_g, m, max_samples),
              block_size=int(block_size))
  return _unscale(res, s, ("distance", "train_nn_distance"))


# --------------------------------------------------------------------------
# C_T, the data-copying test.


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
    exact = _exact_distance(xb, train[j])
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


def data_copying_test(train: jax.Array, test: jax.Array,
                      generated: jax.Array, *, key: jax.Array,
                      num_cells: int = 3, num_restarts: int = 10,
                      max_dim: Optional[int] = 64,
                      min_cell_samples: int = 20,
                      block_size: int = distances.DEFAULT_BLOCK_SIZE
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
  projected on the training set's top 64 principal components; k = 3 cells
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

  Returns:
    A `DataCopyingResult`; `.c_t` is the statistic.

  Raises:
    ValueError: a cell has no test sample (use fewer cells), or no cell
      holds more than `min_cell_samples` generated samples.

  References:
    Meehan, Chaudhuri & Dasgupta, AISTATS 2020; marcojira/fld CTTest.
  """
  from gendiag.ops import quantize  # pylint: disable=g-import-not-at-top
  _checks.check_addressable("data_copying_test", train=train, test=test,
                            generated=generated)
  train, test, generated, s = _check_sets(
      train, test, generated, names=("train", "test", "generated"))
  d = np.shape(train)[1]
  _checks.check_positive_int(num_cells, "num_cells")
  _checks.check_positive_int(block_size, "block_size")
  if num_cells > np.shape(train)[0]:
    raise ValueError(f"`num_cells`={num_cells} exceeds the "
                     f"{np.shape(train)[0]} training samples.")
  train, test, generated = (jnp.asarray(a, jnp.float32)
                            for a in (train, test, generated))
  if max_dim is not None and d > max_dim:
    proj = quantize.pca_fit(train, num_components=max_dim)
    train, test, generated = (quantize.pca_transform(proj, a)
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
