"""An on-disk cache of the report's real-side results, so a second run skips them.

Most of what a family computes besides the models' own scores depends on the
real, train and test sets alone: the references on held-out real rows, the
real-against-real null baselines, the real set's k-NN radii, kernel sums and
Gaussian statistics, the FLD baselines. A user who scores checkpoint after
checkpoint against one real set pays for them once.

`cached_call(label, fn, *args, **kwargs)` is fn(*args, **kwargs), stored as
`<directory>/<key>.pkl`. The key is the sha256 of:
  fn's module and name; a digest of gendiag's own source files (any change
  of the code is a new key); the jax and numpy versions; and every argument:
  arrays by dtype, shape and bytes, PRNG keys by their key data, mappings
  (config dicts included) and sequences element by element, scalars and
  strings by type and repr. An argument of any other type is a TypeError,
  never a key that ignores it.
A changed input is therefore a different entry, never a stale one. Writes
are atomic (a temporary file, then `os.replace`); an entry that does not
load or whose stored key differs is reported with a warning and recomputed.
Entries are pickles of the result with numpy leaves: load a cache directory
only if you trust whoever writes to it (by default your own
`~/.cache/gendiag/results`).

The cache is off until `enable` (the binaries turn it on; `--result_cache`
or `$GENDIAG_RESULT_CACHE` picks the directory, 'none' turns it off), so
library calls and tests never touch the disk. `take_log()` returns the
labels served from disk and computed since the last call, for the report.
"""

import dataclasses
import hashlib
import os
import pickle
import tempfile
from typing import Any, Callable, Dict, List, Optional
import warnings

import jax
import numpy as np

ENV_VAR = "GENDIAG_RESULT_CACHE"
DEFAULT_DIR = os.path.join("~", ".cache", "gendiag", "results")
OFF = ("", "none", "off")
FORMAT = "gendiag.result_cache/1"


@dataclasses.dataclass
class _State:
  directory: Optional[str] = None
  hits: List[str] = dataclasses.field(default_factory=list)
  misses: List[str] = dataclasses.field(default_factory=list)
  digests: Dict[int, Any] = dataclasses.field(default_factory=dict)


_STATE = _State()
_CODE_DIGEST: List[str] = []


def default_directory() -> str:
  """`$GENDIAG_RESULT_CACHE` if set ('', 'none' or 'off': off), else
  `~/.cache/gendiag/results`."""
  return os.environ.get(ENV_VAR, DEFAULT_DIR)


def enable(directory: Optional[str] = None) -> Optional[str]:
  """Turns the cache on in `directory` (None: `default_directory()`).

  Returns:
    The absolute directory, or None when `directory` says off.
  """
  directory = default_directory() if directory is None else directory
  if directory.strip().lower() in OFF:
    disable()
    return None
  directory = os.path.abspath(os.path.expanduser(directory))
  os.makedirs(directory, exist_ok=True)
  _STATE.directory = directory
  return directory


def disable() -> None:
  """Turns the cache off (results are computed, nothing is written)."""
  _STATE.directory = None
  _STATE.digests.clear()


def directory() -> Optional[str]:
  """The cache directory in use, or None when off."""
  return _STATE.directory


def take_log() -> Dict[str, List[str]]:
  """{'loaded': labels served from disk, 'computed': labels computed and
  stored} since the last call; forgets the array digests of this run."""
  log = {"loaded": list(_STATE.hits), "computed": list(_STATE.misses)}
  _STATE.hits.clear()
  _STATE.misses.clear()
  _STATE.digests.clear()
  return log


def code_digest() -> str:
  """sha256 of gendiag's .py files (relative paths and bytes), once per
  process: a changed line of code is a changed key."""
  if not _CODE_DIGEST:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for base, dirs, files in os.walk(root):
      dirs.sort()
      for name in sorted(files):
        if name.endswith(".py"):
          path = os.path.join(base, name)
          h.update(os.path.relpath(path, root).encode() + b"\0")
          with open(path, "rb") as f:
            h.update(f.read())
    _CODE_DIGEST.append(h.hexdigest())
  return _CODE_DIGEST[0]


