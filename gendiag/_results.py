"""Result containers: frozen dataclasses registered as JAX pytrees.

Every metric returns one of these so results pass through `jit` and `vmap`.
Fields listed in `static` are Python values kept out of the tree (sizes,
names); all others are array leaves.
"""

import dataclasses
from typing import Any

import jax
import numpy as np


def _to_builtin(value: Any) -> Any:
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()
  if isinstance(value, (tuple, list)):
    return [_to_builtin(v) for v in value]
  if isinstance(value, dict):
    return {k: _to_builtin(v) for k, v in value.items()}
  return value


def result(cls=None, *, static=()):
  """Decorator: a frozen dataclass that is a pytree and has `to_dict()`."""

  def wrap(cls):
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    jax.tree_util.register_dataclass(
        cls, data_fields=[n for n in names if n not in static],
        meta_fields=[n for n in names if n in static])

    def to_dict(self) -> dict:
      """JSON-ready values: arrays become floats or nested lists."""
      return {n: _to_builtin(getattr(self, n)) for n in names}

    cls.to_dict = to_dict
    return cls

  return wrap if cls is None else wrap(cls)
