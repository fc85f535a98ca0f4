"""Validation of arrays at the public boundary.

Checks that depend on values (finiteness) run only on concrete arrays: under
`jit`, `vmap` or `grad` the inputs are tracers and only the static checks
(rank, shapes, sample counts) apply.

Inputs: every public function casts its arrays with `as_float`: lists,
tuples, numpy and jax arrays of bool, integer, float16 or bfloat16 values
become float32 (float32 and float64 are kept; float64 is computed as such
only with x64 enabled). Values are then checked against the range in which
float32 squared distances and row products are safe (`check_range`), or,
for the scale-invariant k-NN metrics, rescaled into it by a power of two
(`rescale`), which is exact.
"""

from typing import Optional

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

_KEPT = (np.dtype(np.float32), np.dtype(np.float64))
# check_range's margin: max|x|^2 * d * 2^16 must stay below the dtype's
# largest value (4 for differences of rows, 2^14 for sums over rows).
_MARGIN = 2.0 ** 16
# rescale leaves inputs with max|x| in [2^-32, 2^32] untouched.
_RESCALE_RANGE = 32


def is_concrete(x) -> bool:
  """Whether `x` holds values (not a tracer inside a transformation)."""
  return not isinstance(x, jax.core.Tracer)


def check_class_labels(labels, name: str, num_rows: int,
                       num_classes: Optional[int] = None) -> np.ndarray:
  """(num_rows,) integer class labels in [0, num_classes) as int32 numpy.

  Raises ValueError naming the fix for a wrong shape, a non-integer dtype,
  negative labels, or (when `num_classes` is given) labels >= num_classes.
  """
  labels = np.asarray(labels)
  if labels.shape != (num_rows,):
    raise ValueError(f"`{name}` must have shape ({num_rows},), one label per "
                     f"row; got {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"`{name}` must hold integer class labels; got dtype "
                     f"{labels.dtype} (cast with .astype(int)).")
  labels = labels.astype(np.int64)
  if num_classes is None:
    if labels.size and labels.min() < 0:
      raise ValueError(f"`{name}` has negative labels; use 0..C-1.")
  else:
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
      raise ValueError(
          f"`{name}` has {bad.sum()} labels outside [0, {num_classes}) (e.g. "
          f"{labels[bad][:3].tolist()}); pass num_classes= covering every "
          "class or fix the labels.")
  return labels.astype(np.int32)


def check_probability_vectors(p, q) -> None:
  """Raises ValueError unless p, q are probability vectors of one shape.

  Non-empty, 1-D, the same length, finite, non-negative and summing to 1
  (within 1e-4); values are checked only where concrete (not under jit).
  """
  if np.ndim(p) != 1 or np.shape(p) != np.shape(q) or np.size(p) == 0:
    raise ValueError(
        "`p` and `q` must be non-empty 1-D probability vectors of the same "
        f"length; got shapes {np.shape(p)} and {np.shape(q)}.")
  for name, v in (("p", p), ("q", q)):
    if not is_concrete(v):
      continue
    v = np.asarray(v, np.float64)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
      raise ValueError(f"`{name}` must be finite and non-negative.")
    if abs(v.sum() - 1.0) > 1e-4:
      raise ValueError(f"`{name}` sums to {v.sum():.6g}, not 1; normalise it "
                       "(e.g. counts / counts.sum()).")


def as_float(x, name: str):
  """`x` as a floating array: float32 unless it is float32 or float64 already.

  jax arrays (and tracers) stay jax arrays, cast on their devices; other
  array-likes (lists, tuples, numpy arrays) become numpy arrays.

  Raises:
    ValueError: `x` does not hold real numbers (strings, objects, ragged
      lists, complex values).
  """
  if isinstance(x, jax.Array):
    dtype = np.dtype(x.dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or dtype.kind in "biu"):
      raise ValueError(f"`{name}` must hold real numbers; got dtype {dtype}.")
    return x if dtype in _KEPT else x.astype(jnp.float32)
  try:
    a = np.asarray(x)
  except (TypeError, ValueError) as e:  # ragged nested lists
    raise ValueError(f"`{name}` is not a rectangular array of numbers: "
                     f"{e}") from None
  if not (jnp.issubdtype(a.dtype, jnp.floating) or a.dtype.kind in "biu"):
    raise ValueError(f"`{name}` must hold real numbers; got dtype {a.dtype}. "
                     "Pass a numeric (n, d) array.")
  return a if a.dtype in _KEPT else a.astype(np.float32)


@jax.jit
def _max_abs(x):
  return jnp.max(jnp.abs(x))


def max_abs(x) -> float:
  """max |x| of a concrete array (a jitted reduction for jax arrays)."""
  if not np.size(x):
    return 0.0
  if isinstance(x, np.ndarray):
    return float(np.max(np.abs(x)))
  return float(_max_abs(x))


