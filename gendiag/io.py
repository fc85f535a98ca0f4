"""Loading user features and saving reusable statistics (.npy / .npz).

A features path is `file.npy`, `file.npz` holding exactly one array, or
`file.npz:key` naming one array of an archive. Loaded features are checked:
2-D, finite, numeric, and cast to float32.

Reference statistics: gendiag's and pytorch-fid's FID statistics
(`save_frechet_stats`, `load_frechet_stats`) and the ADM evaluator's
reference batches (`VIRTUAL_*.npz`: `load_adm_reference`,
`save_adm_reference`); `load_reference` reads either as the
`FrechetReference` the report scores models against.
"""

import dataclasses
import os
from typing import Optional, Tuple
import zipfile

from absl import logging
import numpy as np

from gendiag import _checks
from gendiag.data.inputs import FrechetReference
from gendiag.metrics import frechet


def _split_key(path: str):
  base, sep, key = path.rpartition(":")
  if sep and base.endswith(".npz") and os.sep not in key:
    return base, key
  return path, None


def load_array(path: str) -> np.ndarray:
  """The array at `path` (`.npy`, `.npz` with one array, or `.npz:key`)."""
  file_path, key = _split_key(path)
  if not os.path.exists(file_path):
    raise ValueError(f"no such file: {file_path!r}.")
  if file_path.endswith(".npy"):
    if key is not None:
      raise ValueError(f"{path!r}: a .npy file holds one array; drop ':{key}'.")
    return np.load(file_path, allow_pickle=False)
  if not file_path.endswith(".npz"):
    raise ValueError(f"{path!r}: expected a .npy or .npz file.")
  with np.load(file_path, allow_pickle=False) as archive:
    names = list(archive.keys())
    if key is None:
      if len(names) != 1:
        raise ValueError(
            f"{file_path!r} holds arrays {names}; name one as "
            f"'{file_path}:{names[0] if names else 'KEY'}'.")
      key = names[0]
    if key not in names:
      raise ValueError(f"{file_path!r} has no array {key!r}; it has {names}.")
    return archive[key]


def load_features(path: str, *, name: Optional[str] = None) -> np.ndarray:
  """Loads and validates an (n, d) features array as float32."""
  array = load_array(path)
  label = name or path
  if not np.issubdtype(array.dtype, np.number):
    raise ValueError(f"{label}: features must be numeric; got {array.dtype}.")
  _checks.check_features(array, label, min_rows=2)
  return array.astype(np.float32)


def load_labels(path: str, *, num_rows: int, name: Optional[str] = None
                ) -> np.ndarray:
  """Loads integer class labels, one per feature row."""
  labels = load_array(path)
  label = name or path
  if labels.shape != (num_rows,):
    raise ValueError(f"{label}: expected labels of shape ({num_rows},) to "
                     f"match the features; got {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    if not np.all(labels == np.round(labels)):
      raise ValueError(f"{label}: labels must be integers.")
  if labels.min() < 0:
    raise ValueError(f"{label}: labels must be non-negative class indices.")
  return labels.astype(np.int32)


def parse_named_paths(spec: str) -> dict:
  """'a=x.npy,b=y.npz:feat' -> {'a': 'x.npy', 'b': 'y.npz:feat'}."""
  named = {}
  for item in filter(None, (s.strip() for s in spec.split(","))):
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"expected NAME=PATH in {spec!r}; got {item!r}.")
    if name in named:
      raise ValueError(f"model name {name!r} appears twice in {spec!r}.")
    named[name.strip()] = path.strip()
  return named


def save_frechet_stats(path: str, stats: frechet.FrechetStats):
  """Saves FID statistics (mu, sigma, factor, n) to an .npz file."""
  np.savez(path, mu=np.asarray(stats.mean), sigma=np.asarray(stats.cov),
           factor=np.asarray(stats.factor), n=np.asarray(stats.n))


def load_frechet_stats(path: str) -> frechet.FrechetStats:
  """Loads statistics saved by `save_frechet_stats` or pytorch-fid (mu, sigma).

  pytorch-fid files lack the factor and n; the factor is then recomputed
  from sigma (less accurate in float32 if sigma is singular) and n is -1.
  """
  with np.load(path, allow_pickle=False) as archive:
    if "mu" not in archive or "sigma" not in archive:
      raise ValueError(f"{path!r} needs arrays 'mu' and 'sigma'; it has "
                       f"{list(archive.keys())}.")
    mean = archive["mu"].astype(np.float32)
    cov = archive["sigma"].astype(np.float32)
    n = int(archive["n"]) if "n" in archive else -1
    if "factor" in archive:
      return frechet.FrechetStats(mean=mean, cov=cov,
                                  factor=archive["factor"].astype(np.float32),
                                  n=np.int32(n))
  return frechet.frechet_stats_from_moments(mean, cov, n)


