"""A small CNN for the 8x8 digits, shipped trained: digits' "Inception pool3".

Architecture (`DigitsNet`, 45,162 parameters, GELU activations so no
feature is ever exactly dead):

  (8, 8, 1) -> conv3x3(32) -> conv3x3(32) -> avgpool2 -> conv3x3(64)
  -> avgpool2 -> flatten (256) -> dense(64) = FEATURES -> dense(10) = logits

`digits_features(images)` returns the 64-d penultimate activations, the
counterpart of Inception's pool3 for FID/KID/PR on digits. The weights
(`digits_net.npz`, ~180 KB) were trained once by
`experiments/train_feature_net.py` (`gendiag.experiments.train_feature_net`)
on the `gendiag.data.digits.train_test()` train split; the test split's
accuracy is stored in the file and checked by `tests/test_digits_net.py`.
"""

import functools
import os
from typing import Optional, Tuple

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from gendiag import _checks

WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "digits_net.npz")
IMAGE_SHAPE = (8, 8)
NUM_CLASSES = 10
NUM_FEATURES = 64
_META_PREFIX = "meta/"


HIGHEST = jax.lax.Precision.HIGHEST


def patches3x3(x: jax.Array) -> jax.Array:
  """(..., H, W, C) -> (..., H, W, 9 C): each pixel's zero-padded 3x3 patch.

  Channel 9 C is ordered (row offset, column offset, channel), so a Dense
  layer on the patches is exactly a 3x3 'SAME' convolution.
  """
  h, w = x.shape[-3:-1]
  pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
  xp = jnp.pad(x, pad)
  return jnp.concatenate([xp[..., i:i + h, j:j + w, :]
                          for i in range(3) for j in range(3)], axis=-1)


class Conv3x3(nn.Module):
  """3x3 'SAME' convolution as patches + one matmul (im2col).

  Identical in value to `nn.Conv(features, (3, 3))`, but XLA:CPU runs
  `lax.conv` inside `lax.scan` training loops about 30x slower than this
  matmul form on small images (measured on 8x8 digits, jax 0.10).
  """
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dense(self.features, precision=HIGHEST)(patches3x3(x))


class DigitsNet(nn.Module):
  """The feature network: returns (logits (n, 10), features (n, 64))."""
  num_features: int = NUM_FEATURES
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> Tuple[jax.Array, jax.Array]:
    x = images[..., None]
    x = nn.gelu(Conv3x3(32)(x))
    x = nn.gelu(Conv3x3(32)(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.gelu(Conv3x3(64)(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[:-3] + (-1,))
    features = nn.gelu(nn.Dense(self.num_features, precision=HIGHEST)(x))
    logits = nn.Dense(self.num_classes, precision=HIGHEST)(features)
    return logits, features


def init_params(module: nn.Module, input_shape, rngs):
  """Initial parameters of `module`, one set per numpy Generator, stacked.

  Kernels are LeCun-normal (std sqrt(1 / fan_in) of a normal truncated at
  2 std and rescaled to that std, as flax's default initialiser), biases
  0, drawn on the host from the Generators: compiling jax's truncated normal
  takes seconds on CPU, longer than training these small networks.

  Args:
    module: a flax module whose parameters are named 'kernel' and 'bias'.
    input_shape: shape of one input (without the batch axis).
    rngs: numpy Generators, one per parameter set.

  Returns:
    A params pytree whose leaves have a leading axis of len(rngs).
  """
  shapes = jax.eval_shape(
      module.init, jax.random.key(0),
      jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32))["params"]
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)

  def draw(rng, path, leaf):
    if getattr(path[-1], "key", None) != "kernel":
      return np.zeros(leaf.shape, np.float32)
    z = rng.standard_normal(leaf.shape)
    while np.any(np.abs(z) > 2):
      bad = np.abs(z) > 2
      z[bad] = rng.standard_normal(bad.sum())
    fan_in = int(np.prod(leaf.shape[:-1]))
    return np.float32(z * np.sqrt(1.0 / fan_in) / .87962566103423978)

  return jax.tree_util.tree_unflatten(treedef, [
      jnp.asarray(np.stack([draw(rng, path, leaf) for rng in rngs]))
      for path, leaf in leaves])


def host_rng(key: jax.Array, *salt: int) -> np.random.Generator:
  """A numpy Generator seeded by a jax.random key's data (and a salt)."""
  seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
  return np.random.default_rng(seed + [int(s) for s in salt])


def as_images(images, name: str = "images") -> jax.Array:
  """(n, 8, 8) float32 from (n, 8, 8), (n, 8, 8, 1) or flat (n, 64) pixels.

  Raises:
    ValueError: another shape, or non-finite values (concrete inputs only).
  """
  shape = np.shape(images)
  if len(shape) == 4 and shape[-1] == 1:
    images = jnp.reshape(images, shape[:3])
  elif len(shape) == 2 and shape[1] == IMAGE_SHAPE[0] * IMAGE_SHAPE[1]:
    images = jnp.reshape(images, (shape[0],) + IMAGE_SHAPE)
  if np.shape(images)[1:] != IMAGE_SHAPE or len(np.shape(images)) != 3:
    raise ValueError(
        f"`{name}` must be 8x8 digits of shape (n, 8, 8), (n, 8, 8, 1) or "
        f"(n, 64) with pixels in [0, 1]; got shape {shape}. For other images "
        "pass your own extractor (any callable images -> (n, d) features).")
  _checks.check_features(jnp.reshape(images, (len(images), -1)), name)
  return jnp.asarray(images, jnp.float32)


def save_params(path: str, params, **metadata) -> None:
  """Writes params (flattened 'a/b/c' keys) and scalar metadata to .npz."""
  flat = {"/".join(k): np.asarray(v, np.float32) for k, v in
          traverse_util.flatten_dict(params).items()}
  flat.update({_META_PREFIX + k: np.asarray(v) for k, v in metadata.items()})
  np.savez_compressed(path, **flat)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str):
  if not os.path.exists(path):
    raise ValueError(f"no feature-network weights at {path!r}; train them "
                     "with experiments/train_feature_net.py.")
  with np.load(path, allow_pickle=False) as archive:
    params, meta = {}, {}
    for name in archive.files:
      if name.startswith(_META_PREFIX):
        meta[name[len(_META_PREFIX):]] = archive[name].item()
      else:
        params[tuple(name.split("/"))] = jnp.asarray(archive[name])
  return traverse_util.unflatten_dict(params), meta


