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
* `data_copying_test` (`gendiag.metrics.data_copying`): C_T of Meehan et
  al. 2020, a Mann-Whitney U test per
  k-means cell of the training set of "generated samples are closer to
  train than held-out test samples are"; below 0 means copying, above 0
  underfitting.

Nearest-neighbour searches are blocked (`gendiag.ops.knn.knn`), and
each reported distance is recomputed as an exact difference so exact copies
are at distance 0 (the matmul formula leaves ~sqrt(eps |x|^2)).
`nearest_train` (the generated rows' search, shared by `copy_flags` and
`auth_pct`) and `train_nn_distance` (AuthPct's training term, shared by the
models of one training set) run a search once for several calls.

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


def exact_distance(a, b):
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
def _copy_flags(train, generated, idx, threshold, block_size):
  if idx is None:
    _, idx = knn.knn(generated, train, k=2, block_size=block_size)
  idx = idx[:, :2]
  d = jnp.stack([exact_distance(generated, train[idx[:, 0]]),
                 exact_distance(generated, train[idx[:, 1]])], axis=1)
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


def check_sets(train, *others, names=("train", "generated")):
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


def _check_neighbours(neighbours, n, m, min_k):
  """`neighbours` as an int32 (m, >= min_k) array of rows of train (< n)."""
  shape = np.shape(neighbours)
  neighbours = jnp.asarray(neighbours)
  if (len(shape) != 2 or shape[0] != m or shape[1] < min_k
      or not jnp.issubdtype(neighbours.dtype, jnp.integer)):
    raise ValueError(
        f"`neighbours` must be an integer array of shape ({m}, k >= {min_k}): "
        f"the training rows nearest each generated row, from "
        f"`nearest_train(train, generated)`; got shape {shape}.")
  neighbours = neighbours.astype(jnp.int32)
  if _checks.is_concrete(neighbours):
    lo, hi = int(jnp.min(neighbours)), int(jnp.max(neighbours))
    if lo < 0 or hi >= n:
      raise ValueError(f"`neighbours` holds rows outside [0, {n}) of train "
                       f"(min {lo}, max {hi}); compute it with "
                       "`nearest_train(train, generated)` on these sets.")
  return neighbours


def nearest_train(train: jax.Array, generated: jax.Array, *, k: int = 2,
                  block_size: int = distances.DEFAULT_BLOCK_SIZE
                  ) -> jax.Array:
  """(N, k) int32 rows of each generated sample's k nearest training rows.

  argmin_t |g - t| (then the next), by the blocked search that `copy_flags`
  (k = 2) and `auth_pct` (k = 1: its first column) run, in its order
  (matmul-formula distances ascending, ties to the lower row). Compute it
  once and pass it as `neighbours=` to both to search once per model.

  Args:
    train: (n, d) training features, n >= k.
    generated: (N, d) generated features.
    k: neighbours per generated row, in [1, n].
    block_size: query rows per block.

  Returns:
    (N, k) int32 indices into `train`, nearest first.
  """
  _checks.check_addressable("nearest_train", train=train, generated=generated)
  train, generated, _ = check_sets(train, generated)
  _checks.check_positive_int(k, "k")
  _checks.check_positive_int(block_size, "block_size")
  if k > np.shape(train)[0]:
    raise ValueError(f"`k`={k} exceeds the {np.shape(train)[0]} training "
                     "samples.")
  return knn.knn(jnp.asarray(generated, jnp.float32),
                 jnp.asarray(train, jnp.float32), k=int(k),
                 block_size=int(block_size))[1]


def unscale(res, s, fields):
  """`res` with its distance `fields` multiplied back by 2^-s (exact)."""
  return dataclasses.replace(res, **{
      f: _checks.scale_pow2(getattr(res, f), -s) for f in fields})


