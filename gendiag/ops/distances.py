"""Blocked pairwise computations: squared distances, kernel sums, k-NN search.

Every n x m computation here walks the rows of the first set in blocks of
`block_size` rows (`lax.map`), so at most `block_size x m` floats exist at a
time; k-NN search also walks the columns, so it holds `block_size x
col_block_size`. Results never depend on the block sizes beyond float32
summation order.

Sharding: pass `mesh=` (a `jax.sharding.Mesh`) and both sets are split by
rows across all of its devices. Each device keeps its row shard of x and
passes its shard of y around a ring (`shard_map` + `ppermute`), so after D
steps every block pair has met once; row sums and K v accumulate locally and
k-NN candidates merge into a running top-k. No device ever holds more than
n/D + 2 m/D rows, so a reference set larger than one device fits. Results
(per-row vectors, small) come back replicated and equal the single-device
ones.

Matrix products run at `Precision.HIGHEST`: TPU (bf16) and Ampere/Hopper GPU
(TF32) defaults would otherwise corrupt distances between nearby points.
"""

import functools
import math
from typing import Callable, Optional, Sequence

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

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


def balanced_block(n: int, block_size: int) -> int:
  """The smallest block size that needs as many blocks as `block_size` does."""
  return math.ceil(n / math.ceil(n / block_size))


def map_row_blocks(fn: Callable, x: jax.Array, *,
                   block_size: int = DEFAULT_BLOCK_SIZE):
  """Applies `fn(x_block, start)` to row blocks of `x` and concatenates.

  Args:
    fn: maps a (b, d) block and the index of its first row (an int32 scalar)
      to a pytree of arrays with leading dimension b.
    x: (n, d) array. The last block is zero-padded; padded rows are dropped
      from the output, so `fn` must not sum across rows.
    block_size: the most rows per block; blocks are balanced (10000 rows
      with block_size 8192 run as two blocks of 5000, not 8192 + padding).

  Returns:
    The pytree of `fn`'s outputs with leading dimension n.
  """
  n = x.shape[0]
  if n <= block_size:
    return fn(x, jnp.int32(0))
  num_blocks = math.ceil(n / block_size)
  block_size = balanced_block(n, block_size)
  pad = num_blocks * block_size - n
  blocks = jnp.pad(x, ((0, pad), (0, 0))).reshape(
      num_blocks, block_size, x.shape[1])
  starts = jnp.arange(num_blocks, dtype=jnp.int32) * block_size
  out = lax.map(lambda args: fn(*args), (blocks, starts))
  return jax.tree.map(
      lambda a: a.reshape((num_blocks * block_size,) + a.shape[2:])[:n], out)


# --------------------------------------------------------------------------
# Local (one-device) building blocks. Rows and columns carry global offsets
# and columns a validity mask, so the same code serves each ring step.


def _gram(kernel, xb, y, row_start, col_start, col_valid, exclude_diagonal):
  """Kernel block with invalid columns and (optionally) i == j zeroed."""
  k = kernel(xb, y)
  if col_valid is not None:
    k = jnp.where(col_valid[None, :], k, 0.0)
  if exclude_diagonal:
    rows = row_start + jnp.arange(xb.shape[0])[:, None]
    cols = col_start + jnp.arange(y.shape[0])[None, :]
    k = jnp.where(rows == cols, 0.0, k)
  return k


def _local_matvec(kernel, x, y, v, *, row_start=0, col_start=0,
                  col_valid=None, exclude_diagonal=False, block_size):
  """K v (v (m,) or (m, p)), or row sums when v is None, over rows of x."""

  def block(xb, start):
    k = _gram(kernel, xb, y, row_start + start, col_start, col_valid,
              exclude_diagonal)
    if v is None:
      return jnp.sum(k, axis=1)
    return jnp.matmul(k, v, precision=HIGHEST)

  return map_row_blocks(block, x, block_size=block_size)


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
  cb = balanced_block(m, col_block_size)
  ref_blocks = jnp.pad(refs, ((0, num_col_blocks * cb - m), (0, 0))).reshape(
      num_col_blocks, cb, d)
  col_starts = col_start + jnp.arange(num_col_blocks, dtype=jnp.int32) * cb
  limit = jnp.minimum(num_valid_cols, col_start + m)

  def block_update(qb, start, running):
    rows = row_start + start + jnp.arange(qb.shape[0], dtype=jnp.int32)

    def masked_distances(rb, c0):
      cols = c0 + jnp.arange(cb, dtype=jnp.int32)
      dist = sq_distances(qb, rb)
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
  block_size = balanced_block(n, block_size)
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


