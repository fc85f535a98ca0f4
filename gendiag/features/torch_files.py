"""Reading PyTorch weight files into numpy, without torch and without running
pickled code.

PyTorch's zip format (`torch.save` since 1.6, and TorchScript `.pt` files) is
a zip with one top folder holding `data.pkl` (the object tree, a pickle) and
`data/<key>` (the raw little-endian bytes of each tensor storage). A plain
`pickle.load` of `data.pkl` would import and call whatever the file names;
`read_torch_zip` instead unpickles with an allow-list of exactly the globals
such files use, mapping each to something inert:

  torch._utils._rebuild_tensor_v2 / _rebuild_parameter  -> a numpy array
  torch.<Dtype>Storage                                  -> a dtype tag
  torch.jit._pickle.build_intlist and friends           -> list
  collections.OrderedDict                               -> dict
  __torch__.<module class> (TorchScript modules)        -> a `TorchModule`

Any other global is refused with a ValueError. Legacy (pre-1.6, non-zip)
files are not read: convert them once with torch (`torch.save(torch.load(
path, weights_only=True), new_path)`).
"""

import functools
import hashlib
import io
import os
import pickle
import zipfile
from typing import Any, Dict, Union

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LIST_BUILDERS = ("build_intlist", "build_doublelist", "build_boollist",
                  "build_tensorlist")


class TorchModule:
  """A TorchScript module as stored: its class name and attribute dict.

  Each `__torch__` class of a file becomes a subclass (`module_class`);
  unpickling creates it without running any code and fills `state`.
  """
  class_name = "TorchModule"

  def __new__(cls, *args):
    del args
    module = super().__new__(cls)
    module.state = {}
    return module

  def __setstate__(self, state):
    self.state = dict(state)

  def __repr__(self):
    return f"TorchModule({self.class_name}, {sorted(self.state)})"


@functools.lru_cache(maxsize=None)
def _module_class(class_name: str) -> type:
  return type(class_name.rpartition(".")[2], (TorchModule,),
              {"class_name": class_name})


def _rebuild_tensor(storage, offset, size, stride, *unused):
  del unused  # requires_grad, backward hooks, metadata
  itemsize = storage.dtype.itemsize
  if not size:
    return np.array(storage[offset], copy=True)
  needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
  if min(size) > 0 and needed > storage.size:
    raise ValueError("a tensor reaches past its storage: the file is "
                     "truncated or corrupt.")
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size),
      strides=tuple(s * itemsize for s in stride))
  return np.array(view, copy=True)


def _rebuild_parameter(data, *unused):
  del unused
  return data


class _Unpickler(pickle.Unpickler):
  """Unpickles `data.pkl` with the allow-list of the module docstring."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
    super().__init__(file)
    self._archive = archive
    self._prefix = prefix

  def find_class(self, module, name):
    if module.startswith("__torch__"):
      return _module_class(f"{module}.{name}")
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return np.dtype(_STORAGE_DTYPES[name])
    if module == "torch.jit._pickle" and name in _LIST_BUILDERS:
      return list
    if module == "collections" and name == "OrderedDict":
      return dict
    raise ValueError(
        f"refusing to load {module}.{name}: it is not among the objects a "
        "PyTorch weight file holds, so the file may run code when unpickled.")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
      raise ValueError(f"unexpected persistent id {pid!r} in the weight file.")
    dtype, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(dtype, np.dtype):
      raise ValueError(f"unexpected storage type {dtype!r}.")
    try:
      raw = self._archive.read(f"{self._prefix}data/{key}")
    except KeyError:
      raise ValueError(f"storage data/{key} is missing: the file is truncated "
                       "or corrupt.") from None
    if len(raw) < numel * dtype.itemsize:
      raise ValueError(f"storage data/{key} holds {len(raw)} bytes, fewer "
                       f"than its {numel} elements need: the file is "
                       "truncated.")
    return np.frombuffer(raw, dtype.newbyteorder("<"), count=numel)


PathOrFile = Union[str, os.PathLike, io.IOBase]


def read_torch_zip(file: PathOrFile, *, what: str = "weight file") -> Any:
  """The object tree of a PyTorch zip file, tensors as numpy arrays.

  Args:
    file: a path, or a seekable binary file object (e.g. a wheel member).
    what: how error messages name the file.

  Returns:
    The unpickled root: a dict (a `torch.save`d state_dict) or a
    `TorchModule` (a TorchScript archive), with numpy arrays for tensors.

  Raises:
    ValueError: not a zip (legacy torch format or not torch at all),
      truncated, or holding objects outside the allow-list.
  """
  try:
    archive = zipfile.ZipFile(file)
  except (zipfile.BadZipFile, OSError) as e:
    raise ValueError(
        f"{what} is not a PyTorch zip archive ({e}): it is truncated, not a "
        "torch file, or in torch's legacy pre-1.6 format; convert a legacy "
        "file once with torch: torch.save(torch.load(path, weights_only=True)"
        ", new_path).") from None
  with archive:
    pickles = [n for n in archive.namelist()
               if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise ValueError(f"{what} has no single <folder>/data.pkl: not a "
                       "PyTorch zip archive.")
    prefix = pickles[0][:-len("data.pkl")]
    try:
      with archive.open(pickles[0]) as f:
        return _Unpickler(io.BytesIO(f.read()), archive, prefix).load()
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as e:
      raise ValueError(f"{what} is corrupt or truncated ({e}).") from None


def named_tensors(tree: Any, prefix: str = "") -> Dict[str, np.ndarray]:
  """{dotted name: array} of every array in a `read_torch_zip` tree.

  TorchScript modules are walked through their attributes (as
  `state_dict()` names them); dicts through their keys.
  """
  if isinstance(tree, np.ndarray):
    return {prefix[:-1]: tree}
  items = ()
  if isinstance(tree, TorchModule):
    items = tree.state.items()
  elif isinstance(tree, dict):
    items = tree.items()
  out = {}
  for name, value in items:
    out.update(named_tensors(value, f"{prefix}{name}."))
  return out


def file_sha256(file: PathOrFile) -> str:
  """The sha256 hex digest of a file's bytes (a path or a binary file)."""
  digest = hashlib.sha256()
  if isinstance(file, (str, os.PathLike)):
    with open(file, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
  else:
    file.seek(0)
    for chunk in iter(lambda: file.read(1 << 20), b""):
      digest.update(chunk)
    file.seek(0)
  return digest.hexdigest()
