"""The 8x8 digits that ship with scikit-learn, as float images, and helpers.

  load             1,797 images (n, 8, 8) float32 in [0, 1] (pixel / 16) and
                   int32 labels 0-9 (UCI optical digits, Alpaydin & Kaynak).
  split            a seeded stratified split of indices into named parts.
  train_test       THE fixed split the shipped feature network was trained on
                   (70% train / 30% test, stratified by class, seed 0).
  blur             image-space Gaussian blur (scipy.ndimage's 'nearest' mode).
  simulate_models  simulated "generators" in image space, one per failure.
  image_grid, named_grids   matplotlib Figures of images (never pyplot).

Nothing is downloaded: the data are inside the scikit-learn wheel.
"""

import dataclasses
import functools
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8)
TRAIN_TEST_FRACTIONS = {"train": 0.7, "test": 0.3}
TRAIN_TEST_SEED = 0


@dataclasses.dataclass(frozen=True)
class Digits:
  """Images (n, 8, 8) float32 in [0, 1] and labels (n,) int32 in 0..9."""
  images: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, idx) -> "Digits":
    return Digits(self.images[idx], self.labels[idx])


@functools.lru_cache(maxsize=1)
def _load_cached() -> Tuple[np.ndarray, np.ndarray]:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  raw = datasets.load_digits()
  images = np.float32(raw.images / 16.0)
  labels = raw.target.astype(np.int32)
  images.flags.writeable = False
  labels.flags.writeable = False
  return images, labels


def _rng(key: jax.Array, *salt: int) -> np.random.Generator:
  """A numpy Generator seeded by a jax.random key (and optional salt).

  Host-side index shuffles use numpy (no per-size jit compiles), but their
  randomness still comes only from the caller's explicit key.
  """
  seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
  return np.random.default_rng(seed + [int(s) for s in salt])


def load() -> Digits:
  """All 1,797 digits: images (1797, 8, 8) float32 in [0, 1], labels int32.

  The arrays are read-only (they are cached); copy them to modify.
  """
  return Digits(*_load_cached())


def split(strata, fractions: Mapping[str, float], *,
          key: jax.Array) -> Dict[str, np.ndarray]:
  """A stratified split of indices 0..n-1 into named parts.

  Within each stratum (e.g. each class) the indices are permuted by a key
  folded with the stratum's value, and cut at round(cumsum(fractions) * n_s),
  so every part holds the same share of every stratum (up to rounding) and
  the split depends only on `key`, `strata` and `fractions`. The shuffles run
  in numpy, seeded from the key's data.

  Args:
    strata: (n,) integer array; rows with equal values are split together.
    fractions: part name -> share, each > 0, summing to 1.
    key: jax.random key.

  Returns:
    part name -> sorted int64 indices; the parts partition range(n).
  """
  strata = np.asarray(strata)
  if strata.ndim != 1 or not np.issubdtype(strata.dtype, np.integer):
    raise ValueError(f"`strata` must be a 1-D integer array; got shape "
                     f"{strata.shape} and dtype {strata.dtype}.")
  shares = np.asarray(list(fractions.values()), np.float64)
  if not len(shares) or np.any(shares <= 0) or abs(shares.sum() - 1) > 1e-6:
    raise ValueError(f"`fractions` must be positive and sum to 1; got "
                     f"{dict(fractions)}.")
  parts = {name: [] for name in fractions}
  bounds = np.concatenate([[0.0], np.cumsum(shares)])
  for value in np.unique(strata):
    members = np.flatnonzero(strata == value)
    order = _rng(key, int(value)).permutation(len(members))
    cuts = np.round(bounds * len(members)).astype(int)
    for name, lo, hi in zip(fractions, cuts[:-1], cuts[1:]):
      parts[name].append(members[order[lo:hi]])
  return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


@functools.lru_cache(maxsize=1)
def _train_test_cached():
  out = split(load().labels, TRAIN_TEST_FRACTIONS,
              key=jax.random.key(TRAIN_TEST_SEED))
  for v in out.values():
    v.flags.writeable = False
  return out["train"], out["test"]


def train_test() -> Tuple[np.ndarray, np.ndarray]:
  """The fixed split of the shipped feature network: (train_idx, test_idx).

  70% / 30% of each class (1,258 / 539 images), `split` with seed 0. The
  feature network never saw the test indices.
  """
  return _train_test_cached()


