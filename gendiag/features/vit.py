"""The ViT image towers of DINOv2 and CLIP in flax, built from a config.

One pre-norm Vision Transformer (Dosovitskiy et al. 2021) covers both
families the field now embeds images with:

  DINOv2 (Oquab et al. 2024; Darcet et al. 2024 for the registers), as the
    torch-hub model `facebookresearch/dinov2` runs it: 14 x 14 patches with
    a bias, CLS + position grid (37 x 37 for the released models),
    registers after CLS without position embeddings, blocks
    x += ls1 * attn(ln1 x), x += ls2 * mlp(ln2 x) with LayerScale vectors,
    exact (erf) GELU or SwiGLU (ViT-g), LayerNorm eps 1e-6. The feature is
    CLS after the final LayerNorm (dgm-eval's and torch-fidelity's).
  CLIP (Radford et al. 2021), as OpenAI's `clip/model.py` runs it: patches
    without bias, CLS + a fixed position table (never interpolated),
    `ln_pre`, the same blocks without LayerScale, QuickGELU x * sigmoid(1.702
    x), LayerNorm eps 1e-5, then `ln_post(CLS) @ proj` (bias-free). The
    feature is that projected embedding, NOT L2-normalised (`encode_image`;
    CMMD normalises it itself).

`forward(params, config, images)` takes (n, H, W, 3) float32 images already
preprocessed (resized, cropped, mean/std-normalised) and returns
  pooled     (n, hidden) the final-normed CLS: DINOv2's feature; for CLIP
             `ln_post(CLS)`, dgm-eval's CLIP feature (before the projection).
  projected  (n, projection_dim) `pooled @ proj`: CLIP's embedding (only
             when the config has a projection).
`feature_name(config)` names the family's feature. Every matmul runs at
`Precision.HIGHEST` (TF32/bf16 defaults move features by ~1e-3).

Position grids at another resolution (DINOv2 only) follow the hub model,
which transformers 5.x does not reproduce for the non-register models:
  "offset_bicubic"     hub, no registers: torch bicubic (Keys A = -0.75,
                       clamped taps, no antialias) with scale_factor
                       (g + 0.1) / grid, i.e. source (j + 0.5) * grid /
                       (g + 0.1) - 0.5; applied as a matrix (`bicubic_matrix`).
  "antialias_bicubic"  hub with registers (and transformers'
                       Dinov2WithRegistersModel): antialiased bicubic to
                       size g (`jax.image.resize(..., antialias=True)`).
  "size_bicubic"       transformers' Dinov2Model: bicubic A = -0.75 to size
                       g, no offset (to reproduce transformers, not the hub).
  "none"               CLIP: the image must have the stored grid.
"""

import dataclasses
import functools
import math

from flax import traverse_util
import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

HIGHEST = lax.Precision.HIGHEST
MLPS = ("gelu", "quick_gelu", "swiglu")
INTERPOLATIONS = ("offset_bicubic", "antialias_bicubic", "size_bicubic", "none")
FAMILIES = ("dinov2", "clip")
HUB_OFFSET = 0.1     # the hub's interpolate_offset (non-register models)
BICUBIC_A = -0.75    # torch's (and OpenCV's) cubic convolution coefficient


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """The shape and conventions of one ViT tower (hashable: a jit static).

  Attributes:
    family: "dinov2" or "clip" (the feature `forward` calls canonical).
    patch_size: P, patches are P x P.
    hidden: width D.
    depth: number of blocks.
    heads: attention heads (D / heads = 64 in every released model).
    mlp_hidden: the MLP's inner width (SwiGLU: each of its two halves).
    mlp: "gelu" (exact erf), "quick_gelu" (OpenAI CLIP) or "swiglu".
    layer_scale: DINOv2's per-channel LayerScale on both residual branches.
    registers: register tokens inserted after CLS (0 or 4 in DINOv2).
    ln_eps: LayerNorm epsilon (DINOv2 1e-6, CLIP 1e-5).
    pre_norm: CLIP's `ln_pre` after the embeddings.
    patch_bias: whether the patch projection has a bias (DINOv2 yes).
    projection_dim: CLIP's bias-free projection width, 0 for none.
    grid: the stored position grid is grid x grid (+1 CLS row).
    interpolation: the rule for other grids (module docstring).
  """
  family: str
  patch_size: int
  hidden: int
  depth: int
  heads: int
  mlp_hidden: int
  mlp: str = "gelu"
  layer_scale: bool = True
  registers: int = 0
  ln_eps: float = 1e-6
  pre_norm: bool = False
  patch_bias: bool = True
  projection_dim: int = 0
  grid: int = 37
  interpolation: str = "offset_bicubic"

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"ViTConfig.family must be one of {FAMILIES}; got "
                       f"{self.family!r}.")
    if self.mlp not in MLPS:
      raise ValueError(f"ViTConfig.mlp must be one of {MLPS}; got "
                       f"{self.mlp!r}.")
    if self.interpolation not in INTERPOLATIONS:
      raise ValueError(f"ViTConfig.interpolation must be one of "
                       f"{INTERPOLATIONS}; got {self.interpolation!r}.")
    for name in ("patch_size", "hidden", "depth", "heads", "mlp_hidden",
                 "grid"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"ViTConfig.{name} must be >= 1; got "
                         f"{getattr(self, name)}.")
    if self.hidden % self.heads:
      raise ValueError(f"ViTConfig.hidden ({self.hidden}) must be a multiple "
                       f"of heads ({self.heads}).")

  @property
  def image_size(self) -> int:
    """The side the position grid was trained at (grid * patch_size)."""
    return self.grid * self.patch_size


