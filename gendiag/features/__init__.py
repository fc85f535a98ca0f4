"""Feature extractors: images -> (n, d) features that the metrics compare.

An extractor is ANY callable `images -> (n, d) array` (the `Extractor`
protocol): a shipped network, a pretrained model of your own, or plain
pixels. Wherever gendiag embeds images (the main job's digits default, the
CAS experiment) it takes an extractor, by name from `EXTRACTORS` or as a
callable, and checks its output with `embed`.

  digits_features  the shipped 8x8-digits CNN's 64-d penultimate layer
                   (see `gendiag.features.digits_net`).
  pixels           the flattened pixels (a baseline without learned features).
"""

from typing import Callable, Dict, Protocol, Union

import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks
from gendiag.features.digits_net import digits_features


class Extractor(Protocol):
  """Maps a batch of n images (any shape the extractor accepts) to (n, d)."""

  def __call__(self, images) -> jax.Array:
    ...


def pixels(images) -> jax.Array:
  """Flattened pixels as features: (n, ...) -> (n, prod(...)) float32."""
  images = jnp.asarray(images, jnp.float32)
  return images.reshape(images.shape[0], -1)


EXTRACTORS: Dict[str, Extractor] = {
    "digits_net": digits_features,
    "pixels": pixels,
}


def get(extractor: Union[str, Callable]) -> Extractor:
  """An extractor by name (a key of `EXTRACTORS`) or the callable itself."""
  if callable(extractor):
    return extractor
  if extractor not in EXTRACTORS:
    raise ValueError(f"unknown extractor {extractor!r}; choose one of "
                     f"{sorted(EXTRACTORS)} or pass a callable images -> "
                     "(n, d) features.")
  return EXTRACTORS[extractor]


def embed(extractor: Union[str, Callable], images, *,
          name: str = "images") -> np.ndarray:
  """Runs an extractor and checks its output: (n, d) finite float32 numpy.

  Args:
    extractor: a name in `EXTRACTORS` or any callable images -> features.
    images: (n, ...) images the extractor accepts.
    name: what the images are, for error messages.

  Returns:
    (n, d) float32 numpy features.

  Raises:
    ValueError: the output is not (n, d) with one row per image, or holds
      NaN/inf.
  """
  features = np.asarray(get(extractor)(images), np.float32)
  n = np.shape(images)[0]
  if features.ndim != 2 or features.shape[0] != n:
    raise ValueError(f"the extractor returned shape {features.shape} for {n} "
                     f"{name}; it must return (n, d) features, one row per "
                     "image.")
  _checks.check_features(features, f"features of {name}")
  return features


__all__ = ("Extractor", "EXTRACTORS", "digits_features", "embed", "get",
           "pixels")