# --------------------------------------------------------------------------
# Sharding: rows of both sets split over every device of the mesh, a ring.


def _axes(mesh: Mesh):
  return tuple(mesh.axis_names)


def constrain(a, mesh, spec):
  """Constrains `a` to `spec` on `mesh` (Explicit and Auto meshes alike)."""
  sharding = NamedSharding(mesh, spec)
  if all(t == jax.sharding.AxisType.Explicit for t in mesh.axis_types):
    return jax.reshard(a, sharding)
  return lax.with_sharding_constraint(a, sharding)


def replicated(a):
  """`a` replicated on the mesh its type is sharded over (Explicit axes).

  Arrays of an Explicit mesh (`jax.make_mesh`'s default, so the README's
  global arrays) carry their sharding in their type, which one-device code
  such as an (n, n) distance block rejects; use this on small arrays only.
  Any other array comes back unchanged.
  """
  mesh = getattr(getattr(jax.typeof(a), "sharding", None), "mesh", None)
  if mesh is None or mesh.empty or not any(
      t == jax.sharding.AxisType.Explicit for t in mesh.axis_types):
    return a
  return jax.reshard(a, NamedSharding(mesh, PartitionSpec()))


def _shard_rows(a, mesh):
  """Zero-pads rows to a multiple of the device count and shards them.

  The padding happens on a replicated copy, so its transpose (a slice) never
  meets a sharded dimension under `grad` on Explicit meshes.
  """
  pad = (-a.shape[0]) % mesh.size
  if pad:
    a = constrain(a, mesh, PartitionSpec())
    a = jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1))
  return constrain(a, mesh, PartitionSpec(_axes(mesh)))


def shard_rows(a: jax.Array, mesh: Mesh) -> jax.Array:
  """Shards rows over every device of `mesh`, zero-padded to a multiple of D.

  Callers mask the padding rows (e.g. with
  `shard_rows(jnp.ones((n,), bool), mesh)`, False on padding).
  """
  return _shard_rows(a, mesh)


def unshard_rows(a, n, mesh):
  """Replicates a small per-row result on `mesh` and drops padding rows."""
  return constrain(a, mesh, PartitionSpec())[:n]


def _ring(mesh, local_step, carry, x, ys):
  """Runs `local_step(carry, x_shard, y_shards, owner)` over a ring of D steps.

  Inside `shard_map`: device i holds row shard i of x and, at step s, the
  shards of `ys` that started on device (i - s) mod D (`owner`), then passes
  them on to device i + 1.
  """
  axes = _axes(mesh)
  size = mesh.size
  perm = [(j, (j + 1) % size) for j in range(size)]
  me = lax.axis_index(axes)
  # The initial carry is the same on every device; mark it per-device.
  carry = jax.tree.map(lambda c: lax.pcast(c, axes, to="varying"), carry)

  def body(s, state):
    c, shards = state
    c = local_step(c, x, shards, (me - s) % size)
    return c, lax.ppermute(shards, axes, perm)

  carry, _ = lax.fori_loop(0, size, body, (carry, ys))
  return carry


