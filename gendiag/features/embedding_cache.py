"""An on-disk cache of embeddings, so a second run re-embeds nothing.

An entry is one .npz, `<cache_dir>/<key>.npz`, holding the embedding arrays (e.g. `pool3`,
`spatial`, `logits`) and a JSON metadata string. Its key is the sha256 of everything that
determines the embeddings (`cache_key`): the images' fingerprint
(`gendiag.features.images.ImageSource.fingerprint`: paths, sizes and mtimes of files, or the bytes
of an array), the extractor, the sha256 of its weights and the preprocessing, plus anything else
the caller names in `extra`. A change in any of them is a different key, never a stale entry.

The directory is `$GENDIAG_EMBEDDING_CACHE` if set ('', 'none' or 'off': no caching), else
`~/.cache/gendiag/embeddings`, as `gendiag.compilation_cache` does for compiled programs.
Writes are atomic (a temporary file in the same directory, then `os.replace`), so a reader sees
a whole entry or none; a corrupt entry (a truncated or damaged file, a key that does not match) is
reported with a warning and treated as absent, never returned.
"""

import hashlib
import json
import os
import re
import tempfile
import types
import warnings
import zipfile
from typing import Any, Dict, Mapping, Optional

import numpy as np

ENV_VAR = "GENDIAG_EMBEDDING_CACHE"
DEFAULT_DIR = os.path.join("~", ".cache", "gendiag", "embeddings")
OFF = ("", "none", "off")
FORMAT = "gendiag.embedding_cache/1"
METADATA_KEY = "__metadata__"
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_NO_EXTRA = types.MappingProxyType({})


def default_cache_dir() -> str:
  """`$GENDIAG_EMBEDDING_CACHE` if set (empty, 'none' or 'off': off), else
  `~/.cache/gendiag/embeddings`."""
  return os.environ.get(ENV_VAR, DEFAULT_DIR)


def _resolve(cache_dir: Optional[str]) -> Optional[str]:
  """The absolute cache directory, or None when caching is off."""
  cache_dir = default_cache_dir() if cache_dir is None else os.fspath(cache_dir)
  if cache_dir.strip().lower() in OFF:
    return None
  return os.path.abspath(os.path.expanduser(cache_dir))


def cache_key(source_fingerprint: str, *, extractor: str, weights_sha256: str,
              preprocessing: str, extra: Mapping[str, Any] = _NO_EXTRA) -> str:
  """The sha256 hex of the canonical JSON of everything that determines the embeddings.

  Args:
    source_fingerprint: the images' `ImageSource.fingerprint()`.
    extractor: the extractor's name (e.g. "inception_fid").
    weights_sha256: the sha256 of the weight file the extractor was built from.
    preprocessing: the preprocessing's name (e.g. "adm").
    extra: anything else that changes the embeddings (image size, outputs, code version), as
      JSON-serialisable values.

  Returns:
    64 lowercase hex digits.
  """
  fields = {"source": source_fingerprint, "extractor": extractor,
            "weights_sha256": weights_sha256, "preprocessing": preprocessing}
  for name, value in fields.items():
    if not isinstance(value, str) or not value:
      raise ValueError(f"`{name}` must be a non-empty string; got {value!r}.")
  try:
    canonical = json.dumps({"format": FORMAT, **fields, "extra": dict(extra)}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"`extra` must hold JSON-serialisable values with string keys: {e}") from e
  return hashlib.sha256(canonical.encode()).hexdigest()


def entry_path(cache_dir: Optional[str], key: str) -> Optional[str]:
  """`<cache_dir>/<key>.npz`, or None when caching is off."""
  if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
    raise ValueError(f"`key` must be a cache_key (64 lowercase hex digits); got {key!r}.")
  cache_dir = _resolve(cache_dir)
  return None if cache_dir is None else os.path.join(cache_dir, key + ".npz")


def _read(cache_dir: Optional[str], key: str):
  """(arrays, metadata) of an entry, or None when absent, off or corrupt (with a warning)."""
  path = entry_path(cache_dir, key)
  if path is None or not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as archive:
      arrays = {name: archive[name] for name in archive.files}
    metadata = json.loads(str(arrays.pop(METADATA_KEY)[()]))
    if metadata.get("key") != key or metadata.get("format") != FORMAT:
      raise ValueError("the entry's stored key or format does not match its file name")
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, TypeError,
          AttributeError) as e:
    warnings.warn(f"ignoring the corrupt embedding cache entry {path} ({type(e).__name__}: "
                  f"{e}); it will be recomputed and overwritten.", RuntimeWarning, stacklevel=3)
    return None
  return arrays, metadata


def load(cache_dir: Optional[str], key: str) -> Optional[Dict[str, np.ndarray]]:
  """The arrays cached under `key`, or None (absent, caching off, or corrupt: a warning).

  Args:
    cache_dir: the cache directory; None reads `default_cache_dir()`.
    key: a `cache_key`.
  """
  entry = _read(cache_dir, key)
  return None if entry is None else entry[0]


def load_metadata(cache_dir: Optional[str], key: str) -> Optional[Dict[str, Any]]:
  """The metadata saved with `key` (plus "key" and "format"), or None like `load`."""
  entry = _read(cache_dir, key)
  return None if entry is None else entry[1]


def save(cache_dir: Optional[str], key: str, arrays: Mapping[str, np.ndarray],
         metadata: Mapping[str, Any]) -> Optional[str]:
  """Writes an entry atomically: a temporary file in the cache directory, then `os.replace`.

  Args:
    cache_dir: the cache directory (created if missing); None reads `default_cache_dir()`.
    key: a `cache_key`.
    arrays: name -> numpy array (numeric or bool; no objects). Names must be valid file names
      and not "__metadata__".
    metadata: JSON-serialisable facts about the entry (extractor, weights sha256, n, ...),
      stored as a JSON string array inside the npz.

  Returns:
    The entry's path, or None when caching is off.
  """
  path = entry_path(cache_dir, key)
  if path is None:
    return None
  if not arrays:
    raise ValueError("`arrays` is empty; save at least one embedding array.")
  clean = {}
  for name, array in arrays.items():
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or \
        name == METADATA_KEY:
      raise ValueError(f"`arrays` name {name!r} must be letters, digits, '_', '.' or '-', and "
                       f"not {METADATA_KEY!r}.")
    array = np.asarray(array)
    if array.dtype.hasobject:
      raise ValueError(f"`arrays[{name!r}]` holds Python objects; cache numeric arrays only.")
    clean[name] = array
  try:
    text = json.dumps({**dict(metadata), "key": key, "format": FORMAT}, sort_keys=True,
                      allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"`metadata` must be JSON-serialisable: {e}") from e
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".npz.tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **clean, **{METADATA_KEY: np.array(text)})
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


__all__ = ("DEFAULT_DIR", "ENV_VAR", "cache_key", "default_cache_dir", "entry_path", "load",
           "load_metadata", "save")
