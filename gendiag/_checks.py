"""Validation of arrays at the public boundary.

Checks that depend on values (finiteness) run only on concrete arrays: under
`jit`, `vmap` or `grad` the inputs are tracers and only the static checks
(rank, shapes, sample counts) apply.
"""

from typing import Optional

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
  """Whether `x` holds values (not a tracer inside a transformation)."""
  return not isinstance(x, jax.core.Tracer)


@jax.jit
def _non_finite_rows(x):
  """(count, (n,) mask) of the rows of x holding NaN or inf.

  A jitted reduction, so a global array (rows on several processes) is
  checked where it lives; the count comes back as a replicated scalar.
  """
  bad = ~jnp.all(jnp.isfinite(x), axis=1)
  return jnp.sum(bad), bad


def _on_host(x) -> bool:
  """Whether all of `x` is in this process's CPU memory (numpy reads it)."""
  return x.is_fully_addressable and all(d.platform == "cpu"
                                        for d in x.devices())


def _fetch(a):
  """A jax.Array on the host, also when it spans several processes."""
  if a.is_fully_addressable or a.is_fully_replicated:
    return np.asarray(a)
  return multihost_utils.process_allgather(a, tiled=True)


def check_features(x, name: str, *, min_rows: int = 1,
                   dim: Optional[int] = None):
  """Raises `ValueError` unless `x` is a finite (n, d) array with n >= min_rows.

  Args:
    x: the array to check.
    name: the argument's name, used in the message.
    min_rows: the fewest rows the caller's estimator needs.
    dim: if given, the feature dimension `x` must have.
  """
  shape = np.shape(x)
  if len(shape) != 2:
    raise ValueError(
        f"`{name}` must be a 2-D array of shape (num_samples, num_features); "
        f"got shape {shape}. Reshape images with x.reshape(len(x), -1) or "
        "embed them with a feature extractor first.")
  n, d = shape
  if d == 0:
    raise ValueError(f"`{name}` has no features (shape {shape}).")
  if n < min_rows:
    raise ValueError(
        f"`{name}` has {n} samples but this estimator needs at least "
        f"{min_rows}; pass more samples.")
  if dim is not None and d != dim:
    raise ValueError(
        f"`{name}` has {d} features but the other input has {dim}; both sets "
        "must be embedded by the same feature extractor.")
  if is_concrete(x):
    if isinstance(x, jax.Array) and not _on_host(x):  # global arrays too
      with jax.ensure_compile_time_eval():  # concrete also inside a trace
        num_bad, bad = _non_finite_rows(x)
      rows = np.flatnonzero(_fetch(bad)) if _fetch(num_bad) else ()
    else:
      rows = np.flatnonzero(~np.isfinite(np.asarray(x)).all(axis=1))
    if len(rows):
      raise ValueError(
          f"`{name}` contains NaN or inf in {len(rows)} rows (first: "
          f"{rows[:5].tolist()}); drop or fix those samples before calling.")


def check_pair(real, generated, *, min_rows: int = 1,
               names=("real", "generated")):
  """`check_features` on both sets, which must share a feature dimension."""
  check_features(real, names[0], min_rows=min_rows)
  check_features(generated, names[1], min_rows=min_rows,
                 dim=np.shape(real)[1])


def check_positive_int(value, name: str, *, minimum: int = 1):
  if int(value) != value or value < minimum:
    raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")


def _spans_processes(a) -> bool:
  return (isinstance(a, jax.Array) and is_concrete(a)
          and not a.is_fully_addressable)


def check_addressable(what: str, **arrays):
  """Raises `ValueError` if an array spans several processes.

  For families that run (part of) their algorithm on the host or on one
  device, so cannot take a global array of `jax.make_array_from_process_
  local_data`. Only concrete arrays are checked (not tracers under `jit`).

  Args:
    what: the family's name, used in the message.
    **arrays: the arrays by argument name.
  """
  for name, a in arrays.items():
    if _spans_processes(a):
      raise ValueError(
          f"{what} does not support arrays spanning several processes "
          f"(`{name}` does); gather them with "
          "jax.experimental.multihost_utils.process_allgather first.")


def check_mesh(what: str, mesh, **arrays):
  """Raises `ValueError` for arrays sharded over an Explicit mesh without `mesh=`.

  Such arrays (`jax.make_mesh`'s default axes, so the README's global
  arrays) carry their sharding in their type, which the one-device passes
  reject; the sharded passes need the mesh. Checks tracers too.

  Args:
    what: the family's name, used in the message.
    mesh: the caller's `mesh=` argument.
    **arrays: the arrays by argument name.
  """
  if mesh is not None:
    return
  for name, a in arrays.items():
    sharding = getattr(getattr(a, "aval", None), "sharding", None)
    axes = getattr(getattr(sharding, "mesh", None), "axis_types", ())
    if (any(t == jax.sharding.AxisType.Explicit for t in axes)
        and any(p is not None for p in sharding.spec)):
      raise ValueError(
          f"`{name}` is sharded over a mesh ({sharding.spec}); pass that "
          f"mesh as {what}(..., mesh=mesh) so it runs its sharded passes.")


def check_same_key(key, what: str, *arrays):
  """Raises `ValueError` unless every process passed the same `key`.

  With arrays spanning several processes every process runs one program, so
  its random draws (subsets, permutations) must use one key; different keys
  would silently mix programs. A no-op for process-local arrays.
  """
  if not any(_spans_processes(a) for a in arrays) or not is_concrete(key):
    return
  data = key
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    data = jax.random.key_data(key)
  keys = multihost_utils.process_allgather(data)
  if not (keys == keys[:1]).all():
    raise ValueError(
        f"{what} got different keys on different processes; pass the same "
        "`key` on every process (e.g. jax.random.key(seed) with one seed).")
