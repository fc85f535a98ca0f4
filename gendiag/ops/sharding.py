"""Row sharding over a mesh: shard/unshard rows, and the ring of shard pairs.

Pass `mesh=` (a `jax.sharding.Mesh`) to the blocked functions of
`gendiag.ops.distances` and `gendiag.ops.knn` and both sets are split by
rows across all of its devices. Each device keeps its row shard of x and
passes its shard of y around a ring (`shard_map` + `ppermute`), so after D
steps every block pair has met once; row sums and K v accumulate locally and
k-NN candidates merge into a running top-k. No device ever holds more than
n/D + 2 m/D rows, so a reference set larger than one device fits. Results
(per-row vectors, small) come back replicated and equal the single-device
ones.
"""

from typing import Callable

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec


def mesh_axes(mesh: Mesh):
  """All axis names of `mesh`: rows are split over every one of them."""
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


def shard_rows(a: jax.Array, mesh: Mesh) -> jax.Array:
  """Shards rows over every device of `mesh`, zero-padded to a multiple of D.

  Callers mask the padding rows (e.g. with
  `shard_rows(jnp.ones((n,), bool), mesh)`, False on padding). The padding
  happens on a replicated copy, so its transpose (a slice) never
  meets a sharded dimension under `grad` on Explicit meshes.
  """
  pad = (-a.shape[0]) % mesh.size
  if pad:
    a = constrain(a, mesh, PartitionSpec())
    a = jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1))
  return constrain(a, mesh, PartitionSpec(mesh_axes(mesh)))


def unshard_rows(a, n, mesh):
  """Replicates a small per-row result on `mesh` and drops padding rows."""
  return constrain(a, mesh, PartitionSpec())[:n]


def ring(mesh, local_step, carry, x, ys):
  """Runs `local_step(carry, x_shard, y_shards, owner)` over a ring of D steps.

  Inside `shard_map`: device i holds row shard i of x and, at step s, the
  shards of `ys` that started on device (i - s) mod D (`owner`), then passes
  them on to device i + 1.
  """
  axes = mesh_axes(mesh)
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

  The general form of `ring`, for passes that accumulate per row of
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
  axes = mesh_axes(mesh)
  spec = PartitionSpec(axes)
  size = mesh.size
  n = jax.tree.leaves(x_arrays)[0].shape[0]
  m = jax.tree.leaves(y_arrays)[0].shape[0]
  shard = lambda tree: jax.tree.map(lambda a: shard_rows(a, mesh), tree)  # noqa: E731
  x_valid = shard_rows(jnp.ones((n,), bool), mesh)
  y_valid = shard_rows(jnp.ones((m,), bool), mesh)
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
