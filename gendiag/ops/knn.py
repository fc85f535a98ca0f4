"""Blocked k-nearest-neighbour search by a running top-k.

Rows of the queries are walked in blocks of `block_size` and, within each,
the references in blocks of `col_block_size`, so at most `block_size x
col_block_size` distances exist at a time. With `mesh=` the reference shards
travel around the ring of `gendiag.ops.sharding` and merge into the same
running top-k; results equal the single-device ones.
"""

import functools
import math
from typing import Optional, Sequence

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec

from gendiag.ops import distances
from gendiag.ops import sharding

DEFAULT_BLOCK_SIZE = distances.DEFAULT_BLOCK_SIZE
DEFAULT_COL_BLOCK_SIZE = 8192


def _merge_smallest(best_d, best_i, new_d, new_start, k):
  """Merges a (b, c) block of distances into the running k smallest.

  Column j of `new_d` is reference `new_start + j`. Ties go to the running
  list, i.e. to the lower reference index.
  """
  neg_d, pos = lax.top_k(-jnp.concatenate([best_d, new_d], axis=1), k)
  from_best = jnp.take_along_axis(best_i, jnp.minimum(pos, k - 1), axis=1)
  return -neg_d, jnp.where(pos < k, from_best, new_start + pos - k)


def _local_knn_update(best, queries, refs, *, k, exclude_self, row_start,
                      col_start, num_valid_cols, block_size, col_block_size):
  """Merges the squared distances to `refs` into the running (best_d, best_i).

  Reference j of `refs` has global index col_start + j and counts only if
  col_start + j < num_valid_cols (padding is skipped). With `best=None` the
  first column block starts the lists by a plain top-k (no merge), which is
  all a single-block search needs.
  """
  m, d = refs.shape
  if best is None:
    col_block_size = max(col_block_size, k)  # the first block must hold k
  num_col_blocks = math.ceil(m / col_block_size)
  cb = distances.balanced_block(m, col_block_size)
  ref_blocks = jnp.pad(refs, ((0, num_col_blocks * cb - m), (0, 0))).reshape(
      num_col_blocks, cb, d)
  col_starts = col_start + jnp.arange(num_col_blocks, dtype=jnp.int32) * cb
  limit = jnp.minimum(num_valid_cols, col_start + m)

  def block_update(qb, start, running):
    rows = row_start + start + jnp.arange(qb.shape[0], dtype=jnp.int32)

    def masked_distances(rb, c0):
      cols = c0 + jnp.arange(cb, dtype=jnp.int32)
      dist = distances.sq_distances(qb, rb)
      invalid = cols[None, :] >= limit
      if exclude_self:
        invalid = invalid | (cols[None, :] == rows[:, None])
      return jnp.where(invalid, jnp.inf, dist)

    def step(carry, blk):
      return _merge_smallest(*carry, masked_distances(*blk), blk[1], k), None

    blocks = (ref_blocks, col_starts)
    if running is None:
      neg_d, pos = lax.top_k(-masked_distances(ref_blocks[0], col_starts[0]),
                             k)
      running = (-neg_d, col_starts[0] + pos)
      blocks = (ref_blocks[1:], col_starts[1:])
    if blocks[0].shape[0] == 0:
      return running
    if blocks[0].shape[0] == 1:  # no scan: less to compile
      return step(running, (blocks[0][0], blocks[1][0]))[0]
    return lax.scan(step, running, blocks)[0]

  n = queries.shape[0]
  if n <= block_size:
    return block_update(queries, jnp.int32(0), best)
  # Row-block the queries together with their running lists.
  num_blocks = math.ceil(n / block_size)
  block_size = distances.balanced_block(n, block_size)
  pad = num_blocks * block_size - n

  def split(a):
    return jnp.pad(a, ((0, pad), (0, 0))).reshape(
        (num_blocks, block_size) + a.shape[1:])

  starts = jnp.arange(num_blocks, dtype=jnp.int32) * block_size
  if best is None:
    out = lax.map(lambda a: block_update(a[0], a[1], None),
                  (split(queries), starts))
  else:
    out = lax.map(lambda a: block_update(a[0], a[1], (a[2], a[3])),
                  (split(queries), starts, split(best[0]), split(best[1])))
  return tuple(a.reshape((num_blocks * block_size, k))[:n] for a in out)


def _init_best(n, k, dtype):
  return (jnp.full((n, k), jnp.inf, dtype), jnp.full((n, k), -1, jnp.int32))


