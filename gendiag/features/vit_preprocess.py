"""Each ViT peer's image front-end (resize, crop, mean/std), by name, in JAX.

A DINOv2 or CLIP number is comparable with a paper's only under the paper's
own front-end. `VIT_PREPROCESSING` names each one:

  dgm_eval_dinov2        dgm-eval (Stein et al. 2023, FD_DINOv2; the
                         DINOv2 ranking of generative models): torchvision
                         `Resize((224, 224), BICUBIC)` of the PIL image
                         (Pillow's antialiased bicubic on uint8, aspect
                         ratio NOT kept, no crop), `ToTensor`, ImageNet
                         mean/std.
  torch_fidelity_dinov2  torch-fidelity `dinov2-vit-*-14`: TF1 legacy
                         bilinear of the float uint8 image to 224 x 224
                         (no antialias, no crop), then (x - 255 mean) /
                         (255 std) with ImageNet mean/std.
  openai_clip            OpenAI CLIP's `_transform(n_px)` (clean-fid's
                         CLIP-FID uses it): torchvision `Resize(n_px,
                         BICUBIC)` (shortest side to n_px, the long side
                         int(n_px * long / short)), `CenterCrop(n_px)`
                         (offset int(round((size - n_px) / 2))), /255,
                         CLIP mean/std.
  cmmd                   google-research/cmmd (Jayasumana et al. 2024):
                         PIL crop to the centred largest square (offset
                         (size - side) // 2), PIL bicubic to the model's
                         336 x 336, /255, `jax.image.resize` to 336 (a
                         no-op), CLIP mean/std.

Pillow resizes a uint8 image in two passes (width, then height), rounding
each to uint8 (floor(x + 0.5), clipped to [0, 255]); the "quantize" peers
reproduce that rounding after each pass. A float input (0..255 scale) is
rounded after each pass too, but not before the first, so it reproduces
a peer only when its values are integers; the peers convert to uint8
first, so round float images to uint8 yourself to match them. Each resize
is the separable
matrix of `gendiag.features.resize.interpolation_matrix` with the crop
folded in (a crop after a resize keeps rows of the matrix; a crop before
one pads its columns), applied as sums over taps in float32 (no matmul).
Results equal each peer's pipeline to 1/255 on the 0..1 scale
(tests/test_features_vit_preprocess.py: transformers' image processors and
Pillow transcriptions of the peers' code, on real photos).
"""

import dataclasses
import functools
from typing import Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from gendiag.features import resize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
GEOMETRIES = ("squash", "short_side_crop", "square_crop")
DINOV2_SIZE = 224


@dataclasses.dataclass(frozen=True)
class ViTPreprocessing:
  """One peer's ViT front-end: geometry, resize, rounding, mean/std.

  Attributes:
    name: the key in `VIT_PREPROCESSING`.
    family: the towers it is for, "dinov2" or "clip".
    geometry: "squash" (resize to size x size, aspect ratio not kept),
      "short_side_crop" (shortest side to size, then a centred size x size
      crop: torchvision's Resize(int) + CenterCrop) or "square_crop" (a
      centred crop to the largest square, then resize: CMMD).
    resize: a mode of `resize.RESIZE_MODES`.
    quantize: round to uint8 after each resize pass (Pillow on uint8).
    size: the output side; 0 for the tower's own `image_size` (CLIP).
    mean, std: per-channel, applied to x / 255.
    description: what the peer does, in one line.
    peers: the tools (and papers' numbers) that use this front-end.
  """
  name: str
  family: str
  geometry: str
  resize: str
  quantize: bool
  size: int
  mean: Tuple[float, float, float]
  std: Tuple[float, float, float]
  description: str
  peers: Tuple[str, ...]

  def __post_init__(self):
    if self.geometry not in GEOMETRIES:
      raise ValueError(f"ViTPreprocessing.geometry must be one of "
                       f"{GEOMETRIES}; got {self.geometry!r}.")
    if self.resize not in resize.RESIZE_MODES:
      raise ValueError(f"ViTPreprocessing.resize must be one of "
                       f"{resize.RESIZE_MODES}; got {self.resize!r}.")


VIT_PREPROCESSING = {p.name: p for p in (
    ViTPreprocessing(
        "dgm_eval_dinov2", "dinov2", "squash", "pil_bicubic", True,
        DINOV2_SIZE, IMAGENET_MEAN, IMAGENET_STD,
        "Pillow BICUBIC of the uint8 image to 224 x 224 (aspect ratio not "
        "kept), /255, ImageNet mean/std",
        ("dgm-eval (Stein et al. 2023: FD_DINOv2)",)),
    ViTPreprocessing(
        "torch_fidelity_dinov2", "dinov2", "squash", "tf1_bilinear", False,
        DINOV2_SIZE, IMAGENET_MEAN, IMAGENET_STD,
        "TF1 legacy bilinear of the float image to 224 x 224, then "
        "(x - 255 mean) / (255 std), ImageNet mean/std",
        ("torch-fidelity dinov2-vit-{s,b,l,g}-14",)),
    ViTPreprocessing(
        "openai_clip", "clip", "short_side_crop", "pil_bicubic", True, 0,
        CLIP_MEAN, CLIP_STD,
        "Pillow BICUBIC of the shortest side to the model's size, centre "
        "crop (torchvision's rounding), /255, CLIP mean/std",
        ("OpenAI CLIP `preprocess`", "clean-fid CLIP-FID")),
    ViTPreprocessing(
        "cmmd", "clip", "square_crop", "pil_bicubic", True, 0,
        CLIP_MEAN, CLIP_STD,
        "centred largest-square crop, Pillow BICUBIC to the model's size "
        "(336 for ViT-L/14@336px), /255, CLIP mean/std",
        ("google-research/cmmd (Jayasumana et al. 2024: CMMD)",)),
)}


