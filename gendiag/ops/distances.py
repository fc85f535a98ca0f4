"""Blocked pairwise computations: squared distances, kernel sums, k-NN search.

Every n x m computation here walks the rows of the first set in blocks of
`block_size` rows (`lax.map`), so at most `block_size x m` floats exist at a
time; k-NN search also walks the columns, so it holds `block_size x
col_block_size`. Results never depend on the block sizes beyond float32
summation order.

Matrix products run at `Precision.HIGHEST`: TPU (bf16) and Ampere/Hopper GPU
(TF32) defaults would otherwise corrupt distances between nearby points.
"""

import functools
import math
from typing import Callable, Sequence

import jax
from jax import lax
import jax.numpy as jnp

DEFAULT_BLOCK_SIZE = 1024
DEFAULT_COL_BLOCK_SIZE = 8192
HIGHEST = lax.Precision.HIGHEST

# A kernel maps a row block (b, d) and a set (m, d) to their Gram block (b, m).
Kernel = Callable[[jax.Array, jax.Array], jax.Array]


def sq_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """Squared Euclidean distances of one block, unblocked.

  D_ij = |x_i|^2 + |y_j|^2 - 2 x_i . y_j, clipped at 0 against round-off.

  Args:
    x: (n, d) array.
    y: (m, d) array.

  Returns:
    (n, m) array. Use it on blocks; for large n use the blocked functions.
  """
  xx = jnp.sum(x * x, axis=-1)[:, None]
  yy = jnp.sum(y * y, axis=-1)[None, :]
  xy = jnp.matmul(x, y.T, precision=HIGHEST)
  return jnp.maximum(xx + yy - 2.0 * xy, 0.0)


def map_row_blocks(fn: Callable, x: jax.Array, *,
                   block_size: int = DEFAULT_BLOCK_SIZE):
  """Applies `fn(x_block, start)` to row blocks of `x` and concatenates.

  Args:
    fn: maps a (b, d) block and the index of its first row (an int32 scalar)
      to a pytree of arrays with leading dimension b.
    x: (n, d) array. The last block is zero-padded; padded rows are dropped
      from the output, so `fn` must not sum across rows.
    block_size: rows per block.

  Returns:
    The pytree of `fn`'s outputs with leading dimension n.
  """
  n = x.shape[0]
  if n <= block_size:
    return fn(x, jnp.int32(0))
  num_blocks = math.ceil(n / block_size)
  pad = num_blocks * block_size - n
  blocks = jnp.pad(x, ((0, pad), (0, 0))).reshape(
      num_blocks, block_size, x.shape[1])
  starts = jnp.arange(num_blocks, dtype=jnp.int32) * block_size
  out = lax.map(lambda args: fn(*args), (blocks, starts))
  return jax.tree.map(
      lambda a: a.reshape((num_blocks * block_size,) + a.shape[2:])[:n], out)


def _mask_diagonal(block: jax.Array, start) -> jax.Array:
  """Zeroes entries (i, start + i) of a (b, m) row block of a square matrix."""
  rows = start + jnp.arange(block.shape[0])[:, None]
  cols = jnp.arange(block.shape[1])[None, :]
  return jnp.where(rows == cols, 0.0, block)