def _sharded_knn(queries, refs, *, k, exclude_self, block_size,
                 col_block_size, mesh):
  axes = sharding.mesh_axes(mesh)
  spec = PartitionSpec(axes)
  n, m = queries.shape[0], refs.shape[0]
  qs = sharding.shard_rows(queries, mesh)
  rs = sharding.shard_rows(refs, mesh)
  n_local, m_local = qs.shape[0] // mesh.size, rs.shape[0] // mesh.size

  def shard_fn(q_shard, r_shard):
    row_start = lax.axis_index(axes) * n_local

    def step(best, ql, rl, owner):
      return _local_knn_update(
          best, ql, rl, k=k, exclude_self=exclude_self, row_start=row_start,
          col_start=owner * m_local, num_valid_cols=m, block_size=block_size,
          col_block_size=col_block_size)

    best = _init_best(n_local, k, q_shard.dtype)
    return sharding.ring(mesh, step, best, q_shard, r_shard)

  best_d, best_i = jax.shard_map(shard_fn, mesh=mesh, in_specs=(spec, spec),
                                 out_specs=(spec, spec))(qs, rs)
  return (sharding.unshard_rows(best_d, n, mesh),
          sharding.unshard_rows(best_i, n, mesh))


def _knn(queries, refs, *, k, exclude_self, block_size, col_block_size,
         mesh):
  """Squared distances and indices of the k nearest (unjitted)."""
  if mesh is not None:
    return _sharded_knn(queries, refs, k=k, exclude_self=exclude_self,
                        block_size=block_size, col_block_size=col_block_size,
                        mesh=mesh)
  return _local_knn_update(
      None, queries, refs, k=k,
      exclude_self=exclude_self, row_start=0, col_start=0,
      num_valid_cols=refs.shape[0], block_size=block_size,
      col_block_size=col_block_size)


@functools.partial(
    jax.jit, static_argnames=("k", "exclude_self", "block_size",
                              "col_block_size", "mesh"))
def knn(queries: jax.Array, refs: jax.Array, *, k: int,
        exclude_self: bool = False,
        block_size: int = DEFAULT_BLOCK_SIZE,
        col_block_size: int = DEFAULT_COL_BLOCK_SIZE,
        mesh: Optional[Mesh] = None):
  """The k nearest references of each query by a running top-k.

  Rows of `queries` are processed in blocks; for each block the columns of
  `refs` are scanned in blocks of `col_block_size`, merging each block's
  candidates into the running k smallest, so memory is block_size x
  col_block_size whatever the size of `refs`. With a mesh, the reference
  shards travel around the ring and merge into the same running top-k.

  Args:
    queries: (n, d) array.
    refs: (m, d) array.
    k: neighbours to return; must be <= m (<= m - 1 with exclude_self).
    exclude_self: queries and refs are the same set; never return j = i.
      Duplicated points still count as neighbours at distance 0.
    block_size: query rows per block.
    col_block_size: reference rows per scan step.
    mesh: shard both sets by rows over this mesh's devices.

  Returns:
    (distances, indices): (n, k) Euclidean distances sorted ascending and the
    (n, k) int32 indices into `refs`; ties go to the lower index.
  """
  best_d, best_i = _knn(queries, refs, k=k, exclude_self=exclude_self,
                        block_size=block_size, col_block_size=col_block_size,
                        mesh=mesh)
  return jnp.sqrt(best_d), best_i


def _smallest_into(best, new, k):
  """The k smallest of each row of [best, new], ascending: (b, k)."""
  return -lax.top_k(-jnp.concatenate([best, new], axis=1), k)[0]