def get_vit_preprocessing(preprocessing: Union[str, ViTPreprocessing],
                          family: Optional[str] = None) -> ViTPreprocessing:
  """A `ViTPreprocessing` by name or itself; with `family`, checked to be
  one of that family's."""
  if not isinstance(preprocessing, ViTPreprocessing):
    if preprocessing not in VIT_PREPROCESSING:
      raise ValueError(f"unknown ViT preprocessing {preprocessing!r}; "
                       f"`preprocessing` must be one of "
                       f"{sorted(VIT_PREPROCESSING)}.")
    preprocessing = VIT_PREPROCESSING[preprocessing]
  if family is not None and preprocessing.family != family:
    choices = sorted(k for k, v in VIT_PREPROCESSING.items()
                     if v.family == family)
    raise ValueError(f"preprocessing {preprocessing.name!r} is for "
                     f"{preprocessing.family} towers, not {family}; choose "
                     f"one of {choices}.")
  return preprocessing


def _crop_after(matrix: np.ndarray, out: int) -> np.ndarray:
  """Rows of a resize matrix kept by torchvision's CenterCrop(out)."""
  top = int(round((matrix.shape[0] - out) / 2.0))
  return matrix[top:top + out]


def _crop_before(in_size: int, side: int, out: int, mode: str) -> np.ndarray:
  """(out, in_size): a centred crop to `side` ((in - side) // 2), resized."""
  matrix = np.zeros((out, in_size))
  first = (in_size - side) // 2
  matrix[:, first:first + side] = resize.interpolation_matrix(side, out, mode)
  return matrix


def axis_matrices(height: int, width: int, spec: ViTPreprocessing,
                  size: int) -> Tuple[np.ndarray, np.ndarray]:
  """The (size, height) and (size, width) matrices of the whole geometry.

  out[:, :, c] = A_h @ image[:, :, c] @ A_w^T (with the rounding of
  `quantize` after each pass); each row sums to 1.
  """
  mode = spec.resize
  if spec.geometry == "squash":
    return (resize.interpolation_matrix(height, size, mode),
            resize.interpolation_matrix(width, size, mode))
  if spec.geometry == "square_crop":
    side = min(height, width)
    return (_crop_before(height, side, size, mode),
            _crop_before(width, side, size, mode))
  short, long = sorted((height, width))
  new_long = int(size * long / short)
  new_h, new_w = (size, new_long) if height <= width else (new_long, size)
  return (_crop_after(resize.interpolation_matrix(height, new_h, mode), size),
          _crop_after(resize.interpolation_matrix(width, new_w, mode), size))


@functools.lru_cache(maxsize=32)
def _taps(height: int, width: int, spec: ViTPreprocessing, size: int):
  rows, cols = axis_matrices(height, width, spec, size)
  identity = [m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(len(m)))
              for m in (rows, cols)]
  return tuple(None if same else resize.matrix_taps(m)
               for same, m in zip(identity, (rows, cols)))


def _quantize(x: jax.Array) -> jax.Array:
  """Pillow's 8-bit rounding: clip(floor(x + 0.5), 0, 255)."""
  return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)


def output_size(spec: ViTPreprocessing, image_size: int) -> int:
  """The side the front-end produces for a tower of `image_size`."""
  return spec.size or int(image_size)


def preprocess_vit(images, preprocessing: Union[str, ViTPreprocessing], *,
                   size: int) -> jax.Array:
  """Turns images into a ViT's input with one peer's front-end.

  x -> ((geometry(x) / 255) - mean) / std, where geometry is the peer's
  resize and crop (with Pillow's uint8 rounding after each pass where the
  peer resizes uint8 images with Pillow).

  Traceable under `jit` with `preprocessing` and `size` static.

  Args:
    images: (n, H, W, 3) uint8, or float on the 0..255 scale.
    preprocessing: a name in `VIT_PREPROCESSING` or a `ViTPreprocessing`.
    size: the output side (`output_size(spec, config.image_size)`).

  Returns:
    (n, size, size, 3) float32.
  """
  spec = get_vit_preprocessing(preprocessing)
  x = resize.check_images(images)
  if x.shape[-1] != 3:
    raise ValueError(f"`images` must be (n, H, W, 3) RGB; got shape "
                     f"{tuple(x.shape)} (open_images converts grayscale).")
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or (
      size < 1):
    raise ValueError(f"`size` must be a positive integer; got {size!r}.")
  rows, cols = _taps(x.shape[1], x.shape[2], spec, int(size))
  for taps, axis in ((cols, 2), (rows, 1)):   # width first, as Pillow
    if taps is not None:
      x = resize.apply_taps(x, taps, axis)
      if spec.quantize:
        x = _quantize(x)
  mean = jnp.asarray(spec.mean, jnp.float32)
  std = jnp.asarray(spec.std, jnp.float32)
  return (x / 255.0 - mean) / std


__all__ = ("CLIP_MEAN", "CLIP_STD", "GEOMETRIES", "IMAGENET_MEAN",
           "IMAGENET_STD", "VIT_PREPROCESSING", "ViTPreprocessing",
           "axis_matrices", "get_vit_preprocessing", "output_size",
           "preprocess_vit")