def ring_pair_reduce(local_fn: Callable, x_arrays, x_acc, y_arrays, y_acc, *,
                     mesh: Mesh):
  """Reduces over every (x row, y row) pair with rows of both sets sharded.

  The general form of the ring above, for passes that accumulate per row of
  *both* sets (e.g. "how many y balls contain x_i" and "is y_j's nearest x
  closer than r_j" in one distance pass). Device i keeps row shard i of
  `x_arrays` and `x_acc`; the shards of `y_arrays` travel around the ring
  together with their accumulators `y_acc`, and after D steps each one is
  back on its owner with every x shard's contribution added. Each step calls

    x_acc, y_acc = local_fn(x_arrays, x_valid, x_acc,
                            y_arrays, y_valid, y_acc)

  on local shards (leading dimensions n/D and m/D, rows zero-padded to a
  multiple of D); `x_valid`/`y_valid` are bool row masks that `local_fn`
  must use so padding rows contribute nothing (their accumulators are
  dropped). Memory per device is whatever `local_fn` needs for one pair of
  shards, so block it over rows.

  Args:
    local_fn: the local reduction, as above.
    x_arrays: pytree of arrays with leading dimension n.
    x_acc: pytree of initial accumulators with leading dimension n.
    y_arrays: pytree of arrays with leading dimension m.
    y_acc: pytree of initial accumulators with leading dimension m.
    mesh: rows are split over all of its devices.

  Returns:
    (x_acc, y_acc), replicated, padding rows dropped.
  """
  axes = _axes(mesh)
  spec = PartitionSpec(axes)
  size = mesh.size
  n = jax.tree.leaves(x_arrays)[0].shape[0]
  m = jax.tree.leaves(y_arrays)[0].shape[0]
  shard = lambda tree: jax.tree.map(lambda a: _shard_rows(a, mesh), tree)  # noqa: E731
  x_valid = _shard_rows(jnp.ones((n,), bool), mesh)
  y_valid = _shard_rows(jnp.ones((m,), bool), mesh)
  perm = [(j, (j + 1) % size) for j in range(size)]

  def shard_fn(xa, xv, xc, ya, yv, yc):
    def body(_, state):
      xc, travelling = state
      ya, yv, yc = travelling
      xc, yc = local_fn(xa, xv, xc, ya, yv, yc)
      return xc, lax.ppermute((ya, yv, yc), axes, perm)

    xc, (_, _, yc) = lax.fori_loop(0, size, body, (xc, (ya, yv, yc)))
    return xc, yc

  x_out, y_out = jax.shard_map(
      shard_fn, mesh=mesh, in_specs=(spec,) * 6, out_specs=(spec, spec))(
          shard(x_arrays), x_valid, shard(x_acc), shard(y_arrays), y_valid,
          shard(y_acc))
  unshard = lambda tree, k: jax.tree.map(  # noqa: E731
      lambda a: unshard_rows(a, k, mesh), tree)
  return unshard(x_out, n), unshard(y_out, m)


def _sharded_matvec(kernel, x, y, v, *, exclude_diagonal, block_size, mesh):
  axes = _axes(mesh)
  n, m = x.shape[0], y.shape[0]
  xs, ys = _shard_rows(x, mesh), _shard_rows(y, mesh)
  valid = _shard_rows(jnp.arange(ys.shape[0]) < m, mesh)
  vs = None if v is None else _shard_rows(v, mesh)
  n_local, m_local = xs.shape[0] // mesh.size, ys.shape[0] // mesh.size

  def shard_fn(kern, x_shard, y_shard, valid_shard, v_shard):
    row_start = lax.axis_index(axes) * n_local

    def step(acc, xl, shards, owner):
      yl, ok, vl = shards
      return acc + _local_matvec(
          kern, xl, yl, vl, row_start=row_start, col_start=owner * m_local,
          col_valid=ok, exclude_diagonal=exclude_diagonal,
          block_size=block_size)

    out_shape = (n_local,) if v_shard is None else (n_local,) + v.shape[1:]
    acc = jnp.zeros(out_shape, x_shard.dtype)
    return _ring(mesh, step, acc, x_shard, (y_shard, valid_shard, v_shard))

  spec = PartitionSpec(axes)
  out = jax.shard_map(
      shard_fn, mesh=mesh,
      in_specs=(PartitionSpec(), spec, spec, spec,
                None if vs is None else spec),
      out_specs=spec)(kernel, xs, ys, valid, vs)
  return unshard_rows(out, n, mesh)