def kernel_row_sums(kernel: Kernel, x: jax.Array, y: jax.Array, *,
                    exclude_diagonal: bool = False,
                    block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
  """Row sums r_i = sum_j k(x_i, y_j), blocked over the rows of x.

  Args:
    kernel: maps (b, d) and (m, d) arrays to the (b, m) Gram block.
    x: (n, d) array.
    y: (m, d) array.
    exclude_diagonal: drop the terms j = i (x and y must be the same set).
    block_size: rows of x per block.

  Returns:
    (n,) array of row sums.
  """
  if exclude_diagonal and x.shape[0] != y.shape[0]:
    raise ValueError("exclude_diagonal needs x and y to be the same set; got "
                     f"{x.shape[0]} and {y.shape[0]} rows.")

  def block_sums(xb, start):
    k = kernel(xb, y)
    if exclude_diagonal:
      k = _mask_diagonal(k, start)
    return jnp.sum(k, axis=1)

  return map_row_blocks(block_sums, x, block_size=block_size)


def kernel_sum(kernel: Kernel, x: jax.Array, y: jax.Array, *,
               exclude_diagonal: bool = False,
               block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
  """Total sum_ij k(x_i, y_j) (optionally i != j), blocked over rows of x."""
  return jnp.sum(kernel_row_sums(kernel, x, y, exclude_diagonal=exclude_diagonal,
                                 block_size=block_size))


def kernel_matvec(kernel: Kernel, x: jax.Array, y: jax.Array, v: jax.Array, *,
                  exclude_diagonal: bool = False,
                  block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
  """K v for the Gram matrix K_ij = k(x_i, y_j), blocked over rows of x.

  Args:
    kernel: the kernel.
    x: (n, d) array.
    y: (m, d) array.
    v: (m,) or (m, p) array.
    exclude_diagonal: use K with its diagonal zeroed (x and y the same set).
    block_size: rows of x per block.

  Returns:
    (n,) or (n, p) array.
  """

  def block_product(xb, start):
    k = kernel(xb, y)
    if exclude_diagonal:
      k = _mask_diagonal(k, start)
    return jnp.matmul(k, v, precision=HIGHEST)

  return map_row_blocks(block_product, x, block_size=block_size)


def _merge_smallest(best_d, best_i, new_d, new_start, k):
  """Merges a (b, c) block of distances into the running k smallest.

  Column j of `new_d` is reference `new_start + j`. Ties go to the running
  list, i.e. to the lower reference index.
  """
  neg_d, pos = lax.top_k(-jnp.concatenate([best_d, new_d], axis=1), k)
  from_best = jnp.take_along_axis(best_i, jnp.minimum(pos, k - 1), axis=1)
  return -neg_d, jnp.where(pos < k, from_best, new_start + pos - k)


@functools.partial(
    jax.jit, static_argnames=("k", "exclude_self", "block_size",
                              "col_block_size"))
def knn(queries: jax.Array, refs: jax.Array, *, k: int,
        exclude_self: bool = False,
        block_size: int = DEFAULT_BLOCK_SIZE,
        col_block_size: int = DEFAULT_COL_BLOCK_SIZE):
  """The k nearest references of each query by a running top-k.

  Rows of `queries` are processed in blocks; for each block the columns of
  `refs` are scanned in blocks of `col_block_size`, merging each block's
  candidates into the running k smallest, so memory is block_size x
  col_block_size whatever the size of `refs`.

  Args:
    queries: (n, d) array.
    refs: (m, d) array.
    k: neighbours to return; must be <= m (<= m - 1 with exclude_self).
    exclude_self: queries and refs are the same set; never return j = i.
      Duplicated points still count as neighbours at distance 0.
    block_size: query rows per block.
    col_block_size: reference rows per scan step.

  Returns:
    (distances, indices): (n, k) Euclidean distances sorted ascending and the
    (n, k) int32 indices into `refs`; ties go to the lower index.
  """
  m, d = refs.shape
  num_col_blocks = math.ceil(m / col_block_size)
  cb = min(col_block_size, m)
  ref_blocks = jnp.pad(refs, ((0, num_col_blocks * cb - m), (0, 0))).reshape(
      num_col_blocks, cb, d)
  col_starts = jnp.arange(num_col_blocks, dtype=jnp.int32) * cb

  def block_knn(qb, start):
    rows = start + jnp.arange(qb.shape[0], dtype=jnp.int32)

    def step(carry, args):
      rb, col_start = args
      cols = col_start + jnp.arange(cb, dtype=jnp.int32)
      dist = sq_distances(qb, rb)
      invalid = cols[None, :] >= m
      if exclude_self:
        invalid = invalid | (cols[None, :] == rows[:, None])
      dist = jnp.where(invalid, jnp.inf, dist)
      return _merge_smallest(*carry, dist, col_start, k), None

    init = (jnp.full((qb.shape[0], k), jnp.inf, queries.dtype),
            jnp.full((qb.shape[0], k), -1, jnp.int32))
    (best_d, best_i), _ = lax.scan(step, init, (ref_blocks, col_starts))
    return jnp.sqrt(best_d), best_i

  return map_row_blocks(block_knn, queries, block_size=block_size)


def knn_radii(x: jax.Array, ks: Sequence[int], *,
              block_size: int = DEFAULT_BLOCK_SIZE,
              col_block_size: int = DEFAULT_COL_BLOCK_SIZE) -> jax.Array:
  """Distance from each point to its k-th nearest other point, for several k.

  One distance pass serves every k: the running top-k keeps max(ks)
  neighbours. This is the radius of the k-NN ball of improved precision/recall
  (Kynkaanniemi et al. 2019) and of prdc (Naeem et al. 2020): prdc's
  "k+1-th smallest distance including self" is the k-th excluding self.

  Args:
    x: (n, d) array.
    ks: neighbour counts, each in [1, n - 1].
    block_size: rows per block.
    col_block_size: columns per scan step.

  Returns:
    (n, len(ks)) array of Euclidean radii.
  """
  ks = tuple(int(k) for k in ks)
  n = x.shape[0]
  if not ks or min(ks) < 1 or max(ks) > n - 1:
    raise ValueError(f"every k must lie in [1, n - 1] = [1, {n - 1}]; got {ks}.")
  dist, _ = knn(x, x, k=max(ks), exclude_self=True, block_size=block_size,
                col_block_size=col_block_size)
  return dist[:, [k - 1 for k in ks]]


def nearest_neighbor(queries: jax.Array, refs: jax.Array, *,
                     block_size: int = DEFAULT_BLOCK_SIZE,
                     col_block_size: int = DEFAULT_COL_BLOCK_SIZE):
  """Nearest reference of each query: ((n,) distances, (n,) indices)."""
  dist, idx = knn(queries, refs, k=1, block_size=block_size,
                  col_block_size=col_block_size)
  return dist[:, 0], idx[:, 0]
