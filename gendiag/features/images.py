"""Image sources for the extractors, read in fixed batches.

`open_images(source)` takes what users have:

  a folder   every .png .jpg .jpeg .webp .bmp below it (any case, recursive), sorted by relative
             path, each decoded by Pillow with `.convert("RGB")` to uint8 (grayscale replicated,
             alpha dropped, EXIF orientation not applied: as pytorch-fid and clean-fid decode).
  x.npz      the array `arr_0` (the ADM evaluator's sample format, uint8 (N, H, W, 3)) or
             'x.npz:key', STREAMED from the zip: the npy header is read from the member, then
             rows as needed (memory-mapped when the member is stored, as `np.savez` writes it;
             read through in order when compressed), so a 50,000 x 256 x 256 x 3 batch (9.8 GB)
             never sits in memory.
  x.npy      memory-mapped (`np.load(mmap_mode="r")`).
  an array   (n, H, W, 3), (n, 3, H, W), (n, H, W) or one channel (replicated to 3), uint8 or
             float.

Layout: a 4-D array is NHWC when its last axis has 1 or 3 channels, else NCHW when axis 1 has 1 or
3, else an error; so (n, 3, H, 3) reads as NHWC. Values: uint8 is 0..255. Floats need
`value_range`, one of (0, 1), (-1, 1), (0, 255), stated by the user (never guessed); they map
linearly onto 0..255 as float32 WITHOUT re-quantisation to uint8 (peers that quantise, such as
ADM's sampler and StyleGAN, do it before saving; quantise yourself to match them). Values beyond
the range by more than 1e-3 of its width are an error, those within it are clipped. Arrays in
memory are checked when opened, files as their rows are read.

`batches(source, batch_size=...)` yields `Batch`es of exactly `batch_size` rows of one image size
(folders may mix sizes); each size's last batch is padded with zeros and masked, never dropped,
and `rows` says which source image each row holds.
"""

import concurrent.futures
import dataclasses
import hashlib
import os
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tqdm

from gendiag.features import npz_stream

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VALUE_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))
RANGE_TOLERANCE = 1e-3  # as a fraction of the range's width
_FINGERPRINT_VERSION = "gendiag.images/1"
_DECODE_THREADS = min(8, os.cpu_count() or 1)
_CHUNK_BYTES = 64 << 20
_PIL_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def _sha256(*parts) -> str:
  return hashlib.sha256(repr((_FINGERPRINT_VERSION,) + parts).encode()).hexdigest()


def _file_stamp(path: str) -> Tuple[str, int, int]:
  st = os.stat(path)
  return os.path.abspath(path), st.st_size, st.st_mtime_ns


def _describe(name: Optional[str], label: str, what: str) -> str:
  return f"{name} ({label}): {what}" if name else f"{label}: {what}"


class ImageSource:
  """n images, each (H, W, 3) on the 0..255 scale; made by `open_images`.

  `len(source)`; `.description` (for progress bars and reports); `.fingerprint()` (cheap; changes
  when the images may have changed); `.sizes()` ((n, 2) int64, each image's (H, W));
  `.read_rows(rows)` (images of one size stacked, (k, H, W, 3) uint8 or float32 on 0..255);
  `.read(start, stop)` (images start..stop-1 as a list of (H, W, 3)).
  """

  description: str

  def __len__(self) -> int:
    raise NotImplementedError

  def fingerprint(self) -> str:
    raise NotImplementedError

  def sizes(self) -> np.ndarray:
    raise NotImplementedError

  def read_rows(self, rows: Sequence[int]) -> np.ndarray:
    raise NotImplementedError

  def read(self, start: int, stop: int) -> List[np.ndarray]:
    return [self.read_rows([i])[0] for i in range(*slice(start, stop).indices(len(self)))]

  def __repr__(self) -> str:
    return f"<ImageSource {self.description}>"

  def _check_rows(self, rows) -> np.ndarray:
    rows = np.asarray(rows, np.int64).reshape(-1)
    if not rows.size or rows.min() < 0 or rows.max() >= len(self):
      raise ValueError(f"`rows` must be a non-empty list of indices in [0, {len(self)}); got "
                       f"{rows.tolist()[:8]}.")
    return rows