def _symmetric_knn_sq(x, k, block_size):
  """(n, k) squared distances to the k nearest other rows, ascending.

  Uses D = D^T on B row blocks of b rows: each block meets itself (i == j
  masked) and then, as in a half ring, the next H = floor(B / 2) blocks
  (cyclically) in one (b, H b) product; the row-wise top-k of that product
  updates the block's own lists and the column-wise top-k those of the H
  blocks. Every unordered block pair meets once (for even B the pairs at
  offset H only from the first H blocks), so the matmul FLOPs are about
  half those of the plain pass, in products as large as the plain pass's.
  Memory: the gathered H blocks (n/2 x d) and one (b, n/2) block.
  """
  n, d = x.shape
  num_blocks = math.ceil(n / block_size)
  if num_blocks % 2 == 0 and math.ceil(n / (num_blocks + 1)) >= k:
    num_blocks += 1  # odd B: no block pair is computed twice
  b = math.ceil(n / num_blocks)
  pad = num_blocks * b - n
  blocks = jnp.pad(x, ((0, pad), (0, 0))).reshape(num_blocks, b, d)
  valid = (jnp.arange(num_blocks * b) < n).reshape(num_blocks, b)
  eye = jnp.eye(b, dtype=bool)

  def diagonal(xb, ok):
    dist = distances.sq_distances(xb, xb)
    return -lax.top_k(-jnp.where(eye | ~ok[None, :], jnp.inf, dist), k)[0]

  best = lax.map(lambda a: diagonal(*a), (blocks, valid))  # (B, b, k)
  half = num_blocks // 2
  if half == 0:
    return best[0, :n]

  def step(best, i):
    others = (i + 1 + jnp.arange(half)) % num_blocks  # (H,)
    slab = jnp.take(blocks, others, axis=0).reshape(half * b, d)
    ok = jnp.take(valid, others, axis=0).reshape(half * b)
    if num_blocks % 2 == 0:  # offset-H pairs: only from blocks i < H
      ok = ok & ((jnp.arange(half * b) < (half - 1) * b) | (i < half))
    dist = distances.sq_distances(blocks[i], slab)  # (b, H b)
    dist = jnp.where(valid[i][:, None] & ok[None, :], dist, jnp.inf)
    best = best.at[i].set(_smallest_into(best[i], dist, k))
    cols = -lax.top_k(-dist.T, k)[0].reshape(half, b, k)
    merged = -lax.top_k(-jnp.concatenate([best[others], cols], axis=2), k)[0]
    return best.at[others].set(merged), None

  best, _ = lax.scan(step, best, jnp.arange(num_blocks))
  return best.reshape(num_blocks * b, k)[:n]


@functools.partial(jax.jit, static_argnames=("ks", "block_size",
                                             "col_block_size", "mesh"))
def _knn_radii(x, ks, block_size, col_block_size, mesh):
  if mesh is None and max(ks) <= distances.balanced_block(x.shape[0],
                                                          block_size):
    best_d = _symmetric_knn_sq(x, max(ks), block_size)
  else:
    # Indices are unused here, so XLA drops their bookkeeping.
    best_d, _ = _knn(x, x, k=max(ks), exclude_self=True,
                     block_size=block_size, col_block_size=col_block_size,
                     mesh=mesh)
  return jnp.sqrt(best_d[:, [k - 1 for k in ks]])


def knn_radii(x: jax.Array, ks: Sequence[int], *,
              block_size: int = DEFAULT_BLOCK_SIZE,
              col_block_size: int = DEFAULT_COL_BLOCK_SIZE,
              mesh: Optional[Mesh] = None) -> jax.Array:
  """Distance from each point to its k-th nearest other point, for several k.

  One distance pass serves every k: the running top-k keeps max(ks)
  neighbours. On one device the pass uses the symmetry of the distances
  (only blocks I <= J are computed: about half the FLOPs); with a mesh it
  is the ring of `knn`. This is the radius of the k-NN ball of improved
  precision/recall (Kynkaanniemi et al. 2019) and of prdc (Naeem et al. 2020): prdc's
  "k+1-th smallest distance including self" is the k-th excluding self.

  Args:
    x: (n, d) array.
    ks: neighbour counts, each in [1, n - 1].
    block_size: rows (and, on one device, columns) per block.
    col_block_size: columns per scan step with a mesh.
    mesh: shard x by rows over this mesh's devices.

  Returns:
    (n, len(ks)) array of Euclidean radii.
  """
  ks = tuple(int(k) for k in ks)
  n = x.shape[0]
  if not ks or min(ks) < 1 or max(ks) > n - 1:
    raise ValueError(f"every k must lie in [1, n - 1] = [1, {n - 1}]; got {ks}.")
  return _knn_radii(x, ks, block_size, col_block_size, mesh)


def nearest_neighbor(queries: jax.Array, refs: jax.Array, *,
                     block_size: int = DEFAULT_BLOCK_SIZE,
                     col_block_size: int = DEFAULT_COL_BLOCK_SIZE,
                     mesh: Optional[Mesh] = None):
  """Nearest reference of each query: ((n,) distances, (n,) indices)."""
  dist, idx = knn(queries, refs, k=1, block_size=block_size,
                  col_block_size=col_block_size, mesh=mesh)
  return dist[:, 0], idx[:, 0]