def split_like_feature_net(fractions: Mapping[str, float], *,
                           key: jax.Array) -> Dict[str, np.ndarray]:
  """`split` of all digits stratified by class and by `train_test()` side.

  Strata 2 * label + [index in the feature network's test split], so each
  part holds the same share of every class and of the digits the network
  was trained on (and never saw). Returns what `split` returns.
  """
  strata = 2 * load().labels.astype(np.int64)
  strata[train_test()[1]] += 1
  return split(strata, fractions, key=key)


def gaussian_kernel_1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
  """Normalised 1-D Gaussian taps of radius int(truncate * sigma + 0.5)."""
  radius = int(truncate * sigma + 0.5)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  w = np.exp(-0.5 * (x / sigma) ** 2)
  return np.float32(w / w.sum())


@functools.partial(jax.jit, static_argnames=("sigma", "truncate"))
def blur(images: jax.Array, *, sigma: float, truncate: float = 4.0):
  """Separable Gaussian blur of the last two axes.

  out = G_sigma * x along rows then columns, with the border extended by its
  edge value (scipy.ndimage.gaussian_filter(x, sigma, mode='nearest',
  truncate=truncate) on the image axes). Mass-preserving away from borders;
  differentiable in the images.

  Args:
    images: (..., H, W) array.
    sigma: standard deviation in pixels (static), > 0.
    truncate: radius of the taps in standard deviations (static).

  Returns:
    The blurred images, same shape and dtype.
  """
  if sigma <= 0:
    raise ValueError(f"`sigma` must be > 0; got {sigma}.")
  if np.ndim(images) < 2:
    raise ValueError(f"`images` must have shape (..., H, W); got "
                     f"{np.shape(images)}.")
  taps = jnp.asarray(gaussian_kernel_1d(sigma, truncate))
  radius = (taps.shape[0] - 1) // 2

  def along(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    xp = jnp.pad(x, pad, mode="edge")
    size = x.shape[axis]
    return sum(taps[i] * jax.lax.slice_in_dim(xp, i, i + size, axis=axis)
               for i in range(taps.shape[0]))

  return along(along(images, images.ndim - 1), images.ndim - 2)


@dataclasses.dataclass(frozen=True)
class DigitModel:
  """A simulated generator's images, labels and its known failure."""
  name: str
  images: np.ndarray
  labels: np.ndarray
  failure: str


def _class_counts(weights: np.ndarray, n: int) -> np.ndarray:
  """n split over classes in proportion to weights (largest remainder)."""
  share = n * weights / weights.sum()
  counts = np.floor(share).astype(int)
  order = np.argsort(-(share - counts), kind="stable")
  counts[order[:n - counts.sum()]] += 1
  return counts


def _draw(key, labels, candidates, class_weights, n) -> np.ndarray:
  """n indices of `candidates` with class shares ∝ class_weights.

  Within a class, rows are drawn without replacement and only rows beyond
  the class's supply repeat (cycling through a fresh permutation).
  """
  counts = _class_counts(np.asarray(class_weights, np.float64), n)
  out = []
  for c, count in enumerate(counts):
    if count == 0:
      continue
    rows = candidates[labels[candidates] == c]
    if rows.size == 0:
      raise ValueError(f"class {c} has no images to draw from; lower its "
                       "weight to 0 or enlarge the pool.")
    order = _rng(key, c).permutation(rows.size)
    out.append(rows[np.resize(order, count)])
  idx = np.concatenate(out)
  return idx[_rng(key, NUM_CLASSES).permutation(idx.size)]


def typical_rows(images: np.ndarray, labels: np.ndarray,
                 fraction: float) -> np.ndarray:
  """Indices of the `fraction` of each class nearest its mean image."""
  keep = []
  flat = np.asarray(images, np.float64).reshape(len(images), -1)
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    dist = np.sum((flat[rows] - flat[rows].mean(0)) ** 2, axis=1)
    count = max(1, int(round(fraction * rows.size)))
    keep.append(rows[np.argsort(dist, kind="stable")[:count]])
  return np.sort(np.concatenate(keep))


def simulate_models(key: jax.Array, pool: Digits, train: Digits, *, n: int,
                    dropped: Sequence[int] = (3, 8), imbalance: float = 0.2,
                    blur_sigma: float = 1.0, copy_fraction: float = 0.5,
                    typical_fraction: float = 0.3) -> List[DigitModel]:
  """Simulated generators in image space, each with one known failure.

  Every model draws from `pool` (real digits held out from the reference
  set, the generator's training set and the test set), so the control is
  exactly as good as fresh real digits:

    good        n pool digits, class shares as in the pool, no repeats.
    dropped     classes `dropped` never generated; the rest as in the pool.
    imbalanced  odd classes at `imbalance` times the even classes' share.
    blurred     the good model's digits blurred with sigma `blur_sigma` px.
    memorized   the good model with `copy_fraction` of its rows replaced by
                copies of `train` digits (with their labels).
    shrunk      low diversity, like truncation: only the `typical_fraction`
                of each class nearest its mean image, repeated as needed.

  Args:
    key: jax.random key.
    pool: digits the models draw from.
    train: the generators' training digits (memorised copies come from it).
    n: images per model; at most len(pool).
    dropped: classes the mode-dropping model never generates.
    imbalance: relative share of the odd classes, in (0, 1].
    blur_sigma: Gaussian blur in pixels.
    copy_fraction: share of the memorising model's images that are copies.
    typical_fraction: share of each class the low-diversity model keeps.

  Returns:
    A list of `DigitModel` (float32 images, int32 labels).
  """
  if not 0 < n <= len(pool):
    raise ValueError(f"`n` must be in [1, len(pool)={len(pool)}]; got {n}.")
  if not 0.0 <= copy_fraction <= 1.0:
    raise ValueError(f"`copy_fraction` must be in [0, 1]; got "
                     f"{copy_fraction}.")
  if not 0.0 < typical_fraction <= 1.0 or not 0.0 < imbalance <= 1.0:
    raise ValueError("`typical_fraction` and `imbalance` must be in (0, 1].")
  labels = np.asarray(pool.labels)
  counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
  every = np.arange(len(pool))
  keys = jax.random.split(key, 6)

  good_idx = _rng(keys[0]).permutation(len(pool))[:n]
  good = pool.take(good_idx)
  kept = counts.copy()
  kept[list(dropped)] = 0.0
  dropped_model = pool.take(_draw(keys[1], labels, every, kept, n))
  weights = np.array([1.0 if c % 2 == 0 else imbalance
                      for c in range(NUM_CLASSES)]) * (counts > 0)
  imbalanced = pool.take(_draw(keys[2], labels, every, weights, n))
  blurred = np.asarray(blur(good.images, sigma=blur_sigma))

  num_copies = int(round(copy_fraction * n))
  if num_copies > len(train):
    raise ValueError(f"{num_copies} copies asked of {len(train)} training "
                     "digits; lower `copy_fraction` or `n`.")
  rows = _rng(keys[3]).permutation(n)[:num_copies]
  src = _rng(keys[4]).permutation(len(train))[:num_copies]
  mem_images, mem_labels = np.array(good.images), np.array(good.labels)
  mem_images[rows], mem_labels[rows] = train.images[src], train.labels[src]

  typical = typical_rows(pool.images, labels, typical_fraction)
  shrunk = pool.take(_draw(keys[5], labels, typical, counts, n))

  names = ", ".join(str(c) for c in dropped)
  return [
      DigitModel("good", good.images, good.labels,
                 "none (held-out real digits)"),
      DigitModel("dropped", dropped_model.images, dropped_model.labels,
                 f"digits {names} never generated"),
      DigitModel("imbalanced", imbalanced.images, imbalanced.labels,
                 f"odd digits at {imbalance:g}x the even ones"),
      DigitModel("blurred", blurred, good.labels,
                 f"Gaussian blur of {blur_sigma:g} px"),
      DigitModel("memorized", mem_images, mem_labels,
                 f"{copy_fraction:.0%} copies of training digits"),
      DigitModel("shrunk", shrunk.images, shrunk.labels,
                 f"only the {typical_fraction:.0%} most typical digits of "
                 "each class (low diversity, like truncation)"),
  ]


def _mosaic(rows: Sequence[np.ndarray], num_columns: int, gap: int = 1):
  """Tiles rows of (k <= num_columns, H, W) images; NaN (blank) between."""
  h, w = rows[0].shape[1:]
  mosaic = np.full((len(rows) * (h + gap) - gap,
                    num_columns * (w + gap) - gap), np.nan, np.float32)
  for r, row in enumerate(rows):
    for j, im in enumerate(row):
      top, left = r * (h + gap), j * (w + gap)
      mosaic[top:top + h, left:left + w] = im
  return mosaic


def image_grid(images, labels=None, *, num_columns: int = 10,
               title: Optional[str] = None, cell: float = 0.5) -> Figure:
  """A grid of grey images (darker = more ink), optionally captioned.

  Drawn as one mosaic with a single `imshow` (fast for many images).

  Args:
    images: (n, H, W) array (or (n, H*W) with square images).
    labels: optional (n,) labels written above each image.
    num_columns: images per row.
    title: optional figure title.
    cell: inches per image.

  Returns:
    A matplotlib Figure (not attached to pyplot).
  """
  images = _as_images(images)
  if len(images) == 0:
    raise ValueError("`images` is empty; pass at least one image.")
  h, w = images.shape[1:]
  num_columns = min(num_columns, len(images))
  rows = [images[i:i + num_columns]
          for i in range(0, len(images), num_columns)]
  fig = Figure(figsize=(cell * num_columns + 0.2,
                        cell * len(rows) * (1.3 if labels is not None else 1)
                        + (0.4 if title else 0.1)))
  ax = fig.subplots()
  ax.imshow(_mosaic(rows, num_columns, gap=2 if labels is not None else 1),
            cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
  ax.set_axis_off()
  if labels is not None:
    gap = 2
    for i, label in enumerate(np.asarray(labels)[:len(images)]):
      r, j = divmod(i, num_columns)
      ax.text(j * (w + gap) + (w - 1) / 2, r * (h + gap) - 0.6,
              str(int(label)), ha="center", va="bottom", fontsize=6)
  if title:
    ax.set_title(title, pad=10)
  return fig


def named_grids(sets: Mapping[str, Tuple[np.ndarray, Optional[np.ndarray]]],
                *, per_row: int = 20, cell: float = 0.32) -> Figure:
  """One row of images per named set (e.g. real and each model).

  The rows are tiled into one mosaic drawn by a single `imshow` (fast even
  for many images), with the set names as row labels.

  Args:
    sets: name -> (images (n, H, W), labels (n,) or None). With labels the
      row shows the first image of each class, then the second, ...;
      otherwise the first `per_row` images.
    per_row: images per row.
    cell: inches per image.

  Returns:
    A matplotlib Figure.
  """
  rows = []
  for images, labels in sets.values():
    images = _as_images(images)
    idx = (_per_class_order(labels, per_row) if labels is not None
           else np.arange(min(per_row, len(images))))
    rows.append(images[idx])
  h, w = rows[0].shape[1:]
  if any(r.shape[1:] != (h, w) for r in rows):
    raise ValueError("every set must hold images of the same shape.")
  gap = 1
  mosaic = _mosaic(rows, per_row, gap)
  fig = Figure(figsize=(cell * per_row + 1.2, cell * len(rows) + 0.2))
  ax = fig.subplots()
  ax.imshow(mosaic, cmap="gray_r", vmin=0.0, vmax=1.0,
            interpolation="nearest")
  ax.set_yticks([r * (h + gap) + (h - 1) / 2 for r in range(len(rows))],
                list(sets))
  ax.set_xticks([])
  for spine in ax.spines.values():
    spine.set_visible(False)
  ax.tick_params(left=False)
  return fig


def _per_class_order(labels, count) -> np.ndarray:
  """Up to `count` indices taking the first, then second, image per class."""
  labels = np.asarray(labels)
  by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
  out = []
  for rank in range(count):
    for rows in by_class:
      if rank < rows.size and len(out) < count:
        out.append(rows[rank])
  return np.asarray(out, int)


def _as_images(images) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim == 2:
    side = int(round(math.sqrt(images.shape[1])))
    if side * side != images.shape[1]:
      raise ValueError(f"flat images of {images.shape[1]} pixels are not "
                       "square; pass (n, H, W).")
    images = images.reshape(len(images), side, side)
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.ndim != 3:
    raise ValueError(f"expected images of shape (n, H, W); got "
                     f"{images.shape}.")
  return images