def load_params(path: Optional[str] = None):
  """(params, metadata) of the shipped weights (or of the .npz at `path`).

  metadata holds at least `test_accuracy` (on `digits.train_test()`'s test
  split), `train_accuracy`, `feature_scale`, `steps` and `seed`.
  """
  return _load_cached(os.path.abspath(path or WEIGHTS_PATH))


@jax.jit
def apply(params, images: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """(logits (n, 10), features (n, 64)) of (n, 8, 8) images; jit-compiled."""
  return DigitsNet().apply({"params": params}, images)


def _blocked_apply(params, images: jax.Array, block: int = 256):
  """`apply` over fixed 256-row blocks: one compiled program for any n."""
  n = images.shape[0]
  if isinstance(images, jax.core.Tracer) or n == 0:
    return apply(params, images)
  # Padding, slicing and joining on the host: as JAX ops each new n would
  # compile a few small programs of its own.
  padded = np.pad(np.asarray(images), ((0, -n % block), (0, 0), (0, 0)))
  outs = [apply(params, padded[i:i + block])
          for i in range(0, padded.shape[0], block)]
  return tuple(jnp.asarray(np.concatenate([np.asarray(p) for p in parts])[:n])
               for parts in zip(*outs))


def digits_features(images, *, params=None,
                    scale: Optional[float] = None) -> jax.Array:
  """Penultimate-layer features of the shipped digits network.

  f(x) = gelu(W h(x) + b) / s: the 64-d input of the final linear classifier,
  divided by the constant s that gives the network's own training digits a
  mean squared entry of 1 (stored with the weights as `feature_scale`), so
  x . y / d is of order 1 as for Inception pool3 features and KID's cubic
  kernel (x . y / d + 1)^3 is well conditioned. The digits counterpart of
  Inception-v3 pool3 features for FID/KID/PR. Deterministic; differentiable
  in the images.

  Args:
    images: (n, 8, 8), (n, 8, 8, 1) or (n, 64) float pixels in [0, 1]
      (`gendiag.data.digits.load()`'s scale: sklearn's 0-16 divided by 16).
    params: optional weights; the shipped ones by default.
    scale: the divisor s; by default the shipped `feature_scale` with the
      shipped weights, 1 with `params`.

  Returns:
    (n, 64) float32 features.
  """
  images = as_images(images)
  if params is None:
    params, meta = load_params()
    scale = meta.get("feature_scale", 1.0) if scale is None else scale
  features = _blocked_apply(params, images)[1]
  if isinstance(features, jax.core.Tracer):
    return features / (1.0 if scale is None else scale)
  return jnp.asarray(np.asarray(features)
                     / np.float32(1.0 if scale is None else scale))


def digits_logits(images, *, params=None) -> jax.Array:
  """(n, 10) class logits of the shipped network (see `digits_features`)."""
  images = as_images(images)
  params = load_params()[0] if params is None else params
  return _blocked_apply(params, images)[0]


def accuracy(params, images, labels) -> float:
  """Top-1 accuracy of `params` on labelled images."""
  logits = _blocked_apply(params, as_images(images))[0]
  return float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(labels)))
