"""Validation of arrays at the public boundary.

Checks that depend on values (finiteness) run only on concrete arrays: under
`jit`, `vmap` or `grad` the inputs are tracers and only the static checks
(rank, shapes, sample counts) apply.
"""

from typing import Optional

import jax
import numpy as np


def is_concrete(x) -> bool:
  """Whether `x` holds values (not a tracer inside a transformation)."""
  return not isinstance(x, jax.core.Tracer)


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
    finite = np.isfinite(np.asarray(x))
    if not finite.all():
      rows = np.flatnonzero(~finite.all(axis=1))
      raise ValueError(
          f"`{name}` contains NaN or inf in {rows.size} rows (first: "
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
