"""Blocked pairwise computations: squared distances and kernel sums.

Every n x m computation here walks the rows of the first set in blocks of
`block_size` rows (`lax.map`), so at most `block_size x m` floats exist at a
time. Results never depend on the block sizes beyond float32 summation
order. k-NN search is in `gendiag.ops.knn`.

Sharding: pass `mesh=` and both sets are split by rows across all of its
devices, the shards of y travelling around a ring (`gendiag.ops.sharding`);
results come back replicated and equal the single-device ones.

Matrix products run at `Precision.HIGHEST`: TPU (bf16) and Ampere/Hopper GPU
(TF32) defaults would otherwise corrupt distances between nearby points.
"""

import math
from typing import Callable, Optional

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec

from gendiag.ops import sharding

DEFAULT_BLOCK_SIZE = 1024
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


def _sharded_matvec(kernel, x, y, v, *, exclude_diagonal, block_size, mesh):
  axes = sharding.mesh_axes(mesh)
  n, m = x.shape[0], y.shape[0]
  xs, ys = sharding.shard_rows(x, mesh), sharding.shard_rows(y, mesh)
  valid = sharding.shard_rows(jnp.arange(ys.shape[0]) < m, mesh)
  vs = None if v is None else sharding.shard_rows(v, mesh)
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
    return sharding.ring(mesh, step, acc, x_shard,
                         (y_shard, valid_shard, v_shard))

  spec = PartitionSpec(axes)
  out = jax.shard_map(
      shard_fn, mesh=mesh,
      in_specs=(PartitionSpec(), spec, spec, spec,
                None if vs is None else spec),
      out_specs=spec)(kernel, xs, ys, valid, vs)
  return sharding.unshard_rows(out, n, mesh)

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


def gram_matvec(kernel: Kernel, x: jax.Array, v: jax.Array, *,
                exclude_diagonal: bool = False,
                block_size: int = DEFAULT_BLOCK_SIZE,
                mesh: Optional[Mesh] = None) -> jax.Array:
  """K v for the symmetric Gram matrix K_ij = k(x_i, x_j) of one set.

  `kernel_matvec(kernel, x, x, v)` at about half its kernel evaluations: the
  rows are split into an odd number B of blocks of at most `block_size`;
  each block I meets itself and, cyclically, the next H = (B - 1) / 2
  blocks J in one (b, H b) product K_IJ, which adds K_IJ v_J to block I's
  output and K_IJ^T v_I to theirs. Every unordered block pair meets once.
  Memory: the gathered H blocks (n/2 x d) and one (b, n/2) kernel block.
  With a mesh this is `kernel_matvec`'s ring.

  Args:
    kernel: a symmetric kernel.
    x: (n, d) array.
    v: (n,) or (n, p) array.
    exclude_diagonal: use K with its diagonal zeroed.
    block_size: the most rows per block.
    mesh: shard x and v by rows over this mesh's devices (a ring).

  Returns:
    (n,) or (n, p) array.
  """
  if mesh is not None:
    return kernel_matvec(kernel, x, x, v, exclude_diagonal=exclude_diagonal,
                         block_size=block_size, mesh=mesh)
  n, d = x.shape
  num_blocks = math.ceil(n / block_size)
  num_blocks += 1 - num_blocks % 2          # odd: no pair meets twice
  if num_blocks == 1:
    return _local_matvec(kernel, x, x, v, exclude_diagonal=exclude_diagonal,
                         block_size=n)
  cols = v[:, None] if v.ndim == 1 else v
  b = math.ceil(n / num_blocks)
  pad = num_blocks * b - n
  xs = jnp.pad(x, ((0, pad), (0, 0))).reshape(num_blocks, b, d)
  vs = jnp.pad(cols, ((0, pad), (0, 0))).reshape(num_blocks, b, -1)
  valid = (jnp.arange(num_blocks * b) < n).reshape(num_blocks, b)
  half = num_blocks // 2

  def diagonal(xb, vb):
    k = kernel(xb, xb)
    if exclude_diagonal:
      k = jnp.where(jnp.eye(b, dtype=bool), 0.0, k)
    return jnp.matmul(k, vb, precision=HIGHEST)

  out = lax.map(lambda a: diagonal(*a), (xs, vs))       # (B, b, p)

  def step(out, i):
    others = (i + 1 + jnp.arange(half)) % num_blocks
    slab = jnp.take(xs, others, axis=0).reshape(half * b, d)
    ok = jnp.take(valid, others, axis=0).reshape(half * b)
    k = jnp.where(valid[i][:, None] & ok[None, :], kernel(xs[i], slab), 0.0)
    v_others = jnp.take(vs, others, axis=0).reshape(half * b, -1)
    out = out.at[i].add(jnp.matmul(k, v_others, precision=HIGHEST))
    back = jnp.matmul(k.T, vs[i], precision=HIGHEST)
    return out.at[others].add(back.reshape(half, b, -1)), None

  out, _ = lax.scan(step, out, jnp.arange(num_blocks))
  out = out.reshape(num_blocks * b, -1)[:n]
  return out[:, 0] if v.ndim == 1 else out


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