class ImageRows:
  """Row i of an `ImageSource` as one (H, W, 3) uint8 image, read on demand.

  For pictures of a few chosen rows (the report's sample grids) without
  holding a set's pixels in memory: `rows[i]` reads image i only.
  """

  def __init__(self, source: ImageSource):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i) -> np.ndarray:
    image = np.asarray(self.source.read_rows([int(i)])[0])
    if image.dtype != np.uint8:   # float on the 0..255 scale
      image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return image

def _layout(shape, label: str) -> str:
  """'nhw', 'nhwc' or 'nchw' by the module docstring's rule."""
  if len(shape) in (3, 4) and min(shape) >= 1:
    if len(shape) == 3:
      return "nhw"
    if shape[-1] in (1, 3):
      return "nhwc"
    if shape[1] in (1, 3):
      return "nchw"
    if 4 in (shape[1], shape[-1]):
      raise ValueError(f"{label}: shape {tuple(shape)} has 4 channels; drop the alpha channel "
                       "(x[..., :3]) first.")
  raise ValueError(f"{label}: images must be (n, H, W, 3), (n, 3, H, W), (n, H, W) or 1-channel, "
                   f"with n >= 1; got shape {tuple(shape)}.")


def _check_value_range(dtype, value_range, label: str) -> Optional[Tuple[float, float]]:
  """The float range to map from, or None for uint8 (already 0..255)."""
  dtype = np.dtype(dtype)
  if value_range is not None:
    try:
      value_range = tuple(float(v) for v in value_range)
    except (TypeError, ValueError):
      pass
    if value_range not in VALUE_RANGES:
      raise ValueError(f"`value_range` must be one of (0, 1), (-1, 1), (0, 255); got "
                       f"{value_range!r}.")
  if dtype == np.uint8:
    if value_range not in (None, (0.0, 255.0)):
      raise ValueError(f"{label}: uint8 images are 0..255; drop `value_range` (got "
                       f"{value_range}) or pass float images.")
    return None
  if not np.issubdtype(dtype, np.floating):
    raise ValueError(f"{label}: images must be uint8 or float; got dtype {dtype} (cast 0..255 "
                     "integers with .astype(np.uint8)).")
  if value_range is None:
    raise ValueError(f"{label}: float images need `value_range`: pass value_range=(0, 1), "
                     "(-1, 1) or (0, 255), the range your images are on.")
  return value_range


def _check_floats(block: np.ndarray, value_range, where: str) -> None:
  """Raises unless `block` is finite and within `value_range` (+- RANGE_TOLERANCE of its width)."""
  lo, hi = value_range
  slack = RANGE_TOLERANCE * (hi - lo)
  if not np.all(np.isfinite(block)):
    raise ValueError(f"{where}: images hold NaN or inf.")
  low, high = float(block.min()), float(block.max())
  if low < lo - slack or high > hi + slack:
    raise ValueError(f"{where}: values span [{low:.4g}, {high:.4g}], outside the stated "
                     f"value_range ({lo:g}, {hi:g}); pass the range the images are on.")


