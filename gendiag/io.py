"""Loading user features and saving reusable statistics (.npy / .npz).

A features path is `file.npy`, `file.npz` holding exactly one array, or
`file.npz:key` naming one array of an archive. Loaded features are checked:
2-D, finite, numeric, and cast to float32.
"""

import os
from typing import Optional

import numpy as np

from gendiag import _checks
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