def _compute_dtype(x):
  """The dtype jax computes `x` in (float64 only with x64 enabled)."""
  return jax.dtypes.canonicalize_dtype(np.dtype(x.dtype))


def safe_bound(x) -> float:
  """sqrt(dtype max / (2^16 d)): the largest |x| check_range accepts."""
  d = max(np.shape(x)[-1], 1)
  return float(np.sqrt(np.finfo(_compute_dtype(x)).max / (_MARGIN * d)))


def check_range(x, name: str):
  """Raises `ValueError` if |x| exceeds the safe range for squared distances.

  Squared distances and products of rows reach 4 max|x|^2 d, and sums of
  them more; the check requires max|x|^2 d 2^16 <= float32 max (3.4e38),
  i.e. |x| <= 7.2e16 / sqrt(d) (float64 with x64: 5.2e151 / sqrt(d)). Only
  concrete arrays are checked.
  """
  if not is_concrete(x):
    return
  m, bound = max_abs(x), safe_bound(x)
  if m > bound:
    raise ValueError(
        f"`{name}` has values up to {m:.3g}: features exceed "
        f"{np.dtype(_compute_dtype(x)).name}'s safe range for squared "
        f"distances (|x| <= {bound:.3g} for {np.shape(x)[-1]} features); "
        "standardise them, e.g. (x - mean) / std with the real set's "
        "statistics.")


def rescale(*xs):
  """(xs * 2^s, s): a common power of two bringing max|x| into [1/2, 1).

  For scale-invariant metrics: multiplying by a power of two is exact, so
  inputs with max|x| in [2^-32, 2^32] are returned as they are (s = 0) and
  others give the results of that exact rescaling (distances in the result
  are multiplied back by 2^-s). Only concrete arrays are rescaled.
  """
  if not all(is_concrete(x) for x in xs):
    return xs, 0
  m = max(max_abs(x) for x in xs)
  if m == 0 or 2.0 ** -_RESCALE_RANGE <= m <= 2.0 ** _RESCALE_RANGE:
    return xs, 0
  s = -int(np.frexp(m)[1])
  return tuple(scale_pow2(x, s) for x in xs), s


def scale_pow2(x, s: int):
  """x * 2^s, exact, in two factors so that neither over- or underflows."""
  if s == 0:
    return x
  a = s // 2
  if isinstance(x, np.ndarray):
    return np.ldexp(np.ldexp(x, a), s - a).astype(x.dtype)
  return (x * (2.0 ** a)) * (2.0 ** (s - a))


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
  """`x` cast by `as_float`; `ValueError` unless a finite (n, d), n >= min_rows.

  Args:
    x: the array to check (any array-like).
    name: the argument's name, used in the message.
    min_rows: the fewest rows the caller's estimator needs.
    dim: if given, the feature dimension `x` must have.

  Returns:
    `x` as a floating array (`as_float`).
  """
  x = as_float(x, name)
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
  return x


def check_pair(real, generated, *, min_rows: int = 1,
               names=("real", "generated")):
  """`check_features` on both sets, which must share a feature dimension.

  Returns:
    (real, generated), cast by `as_float`.
  """
  real = check_features(real, names[0], min_rows=min_rows)
  generated = check_features(generated, names[1], min_rows=min_rows,
                             dim=np.shape(real)[1])
  return real, generated


def check_positive_int(value, name: str, *, minimum: int = 1):
  if int(value) != value or value < minimum:
    raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")


def fit_range(xs, names, *, invariant: bool):
  """Rescales (scale-invariant metrics) or range-checks the arrays `xs`.

  Returns:
    `xs`, rescaled by one common power of two if `invariant` (`rescale`),
    else unchanged after `check_range` on each.
  """
  if invariant:
    return rescale(*xs)[0]
  for x, name in zip(xs, names):
    check_range(x, name)
  return tuple(xs)


@jax.jit
def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v))
                            for v in jax.tree.leaves(tree)]))


def check_finite_result(value, what: str):
  """Raises `ValueError` if a concrete result (array or pytree) is not finite.

  For metrics whose kernel or products can overflow float32 inside the safe
  range of `check_range` (e.g. a cubic polynomial kernel, max|x|^6).
  """
  leaves = [v for v in jax.tree.leaves(value)
            if jnp.issubdtype(jnp.result_type(v), jnp.floating)]
  if not leaves or not all(is_concrete(v) for v in leaves):
    return
  if not bool(_all_finite(leaves)):
    raise ValueError(
        f"{what} is not finite: kernel values or products of the features "
        "overflowed float32; standardise the features, e.g. (x - mean) / std "
        "with the real set's statistics.")


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