def _dinov2(hidden, depth, heads, mlp_hidden, mlp="gelu", registers=0):
  return ViTConfig("dinov2", 14, hidden, depth, heads, mlp_hidden, mlp,
                   registers=registers,
                   interpolation=("antialias_bicubic" if registers
                                  else "offset_bicubic"))


def _clip(patch, hidden, depth, embed, image):
  return ViTConfig("clip", patch, hidden, depth, hidden // 64, 4 * hidden,
                   "quick_gelu", layer_scale=False, ln_eps=1e-5,
                   pre_norm=True, patch_bias=False, projection_dim=embed,
                   grid=image // patch, interpolation="none")


# The released towers (hub names; CLIP as `clip.available_models()`).
PRESETS = {
    **{f"dinov2_vit{s}14{'_reg' if r else ''}": _dinov2(*shape, registers=r)
       for r in (0, 4)
       for s, shape in (("s", (384, 12, 6, 1536)), ("b", (768, 12, 12, 3072)),
                        ("l", (1024, 24, 16, 4096)),
                        ("g", (1536, 40, 24, 4096, "swiglu")))},
    "clip_vit_b32": _clip(32, 768, 12, 512, 224),
    "clip_vit_b16": _clip(16, 768, 12, 512, 224),
    "clip_vit_l14": _clip(14, 1024, 24, 768, 224),
    "clip_vit_l14_336": _clip(14, 1024, 24, 768, 336),
}


def preset_name(config: ViTConfig) -> str:
  """The released model a config is, ignoring the interpolation; or ''."""
  for name, preset in PRESETS.items():
    if dataclasses.replace(preset, interpolation=config.interpolation) == config:
      return name
  return ""


def feature_name(config: ViTConfig) -> str:
  """The family's feature: "projected" for CLIP with a projection, else
  "pooled" (DINOv2's CLS after the final LayerNorm)."""
  return "projected" if config.projection_dim else "pooled"


def bicubic_matrix(in_size: int, out_size: int, scale: float,
                   a: float = BICUBIC_A) -> np.ndarray:
  """(out_size, in_size) weights of torch's bicubic resize along one axis.

  torch `interpolate(mode="bicubic", align_corners=False, antialias=False)`:
  output j samples s = (j + 0.5) * scale - 0.5 (scale = in/out, or
  1/scale_factor when one is given) with the Keys cubic of coefficient a at
  taps floor(s) - 1 .. floor(s) + 2, indices clamped to [0, in_size - 1].
  """
  j = np.arange(out_size, dtype=np.float64)
  src = (j + 0.5) * scale - 0.5
  left = np.floor(src)
  t = src - left
  dist = np.stack([t + 1, t, 1 - t, 2 - t])           # |s - tap|, 4 taps
  near = ((a + 2) * dist - (a + 3)) * dist * dist + 1
  far = ((a * dist - 5 * a) * dist + 8 * a) * dist - 4 * a
  weights = np.where(dist <= 1, near, far)
  matrix = np.zeros((out_size, in_size))
  for k in range(4):
    taps = np.clip(left + k - 1, 0, in_size - 1).astype(int)
    np.add.at(matrix, (np.arange(out_size), taps), weights[k])
  return matrix


def resize_grid(grid: jax.Array, out_hw, rule: str) -> jax.Array:
  """Resizes a (M, M, D) position grid to (gh, gw, D) by `rule`."""
  m = grid.shape[0]
  gh, gw = out_hw
  if (gh, gw) == (m, m):
    return grid
  if rule == "none":
    raise ValueError(f"this tower's position table is fixed at {m}x{m} "
                     f"patches (CLIP never interpolates it); the image gives "
                     f"{gh}x{gw}: resize images to the model's resolution.")
  if rule == "antialias_bicubic":
    return jax.image.resize(grid, (gh, gw, grid.shape[-1]), "bicubic",
                            antialias=True, precision=HIGHEST)
  offset = HUB_OFFSET if rule == "offset_bicubic" else 0.0
  rows = bicubic_matrix(m, gh, m / (gh + offset)).astype(np.float32)
  cols = bicubic_matrix(m, gw, m / (gw + offset)).astype(np.float32)
  return jnp.einsum("ia,jb,abd->ijd", rows, cols, grid, precision=HIGHEST)


def _dense(features, name, use_bias=True):
  return nn.Dense(features, use_bias=use_bias, precision=HIGHEST, name=name)


def _layer_norm(config, name):
  return nn.LayerNorm(epsilon=config.ln_eps, use_fast_variance=False,
                      name=name)


class Attention(nn.Module):
  """Multi-head self-attention, fused qkv (columns [q | k | v], heads
  contiguous), softmax(q k^T / sqrt(d_head)) v, then the output Dense.

  Takes and returns tokens flattened to (n t, d). q, k and v are moved to
  heads-major (n, h, t, c) before the two batched matmuls: XLA:CPU runs
  them about twice as fast there as on the (n, t, h, c) layout.
  """
  heads: int
  tokens: int

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    n, t, h = x.shape[0] // self.tokens, self.tokens, self.heads
    qkv = _dense(3 * d, "qkv")(x).reshape(n, t, 3, h, d // h)
    q, k, v = qkv.transpose(2, 0, 3, 1, 4)
    logits = jnp.einsum("nhqc,nhkc->nhqk", q, k, precision=HIGHEST)
    weights = jax.nn.softmax(logits / math.sqrt(d // h), axis=-1)
    out = jnp.einsum("nhqk,nhkc->nhqc", weights, v, precision=HIGHEST)
    return _dense(d, "out")(out.transpose(0, 2, 1, 3).reshape(n * t, d))


class MLP(nn.Module):
  """fc1 -> GELU / QuickGELU -> fc2, or SwiGLU: w3(silu(x1) * x2) with
  [x1 | x2] = w12 x (the hub's `w12`, transformers' gate | up)."""
  config: ViTConfig

  @nn.compact
  def __call__(self, x):
    c = self.config
    if c.mlp == "swiglu":
      gate, up = jnp.split(_dense(2 * c.mlp_hidden, "w12")(x), 2, axis=-1)
      return _dense(c.hidden, "w3")(jax.nn.silu(gate) * up)
    h = _dense(c.mlp_hidden, "fc1")(x)
    h = (h * jax.nn.sigmoid(1.702 * h) if c.mlp == "quick_gelu"
         else jax.nn.gelu(h, approximate=False))
    return _dense(c.hidden, "fc2")(h)


class Block(nn.Module):
  """x += ls1 * attn(ln1 x); x += ls2 * mlp(ln2 x) (ls = 1 without
  LayerScale). A scan body: (x, None) -> (x, None), x the (n t, d) tokens
  (2-D: XLA:CPU's dense layers run faster than on (n, t, d))."""
  config: ViTConfig
  tokens: int

  @nn.compact
  def __call__(self, x, unused):
    del unused
    c = self.config
    ones = nn.initializers.ones
    h = Attention(c.heads, self.tokens, name="attn")(_layer_norm(c, "ln1")(x))
    if c.layer_scale:
      h = h * self.param("ls1", ones, (c.hidden,))
    x = x + h
    h = MLP(c, name="mlp")(_layer_norm(c, "ln2")(x))
    if c.layer_scale:
      h = h * self.param("ls2", ones, (c.hidden,))
    return x + h, None


class VisionTransformer(nn.Module):
  """Images (n, H, W, 3) -> {"pooled", ["projected"]} (module docstring)."""
  config: ViTConfig

  @nn.compact
  def __call__(self, images):
    c = self.config
    n, height, width, channels = images.shape
    p = c.patch_size
    gh, gw = height // p, width // p
    patches = images.reshape(n, gh, p, gw, p, channels)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(n, gh * gw, -1)
    x = _dense(c.hidden, "patch_embed", c.patch_bias)(patches)
    normal = nn.initializers.normal(0.02)
    cls = self.param("cls_token", normal, (c.hidden,))
    pos = self.param("pos_embed", normal, (1 + c.grid * c.grid, c.hidden))
    grid = resize_grid(pos[1:].reshape(c.grid, c.grid, c.hidden), (gh, gw),
                       c.interpolation)
    tokens = [jnp.broadcast_to(cls + pos[0], (n, 1, c.hidden))]
    if c.registers:
      registers = self.param("registers", normal, (c.registers, c.hidden))
      tokens.append(jnp.broadcast_to(registers, (n,) + registers.shape))
    x = jnp.concatenate(tokens + [x + grid.reshape(1, gh * gw, c.hidden)], 1)
    if c.pre_norm:
      x = _layer_norm(c, "ln_pre")(x)
    blocks = nn.scan(Block, variable_axes={"params": 0},
                     split_rngs={"params": True}, length=c.depth)
    t = x.shape[1]
    x, _ = blocks(c, t, name="blocks")(x.reshape(n * t, c.hidden), None)
    pooled = _layer_norm(c, "ln_final")(x.reshape(n, t, c.hidden)[:, 0])
    out = {"pooled": pooled}
    if c.projection_dim:
      proj = self.param("proj", nn.initializers.lecun_normal(),
                        (c.hidden, c.projection_dim))
      out["projected"] = jnp.dot(pooled, proj, precision=HIGHEST)
    return out


@functools.partial(jax.jit, static_argnames=("config",))
def _forward(params, images, config):
  return VisionTransformer(config).apply({"params": params}, images)


def forward(params, config: ViTConfig, images: jax.Array) -> dict:
  """The tower's outputs for (n, H, W, 3) preprocessed images (jitted).

  Args:
    params: the parameter tree (`vit_weights.load_vit` or `random_params`).
    config: the tower's `ViTConfig`.
    images: (n, H, W, 3) float32, H and W multiples of the patch size
      (DINOv2 interpolates its position grid to H/P x W/P; CLIP needs
      exactly `config.image_size`).

  Returns:
    {"pooled": (n, hidden)} plus "projected" (n, projection_dim) for CLIP;
    `feature_name(config)` is the family's feature.
  """
  images = jnp.asarray(images, jnp.float32)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be (n, H, W, 3) NHWC; got shape "
                     f"{images.shape}.")
  height, width = images.shape[1:3]
  p = config.patch_size
  if height % p or width % p or min(height, width) < p:
    raise ValueError(f"images of {height}x{width} are not a whole number of "
                     f"{p}x{p} patches: resize or crop them to a multiple of "
                     f"{p} ({config.image_size} is the model's own size).")
  if config.interpolation == "none" and (height, width) != (
      config.image_size, config.image_size):
    raise ValueError(f"images of {height}x{width}: this {config.family} tower "
                     f"takes exactly {config.image_size}x{config.image_size} "
                     "(its position table is fixed); resize them to that.")
  return _forward(params, images, config)


@functools.lru_cache(maxsize=16)
def parameter_shapes(config: ViTConfig) -> dict:
  """{path tuple: shape} of every parameter, without computing anything."""
  images = jax.ShapeDtypeStruct(
      (1, config.image_size, config.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(VisionTransformer(config).init, jax.random.key(0),
                          images)["params"]
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return {tuple(k.key for k in path): leaf.shape for path, leaf in flat}


def random_params(config: ViTConfig, seed: int = 0) -> dict:
  """Random parameters of the config's shapes (tests and shape checks).

  Every tensor is random, LayerNorm and LayerScale included (the defaults
  1 and 0 would hide a mapping bug): kernels N(0, 1 / fan_in), biases
  N(0, 0.1^2), LayerNorm scales U(0.5, 1.5), LayerScale U(0.1, 1),
  tokens and positions N(0, 0.5^2). Drawn by numpy (no compilation).
  """
  rng = np.random.default_rng(seed)
  flat = {}
  for path, shape in parameter_shapes(config).items():
    leaf = path[-1]
    if leaf in ("kernel", "proj"):
      fan_in = shape[-2]
      value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
    elif leaf == "scale":
      value = rng.uniform(0.5, 1.5, shape)
    elif leaf in ("ls1", "ls2"):
      value = rng.uniform(0.1, 1.0, shape)
    elif leaf == "bias":
      value = rng.normal(0.0, 0.1, shape)
    else:
      value = rng.normal(0.0, 0.5, shape)
    flat[path] = value.astype(np.float32)
  return traverse_util.unflatten_dict(flat)