def _array_digest(value) -> str:
  """dtype, shape and bytes of an array (memoised per run by identity, the
  array held so its id is not reused)."""
  memo = _STATE.digests.get(id(value))
  if memo is not None and memo[0] is value:
    return memo[1]
  if isinstance(value, jax.Array) and jax.dtypes.issubdtype(
      value.dtype, jax.dtypes.prng_key):
    data = np.asarray(jax.random.key_data(value))
    kind = "key:" + str(jax.random.key_impl(value))
  else:
    data = np.asarray(value)
    kind = "array"
  h = hashlib.sha256(f"{kind}|{data.dtype.str}|{data.shape}|".encode())
  # The array's own buffer (bytes as tobytes() gives them, without a copy).
  h.update(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
  digest = h.hexdigest()
  _STATE.digests[id(value)] = (value, digest)
  return digest


def fingerprint(value) -> str:
  """A canonical string of `value` for the key (module docstring)."""
  if value is None or isinstance(value, (bool, int, float, str, bytes,
                                         np.generic)):
    return f"{type(value).__name__}:{value!r}"
  if isinstance(value, (np.ndarray, jax.Array)):
    return "a:" + _array_digest(value)
  if dataclasses.is_dataclass(value):   # results, kernels: pytree leaves
    leaves, treedef = jax.tree.flatten(value)
    return f"tree:{treedef}:" + fingerprint(leaves)
  if hasattr(value, "to_dict") and callable(value.to_dict):  # ConfigDict
    value = value.to_dict()
  if isinstance(value, dict) or hasattr(value, "items"):
    items = sorted((str(k), fingerprint(v)) for k, v in value.items())
    return "{" + ",".join(f"{k}={v}" for k, v in items) + "}"
  if isinstance(value, (list, tuple)):
    return "[" + ",".join(fingerprint(v) for v in value) + "]"
  raise TypeError(
      f"result_cache cannot key an argument of type {type(value).__name__}; "
      "pass arrays, keys, numbers, strings, mappings or sequences.")


def entry_key(fn: Callable, args, kwargs) -> str:
  """The sha256 hex of fn, the code, the versions and the arguments."""
  parts = [FORMAT, f"{fn.__module__}.{fn.__qualname__}", code_digest(),
           f"jax={jax.__version__}", f"numpy={np.__version__}",
           fingerprint(list(args)), fingerprint(dict(kwargs))]
  return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _load(path: str, key: str):
  """(True, value) from an entry, or (False, None) when absent or corrupt."""
  if not os.path.exists(path):
    return False, None
  try:
    with open(path, "rb") as f:
      stored = pickle.load(f)
    if stored.get("format") != FORMAT or stored.get("key") != key:
      raise ValueError("the stored key or format does not match the file")
    return True, stored["value"]
  except Exception as e:  # pylint: disable=broad-except
    warnings.warn(f"ignoring the unreadable result cache entry {path} "
                  f"({type(e).__name__}: {e}); it is recomputed.",
                  RuntimeWarning, stacklevel=3)
    return False, None


def _save(path: str, key: str, value) -> None:
  fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".pkl.tmp",
                             dir=os.path.dirname(path))
  try:
    with os.fdopen(fd, "wb") as f:
      pickle.dump({"format": FORMAT, "key": key, "value": value}, f,
                  protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def cached_call(label: Optional[str], fn: Callable, *args, **kwargs):
  """fn(*args, **kwargs), from the cache when an entry has the same key.

  Args:
    label: what the result is, for the report's log (e.g. "fid reference
      (n = 10000)"); None calls fn directly (a model's own results).
    fn: a pure function of its arguments (same arguments, same result).
    *args, **kwargs: its arguments (types: `fingerprint`).

  Returns:
    The result; from disk, its array leaves are numpy arrays.
  """
  if label is None or _STATE.directory is None:
    return fn(*args, **kwargs)
  key = entry_key(fn, args, kwargs)
  path = os.path.join(_STATE.directory, key + ".pkl")
  found, value = _load(path, key)
  if found:
    _STATE.hits.append(label)
    return value
  value = jax.device_get(fn(*args, **kwargs))
  _save(path, key, value)
  _STATE.misses.append(label)
  return value
