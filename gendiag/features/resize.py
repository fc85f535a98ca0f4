"""Each FID tool's resize and input scaling, by name, in JAX.

Every FID tool runs the same TF Inception graph (2015-12-05) but feeds it
differently, and the resize alone moves pool3 by 15-18 % (relative L2) on a
photo, so a number is comparable with a paper only under the paper's own
front-end. `PREPROCESSING` names each one:

  adm             OpenAI's ADM evaluator (guided-diffusion `evaluations/`,
                  Dhariwal & Nichol 2021: the ImageNet FID/sFID/IS of most
                  diffusion papers) and the TF graph itself (TTUR, Heusel et
                  al. 2017): TF1 legacy `ResizeBilinear` of the float 0..255
                  image, then (x - 128) / 128 inside the graph.
  torch_fidelity  torch-fidelity's `inception-v3-compat` (and torchmetrics
                  with `antialias=False`): the same TF1 bilinear of the float
                  image and the same (x - 128) / 128 -- the same arithmetic
                  as `adm`, so the two give the same numbers.
  pytorch_fid     pytorch-fid (Seitzer; the FID of many GAN papers): torch
                  `F.interpolate(bilinear, align_corners=False)` of x / 255,
                  then 2x - 1. Both steps are linear, so it is computed as
                  the same resize of x, then 2x / 255 - 1.
  clean_fid       clean-fid's `clean` mode (Parmar et al. 2022): Pillow's
                  BICUBIC on each channel as a float32 'F' image (antialiased
                  when downsampling, no re-quantisation to uint8), clipped to
                  [0, 255], then (x - 128) / 128.
  torchmetrics    torchmetrics >= 1.8 `FrechetInceptionDistance` (its default
                  `antialias=True`): torch `F.interpolate(bilinear,
                  antialias=True)` of the float image, then (x - 128) / 128.

Every resize here is separable and linear: for each axis an (out, in)
interpolation matrix is built in numpy float64 from the peer's own index and
weight rule (`interpolation_matrix`; where the peer computes its source
coordinates in float32, so does the matrix, which then equals the peer's own
weights to 1e-7) and applied width first, then height, as Pillow and torch
do, in float32. Each row has a few non-zeros (2 for bilinear), so the product
is taken as a sum over each row's taps rather than a dense matmul: the same
terms, 3-20x faster on a CPU. Results equal each peer's to about 1e-4 on the
0..255 scale (tests/test_features_resize.py), and run under `jit` on any
device. A same-size resize is the identity in every mode, as in every peer.
"""

import dataclasses
import functools
from typing import Callable, Dict, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

INCEPTION_SIZE = (299, 299)


def _tf1_bilinear(in_size: int, out_size: int) -> np.ndarray:
  """TF1 legacy ResizeBilinear (align_corners=False, half_pixel_centers=False).

  Output index j reads the source coordinate s = j * in / out: weight
  1 - (s - lo) on lo = floor(s) and s - lo on hi = min(lo + 1, in - 1). No
  antialiasing (downsampling aliases, as in the TF graph). s is computed as
  TF's kernel does, in float32: scale = float32(in) / out, s = j * scale.
  """
  matrix = np.zeros((out_size, in_size))
  scale = np.float32(in_size) / np.float32(out_size)
  for j in range(out_size):
    s = np.float32(j) * scale
    lo = min(int(np.floor(s)), in_size - 1)
    hi = min(lo + 1, in_size - 1)
    frac = float(s - np.float32(lo))
    matrix[j, lo] += 1.0 - frac
    matrix[j, hi] += frac
  return matrix


def _torch_bilinear(in_size: int, out_size: int) -> np.ndarray:
  """torch `F.interpolate(mode="bilinear", align_corners=False)`, no antialias.

  torch's source index for output j is s = (j + 0.5) * in / out - 0.5,
  clamped below at 0; lo = floor(s), hi = lo + 1 unless lo is the last
  pixel (then hi = lo), weight s - lo on hi. s is computed as torch's CPU
  kernel does for float32 images: scale = float32(in) / out, then
  scale * (j + 0.5) - 0.5 rounded once to float32 (the compiler fuses it
  into one multiply-add; this reproduces torch 2.13's CPU weights exactly).
  """
  matrix = np.zeros((out_size, in_size))
  scale = float(np.float32(in_size) / np.float32(out_size))
  for j in range(out_size):
    s = max(np.float32(scale * (j + 0.5) - 0.5), np.float32(0.0))
    lo = min(int(s), in_size - 1)
    hi = lo + 1 if lo < in_size - 1 else lo
    frac = min(max(float(s - np.float32(lo)), 0.0), 1.0)
    matrix[j, lo] += 1.0 - frac
    matrix[j, hi] += frac
  return matrix


