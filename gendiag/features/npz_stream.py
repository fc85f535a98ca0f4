"""One array of an .npz, read a few rows at a time: the ADM evaluator's sample batches.

An ADM sample batch is `np.savez(path, arr)`: `arr_0.npy`, uint8 (N, H, W, 3), usually 50,000
images (9.8 GB at 256 px) inside a zip. `np.load` of an .npz reads a whole member into memory;
`open_npz_array` reads only the member's npy header (shape, dtype, order) and then rows on demand:

  stored member (np.savez)               a read-only `np.memmap` of the member's bytes, which lie
                                         in the file as they are (local header, name and extra
                                         field skipped); random access.
  compressed member (np.savez_compressed) `ZipMemberRows`: rows decompressed as they are sliced;
                                         forward reads skip ahead, a backward read starts the
                                         member over, so read in increasing row order.
  Fortran-order and compressed           loaded whole (its rows are not contiguous in the stream).

The ADM evaluator reads `arr_0` the same way, in batches from the npy header
(guided-diffusion `evaluations/evaluator.py`).
"""

import os
import threading
import zipfile
import zlib

import numpy as np

ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error)
_LOCAL_HEADER_BYTES = 30  # then the member's name and its extra field
_LOCAL_HEADER_MAGIC = b"PK\x03\x04"


class ZipMemberRows:
  """The rows of an npy array in a compressed zip member, as a sliceable array-like.

  `rows[a:b]` returns rows a..b-1 as a numpy array; `.shape` and `.dtype` are the array's.
  """

  def __init__(self, path: str, member: str, shape, dtype, data_start: int):
    self.shape, self.dtype = tuple(shape), np.dtype(dtype)
    self._path, self._member, self._data_start = path, member, data_start
    self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
    self._zip = self._file = None
    self._lock = threading.Lock()  # one reader at a time (batches reads in a background thread)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, index: slice) -> np.ndarray:
    if not isinstance(index, slice) or index.step not in (None, 1):
      raise ValueError("a compressed npz member is read by contiguous slices rows[a:b].")
    start, stop, _ = index.indices(self.shape[0])
    stop = max(start, stop)
    size = (stop - start) * self._row_bytes
    with self._lock:
      try:
        if self._file is None:
          self._zip = zipfile.ZipFile(self._path)
          self._file = self._zip.open(self._member)
        self._file.seek(self._data_start + start * self._row_bytes)  # forward: reads through
        data = self._file.read(size)
      except ZIP_ERRORS as e:
        self.close()
        raise ValueError(f"cannot read {self._path}:{self._member}: {e}") from e
    if len(data) != size:
      raise ValueError(f"{self._path}:{self._member} is truncated: rows {start}..{stop - 1} "
                       "are missing.")
    return np.frombuffer(data, self.dtype).reshape((stop - start,) + self.shape[1:])

  def close(self) -> None:
    for f in (self._file, self._zip):
      if f is not None:
        f.close()
    self._zip = self._file = None


def _read_npy_header(f, where: str):
  """(shape, fortran_order, dtype, header length) of the npy stream `f`."""
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
  elif version == (2, 0):
    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
  else:
    raise ValueError(f"{where}: npy format {version} is not supported; re-save it with np.savez.")
  return shape, fortran, dtype, f.tell()


def open_npz_array(path: str, key: str = "arr_0"):
  """The array `key` of the .npz at `path`, without loading it whole.

  Args:
    path: an .npz file (np.savez or np.savez_compressed).
    key: the array's name in the file; `arr_0` is the first positional array (ADM's images).

  Returns:
    An array-like with `.shape`, `.dtype` and row slicing: a read-only `np.memmap` (stored
    member), a `ZipMemberRows` (compressed) or an ndarray (compressed Fortran order).

  Raises:
    ValueError: not a readable zip, no such key (the message lists the keys), an object array,
      or a corrupt member header.
  """
  member = key + ".npy"
  try:
    with zipfile.ZipFile(path) as zf:
      if member not in zf.namelist():
        keys = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        raise ValueError(f"{path} has no array {key!r}; it holds {keys} (choose one with "
                         f"'{path}:KEY').")
      info = zf.getinfo(member)
      with zf.open(info) as f:
        shape, fortran, dtype, header = _read_npy_header(f, f"{path}:{key}")
  except ZIP_ERRORS as e:
    raise ValueError(f"cannot read {path} as an .npz: {e}") from e
  if dtype.hasobject:
    raise ValueError(f"{path}:{key} holds Python objects; save images as uint8 or float arrays.")
  if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
    with open(path, "rb") as raw:
      raw.seek(info.header_offset)
      local = raw.read(_LOCAL_HEADER_BYTES)
    if len(local) != _LOCAL_HEADER_BYTES or local[:4] != _LOCAL_HEADER_MAGIC:
      raise ValueError(f"{path}: corrupt zip header for {member}.")
    offset = (info.header_offset + _LOCAL_HEADER_BYTES + header
              + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little"))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size != header + nbytes or os.path.getsize(path) < offset + nbytes:
      raise ValueError(f"{path}: member {member} is truncated or disagrees with its npy header "
                       f"(shape {shape}, {dtype}).")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")
  if fortran:
    with np.load(path, allow_pickle=False) as archive:
      return archive[key]
  return ZipMemberRows(path, member, shape, dtype, header)


__all__ = ("ZipMemberRows", "open_npz_array")