def _map_floats(block: np.ndarray, value_range, where: str) -> np.ndarray:
  """x on `value_range` -> (x - lo) * 255 / (hi - lo) float32, clipped to [0, 255]."""
  _check_floats(block, value_range, where)
  lo, hi = value_range
  pixels = (block.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
  return np.clip(pixels, 0.0, 255.0)


class _ArraySource(ImageSource):
  """An array-like of images: an ndarray, a memmap or a compressed zip member."""

  def __init__(self, data, *, label: str, value_range, stamp, name: Optional[str]):
    self._data, self._label = data, label
    self._stamp = stamp  # None: hash the bytes (an array in memory)
    self._layout = _layout(data.shape, label)
    self._range = _check_value_range(data.dtype, value_range, label)
    h, w = data.shape[2:4] if self._layout == "nchw" else data.shape[1:3]
    self._size = (int(h), int(w))
    self.description = _describe(name, label,
                                 f"{data.shape[0]:,} images {h}x{w} {np.dtype(data.dtype)}")

  def __len__(self) -> int:
    return int(self._data.shape[0])

  def sizes(self) -> np.ndarray:
    return np.tile(np.array(self._size, np.int64), (len(self), 1))

  def fingerprint(self) -> str:
    meta = (tuple(self._data.shape), str(self._data.dtype), self._range)
    if self._stamp is not None:
      return _sha256("file", self._stamp, meta)
    h = hashlib.sha256(_sha256("array", meta).encode())
    step = max(1, _CHUNK_BYTES // max(1, self._data[0].nbytes))
    for start in range(0, len(self), step):
      h.update(np.ascontiguousarray(self._data[start:start + step]).data)
    return h.hexdigest()

  def read_rows(self, rows) -> np.ndarray:
    rows = self._check_rows(rows)  # read as runs of consecutive rows
    runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
    blocks = [self._convert(np.asarray(self._data[r[0]:r[-1] + 1]), r[0]) for r in runs]
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

  def _convert(self, block: np.ndarray, first: int) -> np.ndarray:
    if self._layout == "nchw":
      block = block.transpose(0, 2, 3, 1)
    elif self._layout == "nhw":
      block = block[..., None]
    if block.shape[-1] == 1:
      block = np.repeat(block, 3, axis=-1)
    if self._range is None:
      return block
    return _map_floats(block, self._range, f"{self._label} rows {first}..{first + len(block) - 1}")


class _FolderSource(ImageSource):
  """The image files below a folder, sorted by relative path."""

  def __init__(self, root: str, files: List[str], name: Optional[str]):
    self._root, self._files, self._sizes = root, files, None
    self.description = _describe(name, f"folder {root}", f"{len(files):,} files")

  def __len__(self) -> int:
    return len(self._files)

  def _path(self, i: int) -> str:
    return os.path.join(self._root, self._files[i])

  def fingerprint(self) -> str:
    return _sha256("folder", [(rel,) + _file_stamp(os.path.join(self._root, rel))[1:]
                              for rel in self._files])

  def sizes(self) -> np.ndarray:
    if self._sizes is None:
      sizes = np.zeros((len(self), 2), np.int64)
      for i in range(len(self)):
        try:
          with Image.open(self._path(i)) as im:  # reads the header only
            sizes[i] = im.size[1], im.size[0]
        except _PIL_ERRORS as e:
          raise ValueError(f"cannot read image {self._path(i)}: {e}") from e
      self._sizes = sizes
    return self._sizes

  def _decode(self, i: int) -> np.ndarray:
    try:
      with Image.open(self._path(i)) as im:
        return np.asarray(im.convert("RGB"))
    except _PIL_ERRORS as e:
      raise ValueError(f"cannot decode image {self._path(i)}: {e}") from e

  def read_rows(self, rows) -> np.ndarray:
    rows = self._check_rows(rows).tolist()
    with concurrent.futures.ThreadPoolExecutor(_DECODE_THREADS) as pool:
      images = list(pool.map(self._decode, rows))
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
      raise ValueError(f"rows {rows[:8]} of {self.description} hold images of several sizes "
                       f"{shapes}; read one size at a time (`batches` groups them).")
    return np.stack(images)


def _list_images(root: str) -> List[str]:
  found = [os.path.relpath(os.path.join(folder, f), root)
           for folder, _, files in os.walk(root) for f in files
           if f.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(found, key=lambda p: p.replace(os.sep, "/"))


def _split_npz_key(path: str) -> Tuple[str, Optional[str]]:
  if not os.path.exists(path) and ":" in path:
    head, key = path.rsplit(":", 1)
    if head.lower().endswith(".npz") and os.path.isfile(head):
      return head, key
  return path, None


def open_images(source, *, value_range=None, name: Optional[str] = None) -> ImageSource:
  """Opens a folder, .npz, .npy or array of images (see the module docstring).

  Args:
    source: a folder path; 'x.npz' (array `arr_0`) or 'x.npz:key'; 'x.npy'; an array (n, H, W, 3),
      (n, 3, H, W), (n, H, W) or 1-channel of uint8 or float; or an `ImageSource` (returned as is).
    value_range: the range float images are on: (0, 1), (-1, 1) or (0, 255). Required for
      floats; uint8 needs none.
    name: a label for progress bars and reports.

  Returns:
    An `ImageSource`.

  Raises:
    ValueError: a missing or empty folder, an unreadable file, a missing npz key, a wrong shape
      or dtype, float images without `value_range` or outside it.
  """
  if isinstance(source, ImageSource):
    return source
  if isinstance(source, (str, os.PathLike)):
    path, key = _split_npz_key(os.fspath(source))
    if os.path.isdir(path):
      _check_value_range(np.uint8, value_range, f"folder {path}")
      files = _list_images(path)
      if not files:
        raise ValueError(f"folder {path} holds no images (looked for "
                         f"{', '.join(IMAGE_EXTENSIONS)} in any case, recursively).")
      return _FolderSource(path, files, name)
    if not os.path.isfile(path):
      raise ValueError(f"no such file or folder: {path}.")
    if path.lower().endswith(".npz"):
      key = "arr_0" if key is None else key
      return _ArraySource(npz_stream.open_npz_array(path, key), label=f"npz {path}:{key}",
                          value_range=value_range, stamp=_file_stamp(path) + (key,), name=name)
    if path.lower().endswith(".npy"):
      try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
      except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read {path} as an .npy: {e}") from e
      return _ArraySource(data, label=f"npy {path}", value_range=value_range,
                          stamp=_file_stamp(path), name=name)
    raise ValueError(f"{path}: give a folder of images, an .npz (optionally 'file.npz:key') or "
                     "an .npy file.")
  try:
    array = np.asarray(source)
  except ValueError as e:  # e.g. a list of images of several sizes
    raise ValueError(f"`source` is not one array of images ({e}); save images of several sizes "
                     "to a folder instead.") from e
  result = _ArraySource(array, label="array", value_range=value_range, stamp=None, name=name)
  if result._range is not None:  # an array in memory is checked up front
    _check_floats(array, result._range, "array")
  return result


@dataclasses.dataclass
class Batch:
  """A fixed-size batch of images of one size.

  Attributes:
    pixels: (batch_size, H, W, 3) float32 on 0..255; zeros in padding rows.
    mask: (batch_size,) bool, True for real rows.
    rows: (batch_size,) int64, each row's index in the source; -1 for padding.
  """
  pixels: np.ndarray
  mask: np.ndarray
  rows: np.ndarray


def size_groups(source: ImageSource) -> List[np.ndarray]:
  """The source's row indices grouped by image size, groups in order of their first row."""
  _, first, inverse = np.unique(source.sizes(), axis=0, return_index=True, return_inverse=True)
  inverse = inverse.reshape(-1)
  return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def _make_batch(source: ImageSource, rows: np.ndarray, batch_size: int) -> Batch:
  images = source.read_rows(rows)
  pixels = np.zeros((batch_size,) + images.shape[1:], np.float32)
  pixels[:len(rows)] = images
  padded = np.full(batch_size, -1, np.int64)
  padded[:len(rows)] = rows
  return Batch(pixels=pixels, mask=padded >= 0, rows=padded)


def batches(source: ImageSource, *, batch_size: int, progress: bool = True) -> Iterator[Batch]:
  """Every image of `source` once, in `Batch`es of exactly `batch_size` rows.

  One image size per batch, sizes in order of their first image, rows in source order within a
  size; each size's last batch is padded with zeros and masked (never dropped). The next batch
  is read in a background thread while the caller works on the current one.

  Args:
    source: an `ImageSource` (see `open_images`).
    batch_size: rows per batch (>= 1).
    progress: show a tqdm progress bar (the source's description and a count of images).

  Yields:
    `Batch`es.
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or batch_size < 1:
    raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
  chunks = [rows[i:i + batch_size] for rows in size_groups(source)
            for i in range(0, len(rows), batch_size)]
  with tqdm.tqdm(total=len(source), desc=source.description, unit="img",
                 disable=not progress) as bar, concurrent.futures.ThreadPoolExecutor(1) as reader:
    pending = reader.submit(_make_batch, source, chunks[0], batch_size)
    for k in range(len(chunks)):
      batch = pending.result()
      if k + 1 < len(chunks):
        pending = reader.submit(_make_batch, source, chunks[k + 1], batch_size)
      yield batch
      bar.update(int(batch.mask.sum()))


__all__ = ("Batch", "IMAGE_EXTENSIONS", "ImageSource", "VALUE_RANGES", "batches", "open_images",
           "size_groups")