def copy_flags(train: jax.Array, generated: jax.Array, *,
               threshold: float = 1.0 / 3.0,
               block_size: int = distances.DEFAULT_BLOCK_SIZE,
               neighbours: Optional[jax.Array] = None) -> CopyFlags:
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
    neighbours: (N, k >= 2) nearest training rows of each generated row,
      `nearest_train(train, generated)`, instead of searching here (same
      flags; share the search with `auth_pct`).

  Returns:
    A `CopyFlags` with the per-sample flags, copied index, distances and
    ratios, and `.num_flagged`.

  References:
    Yoon et al. 2023 and Gu et al. 2023 (the 1/3 ratio rule for memorised
    diffusion samples).
  """
  _checks.check_addressable("copy_flags", train=train, generated=generated)
  train, generated, s = check_sets(train, generated)
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"`threshold` must lie in (0, 1]; got {threshold}.")
  _checks.check_positive_int(block_size, "block_size")
  if neighbours is not None:
    neighbours = _check_neighbours(neighbours, np.shape(train)[0],
                                   np.shape(generated)[0], 2)
  flags = _copy_flags(jnp.asarray(train, jnp.float32),
                      jnp.asarray(generated, jnp.float32), neighbours,
                      threshold=float(threshold), block_size=int(block_size))
  return unscale(flags, s, ("distance", "second_distance"))


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


def _train_nn(t, block_size):
  """|t_i - NN_{t \\ t_i}(t_i)|: the blocked search, then exact differences."""
  _, t_idx = knn.knn(t, t, k=1, exclude_self=True,
                     block_size=block_size)
  return exact_distance(t, t[t_idx[:, 0]])


_train_nn_jit = jax.jit(_train_nn, static_argnames=("block_size",))


@functools.partial(jax.jit, static_argnames=("block_size",))
def _auth(train, generated, train_rows, gen_rows, t_nn, g_idx, block_size):
  """AuthPct of the given rows; t_nn and g_idx (N, >= 1) searched if None."""
  t, g = train[train_rows], generated[gen_rows]
  if t_nn is None:
    t_nn = _train_nn(t, block_size)
  if g_idx is None:
    _, g_idx = knn.knn(g, t, k=1, block_size=block_size)
  g_idx = g_idx[:, 0]
  dg = exact_distance(g, t[g_idx])
  authentic = t_nn[g_idx] < dg
  return AuthPctResult(
      auth_pct=100.0 * jnp.sum(authentic).astype(jnp.float32)
      / authentic.shape[0] - 50.0,
      authentic=authentic, generated_index=gen_rows.astype(jnp.int32),
      train_index=train_rows[g_idx].astype(jnp.int32), distance=dg,
      train_nn_distance=t_nn[g_idx])


def _shared_terms(train_nn, neighbours, n, m, max_samples, s):
  """auth_pct's precomputed terms, checked (of every row) and rescaled."""
  sub = lambda rows: max_samples is not None and rows > max_samples
  for name, value, subsampled in (("train_nn_distance", train_nn, sub(n)),
                                  ("neighbours", neighbours, sub(n) or sub(m))):
    if value is not None and subsampled:
      raise ValueError(
          f"`{name}` is of every row, but auth_pct subsamples (train {n}, "
          f"generated {m} rows) to max_samples={max_samples}; leave it out "
          "or pass max_samples=None.")
  if train_nn is not None:
    if np.shape(train_nn) != (n,):
      raise ValueError(f"`train_nn_distance` must have shape ({n},) (from "
                       f"`train_nn_distance(train)`); got {np.shape(train_nn)}.")
    train_nn = _checks.scale_pow2(jnp.asarray(train_nn, jnp.float32), s)
  if neighbours is not None:
    neighbours = _check_neighbours(neighbours, n, m, 1)
  return train_nn, neighbours


def _subset(key, n, cap):
  if cap is None or n <= cap:
    return jnp.arange(n)
  return jax.random.permutation(key, n)[:cap]


def train_nn_distance(train: jax.Array, *,
                      block_size: int = distances.DEFAULT_BLOCK_SIZE
                      ) -> jax.Array:
  """(n,) |t - NN_{train \\ t}(t)|: each training row's nearest other row.

  AuthPct's training term, which depends on the training set alone: compute
  it once and pass it as `auth_pct(..., train_nn_distance=...)` to score
  several generated sets against one training set (blocked search, exact
  differences, distances in the caller's units).

  Args:
    train: (n, d) training features, n >= 2.
    block_size: query rows per block.

  Returns:
    (n,) distances.
  """
  _checks.check_addressable("train_nn_distance", train=train)
  train, s = check_sets(train)
  _checks.check_positive_int(block_size, "block_size")
  return _checks.scale_pow2(_train_nn_jit(jnp.asarray(train, jnp.float32),
                                          block_size=int(block_size)), -s)


def auth_pct(train: jax.Array, generated: jax.Array, *,
             key: Optional[jax.Array] = None,
             max_samples: Optional[int] = 10_000,
             block_size: int = distances.DEFAULT_BLOCK_SIZE,
             train_nn_distance: Optional[jax.Array] = None,
             neighbours: Optional[jax.Array] = None) -> AuthPctResult:
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
    train_nn_distance: (n,) `train_nn_distance(train)`, shared by the
      models scored against one training set, instead of its search here;
      only when the training set is not subsampled (n <= max_samples).
    neighbours: (N, k >= 1) `nearest_train(train, generated)` (e.g. the
      k = 2 search of `copy_flags`), instead of the generated rows' search
      here; only when neither set is subsampled. Same results either way.

  Returns:
    An `AuthPctResult`; `.auth_pct` is the score.

  References:
    Alaa et al., ICML 2022 (authenticity); the FLD package's AuthPct
    (marcojira/fld), whose convention (strict <, Euclidean, 10k subsets) this
    follows.
  """
  _checks.check_addressable("auth_pct", train=train, generated=generated)
  train, generated, s = check_sets(train, generated)
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
  train_nn_distance, neighbours = _shared_terms(
      train_nn_distance, neighbours, n, m, max_samples, s)
  key_t, key_g = (jax.random.split(key) if key is not None else (None, None))
  res = _auth(jnp.asarray(train, jnp.float32),
              jnp.asarray(generated, jnp.float32),
              _subset(key_t, n, max_samples), _subset(key_g, m, max_samples),
              train_nn_distance, neighbours, block_size=int(block_size))
  return unscale(res, s, ("distance", "train_nn_distance"))