# The ADM evaluator's reference batch: its keys, and the dimensions of
# Inception pool3 and of sFID's spatial features at 299 x 299.
ADM_KEYS = ("mu", "sigma", "mu_s", "sigma_s")
ADM_DIMS = (2048, 2023)


@dataclasses.dataclass(frozen=True)
class AdmReference:
  """The statistics of an ADM evaluator reference batch (`VIRTUAL_*.npz`).

  Attributes:
    mu: (2048,) mean of the Inception pool3 features.
    sigma: (2048, 2048) their covariance (np.cov, ddof 1).
    mu_s: (2023,) mean of sFID's spatial features (Mixed_6d.branch1x1,
      first 7 channels, flattened in (h, w, c) order).
    sigma_s: (2023, 2023) their covariance.
    num_images: rows of the file's `arr_0` images (read from the array's
      header; the images are never loaded), 0 when it has none.
    image_shape: the shape of `arr_0`, or None.
  """
  mu: np.ndarray
  sigma: np.ndarray
  mu_s: np.ndarray
  sigma_s: np.ndarray
  num_images: int = 0
  image_shape: Optional[Tuple[int, ...]] = None

  @property
  def has_images(self) -> bool:
    """Whether the file holds images (`arr_0`, for precision/recall)."""
    return self.num_images > 0


def _npz_member_shape(path: str, name: str) -> Tuple[int, ...]:
  """The shape of `name`.npy inside an .npz, from its header alone."""
  with zipfile.ZipFile(path) as archive, archive.open(name + ".npy") as f:
    major, _ = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if major == 1
            else np.lib.format.read_array_header_2_0)
    return tuple(int(n) for n in read(f)[0])


def _check_npz(path: str, expected: str) -> None:
  """ValueError unless `path` is an existing zip (.npz); `expected` says
  what the file should hold."""
  if not os.path.exists(path):
    raise ValueError(f"no such file: {path!r}.")
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path!r} is not an .npz archive ({expected}).")


def _check_moments(mean, cov, names, dim, path):
  mean, cov = np.asarray(mean), np.asarray(cov)
  for name, a in zip(names, (mean, cov)):
    if not np.issubdtype(a.dtype, np.number):
      raise ValueError(f"{path!r}: {name!r} must be numeric; got {a.dtype}.")
  d = mean.shape[0] if mean.ndim == 1 else -1
  if d < 1 or cov.shape != (d, d):
    raise ValueError(
        f"{path!r}: expected {names[0]!r} of shape (d,) and {names[1]!r} of "
        f"shape (d, d); got {mean.shape} and {cov.shape}.")
  if dim is not None and d != dim:
    raise ValueError(
        f"{path!r}: {names[0]!r} has {d} entries but an ADM reference batch "
        f"has {dim} (Inception pool3 2048, spatial 2023 at 299 x 299); pass "
        "dims=None to accept other feature spaces.")
  if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
    raise ValueError(f"{path!r}: {names[0]!r} or {names[1]!r} holds NaN or "
                     "inf; recompute the statistics.")
  return mean, cov


def load_adm_reference(path: str, *, dims: Optional[Tuple[int, int]] = ADM_DIMS
                       ) -> AdmReference:
  """Reads the statistics of an ADM reference batch, never its images.

  The ADM evaluator (openai/guided-diffusion `evaluations/evaluator.py`)
  uses a file's `mu`, `sigma`, `mu_s`, `sigma_s` when present; `arr_0`
  (uint8 NHWC images, about 10k) only feeds its precision/recall. Here only
  `arr_0`'s header is read (`num_images`, `image_shape`).

  The spatial features are post-ReLU, so a file computed from that tensor
  has min(mu_s) >= 0; a negative entry (logged as a warning, not an error)
  suggests statistics of another tensor or another flatten order.

  Args:
    path: the `.npz` file.
    dims: the expected (pool3, spatial) dimensions, (2048, 2023) for ADM's
      Inception at 299 x 299; None accepts any consistent ones.

  Returns:
    An `AdmReference` with the arrays as stored (float32 means, float64
    covariances in the published files).
  """
  _check_npz(path, "an ADM reference batch is one, VIRTUAL_*.npz")
  with np.load(path, allow_pickle=False) as archive:
    names = list(archive.files)
    missing = [k for k in ADM_KEYS if k not in names]
    if missing:
      raise ValueError(
          f"{path!r} lacks {missing} (it has {names}): an ADM reference batch "
          f"holds {list(ADM_KEYS)}. A sample batch holds only arr_0: embed "
          "its images and write the statistics with save_adm_reference.")
    dims = (None, None) if dims is None else dims
    mu, sigma = _check_moments(archive["mu"], archive["sigma"],
                               ("mu", "sigma"), dims[0], path)
    mu_s, sigma_s = _check_moments(archive["mu_s"], archive["sigma_s"],
                                   ("mu_s", "sigma_s"), dims[1], path)
  if mu_s.min() < 0:
    logging.warning("%s: min(mu_s) = %g < 0, but sFID's spatial features are "
                    "post-ReLU (>= 0): these statistics may come from another "
                    "tensor.", path, mu_s.min())
  shape = _npz_member_shape(path, "arr_0") if "arr_0" in names else None
  return AdmReference(mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s,
                      num_images=shape[0] if shape else 0, image_shape=shape)