def _triangle(x: np.ndarray) -> np.ndarray:
  x = np.abs(x)
  return np.where(x < 1.0, 1.0 - x, 0.0).astype(x.dtype)


def _keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
  """Keys' cubic convolution kernel (support 2); Pillow's BICUBIC uses a=-0.5."""
  x = np.abs(x)
  near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
  far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
  return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0)).astype(x.dtype)


def _filtered(in_size: int, out_size: int, kernel: Callable, support: float,
              dtype: type) -> np.ndarray:
  """The antialiased resampling rule shared by Pillow and torch's antialias.

  With scale = in / out and f = max(scale, 1) (the kernel is stretched only
  when downsampling), output j is centred at c = (j + 0.5) * scale and reads
  the pixels i in [trunc(c - f support + 0.5), trunc(c + f support + 0.5))
  clipped to [0, in), each with weight kernel((i - c + 0.5) / f), the
  weights normalised to sum to 1 (Pillow `precompute_coeffs`, in float64;
  torch `_compute_weights_aa`, in float32 for float32 images: `dtype`).
  """
  matrix = np.zeros((out_size, in_size))
  scale = dtype(in_size) / dtype(out_size)
  stretch = max(scale, dtype(1.0))
  reach = dtype(support) * stretch
  inverse = dtype(1.0) / stretch
  for j in range(out_size):
    centre = dtype(scale * dtype(j + 0.5))
    first = max(int(centre - reach + 0.5), 0)
    stop = min(int(centre + reach + 0.5), in_size)
    offsets = (np.arange(first, stop).astype(dtype) - centre) + dtype(0.5)
    weights = kernel(offsets * inverse)
    total = weights.sum()
    matrix[j, first:stop] = weights / total if total != 0.0 else weights
  return matrix


_MODES: Dict[str, Callable[[int, int], np.ndarray]] = {
    "tf1_bilinear": _tf1_bilinear,
    "torch_bilinear": _torch_bilinear,
    "torch_bilinear_antialias": functools.partial(
        _filtered, kernel=_triangle, support=1.0, dtype=np.float32),
    "pil_bicubic": functools.partial(_filtered, kernel=_keys_cubic,
                                     support=2.0, dtype=np.float64),
}
RESIZE_MODES: Tuple[str, ...] = tuple(_MODES)


def _check_mode(mode: str) -> None:
  if mode not in _MODES:
    raise ValueError(f"unknown resize mode {mode!r}; `mode` must be one of "
                     f"{list(RESIZE_MODES)}.")


@functools.lru_cache(maxsize=64)
def _cached_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
  matrix = _MODES[mode](in_size, out_size)
  matrix.setflags(write=False)
  return matrix


def interpolation_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
  """The (out_size, in_size) float64 matrix of one axis of a peer's resize.

  Row j holds the weights that output pixel j gives the input pixels along
  that axis; every row sums to 1. The 2-D resize of an image X (H, W) is
  A_h @ X @ A_w^T.

  Args:
    in_size: the input length along the axis (>= 1).
    out_size: the output length (>= 1).
    mode: one of `RESIZE_MODES`: "tf1_bilinear" (TF1 legacy ResizeBilinear:
      the TF graph, ADM, torch-fidelity), "torch_bilinear" (torch
      F.interpolate bilinear, align_corners=False: pytorch-fid),
      "torch_bilinear_antialias" (the same with antialias=True:
      torchmetrics >= 1.8) or "pil_bicubic" (Pillow BICUBIC, Keys a=-0.5,
      antialiased when downsampling: clean-fid).

  Returns:
    A read-only (out_size, in_size) float64 array (cached).
  """
  _check_mode(mode)
  for name, value in (("in_size", in_size), ("out_size", out_size)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
  return _cached_matrix(int(in_size), int(out_size), mode)


def _size_pair(size) -> Tuple[int, int]:
  if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
    size = (size, size)
  if (not isinstance(size, Sequence) or len(size) != 2
      or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                 and s >= 1 for s in size)):
    raise ValueError(f"`size` must be (height, width) positive integers or "
                     f"one integer; got {size!r}.")
  return int(size[0]), int(size[1])