def _sharded_knn(queries, refs, *, k, exclude_self, block_size,
                 col_block_size, mesh):
  axes = _axes(mesh)
  spec = PartitionSpec(axes)
  n, m = queries.shape[0], refs.shape[0]
  qs, rs = _shard_rows(queries, mesh), _shard_rows(refs, mesh)
  n_local, m_local = qs.shape[0] // mesh.size, rs.shape[0] // mesh.size

  def shard_fn(q_shard, r_shard):
    row_start = lax.axis_index(axes) * n_local

    def step(best, ql, rl, owner):
      return _local_knn_update(
          best, ql, rl, k=k, exclude_self=exclude_self, row_start=row_start,
          col_start=owner * m_local, num_valid_cols=m, block_size=block_size,
          col_block_size=col_block_size)

    best = _init_best(n_local, k, q_shard.dtype)
    return _ring(mesh, step, best, q_shard, r_shard)

  best_d, best_i = jax.shard_map(shard_fn, mesh=mesh, in_specs=(spec, spec),
                                 out_specs=(spec, spec))(qs, rs)
  return unshard_rows(best_d, n, mesh), unshard_rows(best_i, n, mesh)


# --------------------------------------------------------------------------
# Public API.


def kernel_matvec(kernel: Kernel, x: jax.Array, y: jax.Array, v: jax.Array, *,
                  exclude_diagonal: bool = False,
                  block_size: int = DEFAULT_BLOCK_SIZE,
                  mesh: Optional[Mesh] = None) -> jax.Array:
  """K v for the Gram matrix K_ij = k(x_i, y_j), blocked over rows of x.

  Args:
    kernel: the kernel.
    x: (n, d) array.
    y: (m, d) array.
    v: (m,) or (m, p) array.
    exclude_diagonal: use K with its diagonal zeroed (x and y the same set).
    block_size: rows of x per block.
    mesh: shard x, y and v by rows over this mesh's devices (a ring).

  Returns:
    (n,) or (n, p) array.
  """
  _check_square(exclude_diagonal, x, y)
  if mesh is not None:
    return _sharded_matvec(kernel, x, y, v, exclude_diagonal=exclude_diagonal,
                           block_size=block_size, mesh=mesh)
  return _local_matvec(kernel, x, y, v, exclude_diagonal=exclude_diagonal,
                       block_size=block_size)


def kernel_row_sums(kernel: Kernel, x: jax.Array, y: jax.Array, *,
                    exclude_diagonal: bool = False,
                    block_size: int = DEFAULT_BLOCK_SIZE,
                    mesh: Optional[Mesh] = None) -> jax.Array:
  """Row sums r_i = sum_j k(x_i, y_j), blocked over the rows of x.

  Args:
    kernel: maps (b, d) and (m, d) arrays to the (b, m) Gram block.
    x: (n, d) array.
    y: (m, d) array.
    exclude_diagonal: drop the terms j = i (x and y must be the same set).
    block_size: rows of x per block.
    mesh: shard x and y by rows over this mesh's devices (a ring).

  Returns:
    (n,) array of row sums.
  """
  _check_square(exclude_diagonal, x, y)
  if mesh is not None:
    return _sharded_matvec(kernel, x, y, None,
                           exclude_diagonal=exclude_diagonal,
                           block_size=block_size, mesh=mesh)
  return _local_matvec(kernel, x, y, None, exclude_diagonal=exclude_diagonal,
                       block_size=block_size)


def kernel_sum(kernel: Kernel, x: jax.Array, y: jax.Array, *,
               exclude_diagonal: bool = False,
               block_size: int = DEFAULT_BLOCK_SIZE,
               mesh: Optional[Mesh] = None) -> jax.Array:
  """Total sum_ij k(x_i, y_j) (optionally i != j), blocked over rows of x."""
  return jnp.sum(kernel_row_sums(kernel, x, y,
                                 exclude_diagonal=exclude_diagonal,
                                 block_size=block_size, mesh=mesh))


def _check_square(exclude_diagonal, x, y):
  if exclude_diagonal and x.shape[0] != y.shape[0]:
    raise ValueError("exclude_diagonal needs x and y to be the same set; got "
                     f"{x.shape[0]} and {y.shape[0]} rows.")


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
    dist = sq_distances(xb, xb)
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
    dist = sq_distances(blocks[i], slab)  # (b, H b)
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
  if mesh is None and max(ks) <= balanced_block(x.shape[0], block_size):
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
  is the ring of `knn`. This is the radius of the k-NN ball of improved precision/recall
  (Kynkaanniemi et al. 2019) and of prdc (Naeem et al. 2020): prdc's
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