def _adm_moments(features):
  """The ADM evaluator's statistics: float32 np.mean, float64 np.cov."""
  x = np.asarray(features, np.float32)
  return np.mean(x, axis=0), np.cov(x, rowvar=False)


def save_adm_reference(path: str, *, pool3, spatial, images=None,
                       dims: Optional[Tuple[int, int]] = ADM_DIMS
                       ) -> AdmReference:
  """Writes an ADM-format reference batch from features (and images).

  The statistics are computed as the evaluator does from its float32
  activations: mu = np.mean (float32), sigma = np.cov(rowvar=False)
  (float64, ddof 1), and likewise mu_s, sigma_s from `spatial`. The
  evaluator reads `arr_0` before the statistics (for precision/recall), so
  a file it accepts needs `images`; gendiag reads either.

  Args:
    path: the `.npz` file to write.
    pool3: (n, 2048) Inception pool3 features, n >= 2.
    spatial: (n, 2023) sFID spatial features of the same images, in (h, w,
      c) order.
    images: optional uint8 (N, H, W, 3) images stored as `arr_0` (ADM's
      reference files keep about 10k, not necessarily the n above).
    dims: the required (pool3, spatial) dimensions; None accepts any.

  Returns:
    The `AdmReference` written.
  """
  if not path.endswith(".npz"):
    raise ValueError(f"{path!r}: name the reference batch file *.npz.")
  pool3 = _checks.check_features(pool3, "pool3", min_rows=2)
  spatial = _checks.check_features(spatial, "spatial", min_rows=2)
  if len(spatial) != len(pool3):
    raise ValueError(f"`pool3` has {len(pool3)} rows but `spatial` has "
                     f"{len(spatial)}; both must embed the same images.")
  dims = (None, None) if dims is None else dims
  for name, x, dim in (("pool3", pool3, dims[0]), ("spatial", spatial,
                                                   dims[1])):
    if dim is not None and x.shape[1] != dim:
      raise ValueError(f"`{name}` has {x.shape[1]} features; an ADM reference "
                       f"has {dim}. Pass dims=None for other spaces.")
  arrays = {}
  if images is not None:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
          "`images` must be uint8 (N, H, W, 3) as in ADM's arr_0; got "
          f"{images.dtype} {images.shape} (e.g. np.clip(x, 0, 255)"
          ".astype(np.uint8), NCHW transposed to NHWC).")
    arrays["arr_0"] = images
  mu, sigma = _adm_moments(pool3)
  mu_s, sigma_s = _adm_moments(spatial)
  np.savez(path, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s, **arrays)
  return AdmReference(
      mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s,
      num_images=0 if images is None else len(images),
      image_shape=None if images is None else images.shape)


def frechet_reference(reference: AdmReference, *, source: str = ""
                      ) -> FrechetReference:
  """The `FrechetReference` of an ADM batch: FID and sFID statistics.

  `fid_from_stats(ref.features, frechet_stats(pool3))` is then the ADM
  evaluator's FID and, with `ref.spatial` and spatial features, its sFID.
  The covariance factors come from the covariances (no features are
  stored), so n = -1 and rank-deficient covariances are less accurate in
  float32 (see `frechet_stats_from_moments`).
  """
  return FrechetReference(
      features=frechet.frechet_stats_from_moments(reference.mu,
                                                  reference.sigma, -1),
      spatial=frechet.frechet_stats_from_moments(reference.mu_s,
                                                 reference.sigma_s, -1),
      source=source)


def load_reference(path: str) -> FrechetReference:
  """A `FrechetReference` from an ADM batch, or FID statistics alone.

  Files with `mu_s` are read as ADM reference batches (pool3 and spatial,
  of any consistent dimensions: the report checks them against its
  features); others as `load_frechet_stats` files (gendiag's or
  pytorch-fid's `mu`, `sigma`), whose reference has no spatial part.
  """
  _check_npz(path, "of statistics: mu, sigma; ADM batches also mu_s, "
             "sigma_s")
  with np.load(path, allow_pickle=False) as archive:
    adm = "mu_s" in archive.files
  source = os.path.basename(path)
  if adm:
    return frechet_reference(load_adm_reference(path, dims=None),
                             source=source)
  return FrechetReference(features=load_frechet_stats(path), source=source)