def matrix_taps(matrix: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """A resize matrix as taps: (index, weight), each (k, out), k the widest row's support.

  Output j = sum_t weight[t, j] * input[index[t, j]]: row j of the matrix restricted to the
  columns from its first to its last non-zero (shifted inside [0, in) and padded with exact
  zeros to k taps). The same terms as the dense product without its zeros.
  """
  in_size = matrix.shape[1]
  nonzero = matrix != 0.0
  first = nonzero.argmax(axis=1)
  last = in_size - 1 - nonzero[:, ::-1].argmax(axis=1)
  k = int((last - first).max()) + 1
  index = np.minimum(first, in_size - k)[None, :] + np.arange(k)[:, None]
  weight = np.take_along_axis(matrix, index.T, axis=1).T
  return index, weight


@functools.lru_cache(maxsize=64)
def _taps(in_size: int, out_size: int, mode: str) -> Tuple[np.ndarray, np.ndarray]:
  return matrix_taps(_cached_matrix(in_size, out_size, mode))


def apply_taps(images: jax.Array, taps: Tuple[np.ndarray, np.ndarray], axis: int) -> jax.Array:
  """out = A @ x along `axis` for A given as `matrix_taps(A)`, in float32 (no matmul)."""
  index, weight = taps
  shape = [1] * images.ndim
  shape[axis] = index.shape[1]
  out = None
  for t in range(index.shape[0]):
    term = (jnp.take(images, jnp.asarray(index[t]), axis=axis)
            * jnp.asarray(weight[t], jnp.float32).reshape(shape))
    out = term if out is None else out + term
  return out


def _apply(in_size: int, out_size: int, mode: str, images: jax.Array, axis: int) -> jax.Array:
  """The resize of one axis of the images: out = A @ x along `axis`, in float32.

  Applied as a sum over the k taps of each row (`_taps`: 2 for bilinear, about 2 * support *
  in / out for the antialiased modes), a gather-multiply-add that XLA fuses, exact like the
  dense product (the same float32 terms without the zeros). On a 2-core CPU, 427 x 640 -> 299
  took 3-4 ms per image for bilinear and 20-30 ms for bicubic (XLA fuses the two passes and so
  recomputes the width taps per height tap), against 70 ms for the dense einsum (0.7 GFLOP).
  """
  matrix = _cached_matrix(in_size, out_size, mode)
  if in_size == out_size and np.array_equal(matrix, np.eye(in_size)):
    return images  # a same-size resize is the identity in every peer
  return apply_taps(images, _taps(in_size, out_size, mode), axis)


def check_images(images, name: str = "images") -> jax.Array:
  """(n, H, W, C) uint8 or float images on the 0..255 scale, as float32; else ValueError."""
  if images.ndim != 4:
    raise ValueError(f"`{name}` must be (n, H, W, C) images; got shape "
                     f"{tuple(images.shape)} (a single image needs a leading "
                     "batch axis: x[None]).")
  dtype = np.dtype(images.dtype)
  if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
    raise ValueError(f"`{name}` must be uint8 or float on the 0..255 scale; "
                     f"got dtype {dtype} (gendiag.features.images.open_images "
                     "converts other inputs).")
  return jnp.asarray(images).astype(jnp.float32)


def resize(images, size, *, mode: str) -> jax.Array:
  """Resizes a batch with one peer's resize: (n, H, W, C) -> (n, h, w, C).

  out[n, :, :, c] = A_h @ images[n, :, :, c] @ A_w^T with the matrices of
  `interpolation_matrix` (width first, then height), in float32 (as sums
  over each row's non-zero taps; no reduced-precision matmul). No clipping and no rounding: bicubic can overshoot
  [0, 255] (clean-fid clips afterwards; see `preprocess`). Traceable under
  `jit` (the shapes, `size` and `mode` are static).

  Args:
    images: (n, H, W, C) uint8 or float images.
    size: (h, w) output size, or one integer for a square.
    mode: one of `RESIZE_MODES`.

  Returns:
    (n, h, w, C) float32.
  """
  _check_mode(mode)
  h, w = _size_pair(size)
  x = check_images(images)
  x = _apply(x.shape[2], w, mode, x, axis=2)
  return _apply(x.shape[1], h, mode, x, axis=1)


SCALINGS: Dict[str, Callable[[jax.Array], jax.Array]] = {
    # The TF graph's Sub 128, Mul 1/128 (exact: 1/128 is a power of two).
    "(x-128)/128": lambda x: (x - 128.0) / 128.0,
    # pytorch-fid's 2 (x / 255) - 1.
    "2x/255-1": lambda x: x * (2.0 / 255.0) - 1.0,
}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """One peer's image front-end: resize to the network's size, then scale.

  Attributes:
    name: the key in `PREPROCESSING`.
    resize: a mode of `RESIZE_MODES`.
    scaling: a key of `SCALINGS`, applied after the resize.
    clip: clip to [0, 255] after the resize, before the scaling (clean-fid).
    description: what the peer does, in one line.
    peers: the tools (and papers' numbers) that use this front-end.
  """
  name: str
  resize: str
  scaling: str
  clip: bool
  description: str
  peers: Tuple[str, ...]

  def __post_init__(self):
    _check_mode(self.resize)
    if self.scaling not in SCALINGS:
      raise ValueError(f"unknown scaling {self.scaling!r}; `scaling` must be "
                       f"one of {list(SCALINGS)}.")


PREPROCESSING: Dict[str, Preprocessing] = {p.name: p for p in (
    Preprocessing(
        "adm", "tf1_bilinear", "(x-128)/128", False,
        "TF1 legacy bilinear of float 0..255, then (x-128)/128 (the TF "
        "graph's own ResizeBilinear, Sub and Mul); the same arithmetic as "
        "torch_fidelity",
        ("OpenAI ADM evaluator (guided-diffusion)", "TF graph / TTUR")),
    Preprocessing(
        "torch_fidelity", "tf1_bilinear", "(x-128)/128", False,
        "TF1 legacy bilinear of float 0..255 (torch-fidelity's "
        "interpolate_bilinear_2d_like_tensorflow1x), then (x-128)/128",
        ("torch-fidelity inception-v3-compat",
         "torchmetrics with antialias=False")),
    Preprocessing(
        "pytorch_fid", "torch_bilinear", "2x/255-1", False,
        "torch F.interpolate bilinear (align_corners=False, no antialias) "
        "of x/255, then 2x-1",
        ("pytorch-fid",)),
    Preprocessing(
        "clean_fid", "pil_bicubic", "(x-128)/128", True,
        "Pillow BICUBIC per channel on a float32 'F' image, clip to "
        "[0, 255], then (x-128)/128",
        ("clean-fid (mode 'clean')",)),
    Preprocessing(
        "torchmetrics", "torch_bilinear_antialias", "(x-128)/128", False,
        "torch F.interpolate bilinear with antialias=True of float 0..255, "
        "then (x-128)/128",
        ("torchmetrics >= 1.8 FrechetInceptionDistance (default)",)),
)}


def get_preprocessing(preprocessing: Union[str, Preprocessing]) -> Preprocessing:
  """A `Preprocessing` by name (a key of `PREPROCESSING`) or itself."""
  if isinstance(preprocessing, Preprocessing):
    return preprocessing
  if preprocessing not in PREPROCESSING:
    raise ValueError(f"unknown preprocessing {preprocessing!r}; "
                     f"`preprocessing` must be one of {sorted(PREPROCESSING)} "
                     "or a gendiag.features.resize.Preprocessing.")
  return PREPROCESSING[preprocessing]


def preprocess(images, preprocessing: Union[str, Preprocessing], *,
               size=INCEPTION_SIZE) -> jax.Array:
  """Turns images into the network's input with one peer's front-end.

  x -> scaling(clip?(resize(x))): e.g. for "adm", (TF1-bilinear(x) - 128) /
  128, in [-1, 0.9921875] for images in [0, 255].

  Traceable under `jit` with `preprocessing` and `size` static:
  `jax.jit(preprocess, static_argnames=("preprocessing", "size"))`.

  Args:
    images: (n, H, W, 3) uint8, or float on the 0..255 scale (map other
      ranges with `gendiag.features.images.open_images(..., value_range=)`).
    preprocessing: a name in `PREPROCESSING` or a `Preprocessing`.
    size: the network's (height, width); 299 x 299 for FID-Inception.

  Returns:
    (n, size[0], size[1], 3) float32.
  """
  spec = get_preprocessing(preprocessing)
  if getattr(images, "ndim", None) == 4 and images.shape[-1] != 3:
    raise ValueError(f"`images` must be (n, H, W, 3) RGB; got shape "
                     f"{tuple(images.shape)} (open_images converts NCHW, "
                     "grayscale and 1-channel inputs).")
  x = resize(jnp.asarray(images), size, mode=spec.resize)
  if spec.clip:
    x = jnp.clip(x, 0.0, 255.0)
  return SCALINGS[spec.scaling](x)


__all__ = ("INCEPTION_SIZE", "PREPROCESSING", "Preprocessing", "RESIZE_MODES",
           "SCALINGS", "apply_taps", "check_images", "get_preprocessing",
           "interpolation_matrix", "matrix_taps", "preprocess", "resize")
