"""Image sources (folders, .npz, .npy, arrays) and the fixed, padded batches."""

import os
import re

import numpy as np
from PIL import Image
import pytest
import sklearn.datasets
from sklearn.datasets import load_sample_images

from gendiag.features import images as im
from gendiag.features import npz_stream


def _rgb(seed, h, w):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


@pytest.fixture
def folder(tmp_path):
  """A nested folder of PNG/JPEG/WebP/BMP files of two sizes, with gray and RGBA.

  Returns (root, {relative path: the RGB array Pillow decodes}).
  """
  root = tmp_path / "imgs"
  (root / "b" / "deep").mkdir(parents=True)
  (root / "a").mkdir()
  want = {}

  def save(rel, array, mode=None, **kw):
    path = root / rel
    Image.fromarray(array, mode).save(path, **kw)
    with Image.open(path) as f:
      want[rel] = np.asarray(f.convert("RGB"))

  save("b/deep/z.png", _rgb(0, 16, 12))
  save("a/y.PNG", _rgb(1, 16, 12))
  save("c.jpg", _rgb(2, 16, 12), quality=90)
  save("a/x.webp", _rgb(3, 9, 7), lossless=True)
  save("b/w.bmp", _rgb(4, 16, 12))
  gray = _rgb(5, 9, 7)[..., 0]
  save("a/gray.png", gray)
  rgba = np.concatenate([_rgb(6, 9, 7), _rgb(7, 9, 7)[..., :1]], axis=-1)
  save("rgba.png", rgba)
  (root / "notes.txt").write_text("not an image")
  np.testing.assert_array_equal(want["a/gray.png"], np.repeat(gray[..., None], 3, -1))
  np.testing.assert_array_equal(want["rgba.png"], rgba[..., :3])
  return str(root), want


def _all_images(source, batch_size=3):
  """{row: image} from batches, checking each row appears exactly once."""
  seen = {}
  for batch in im.batches(source, batch_size=batch_size, progress=False):
    assert batch.pixels.shape[0] == batch_size and batch.pixels.dtype == np.float32
    assert batch.mask.dtype == bool and batch.rows.dtype == np.int64
    np.testing.assert_array_equal(batch.mask, batch.rows >= 0)
    assert not batch.pixels[~batch.mask].any()  # padding is zeros
    for row, pixels in zip(batch.rows[batch.mask], batch.pixels[batch.mask]):
      assert row not in seen
      seen[int(row)] = pixels
  assert sorted(seen) == list(range(len(source)))
  return seen


def test_folder_is_recursive_sorted_and_decoded_by_pillow(folder):
  root, want = folder
  source = im.open_images(root)
  order = sorted(want)
  assert len(source) == len(order) == 7
  assert source.description == f"folder {root}: 7 files"
  got = _all_images(source)
  for row, rel in enumerate(order):
    np.testing.assert_array_equal(got[row], want[rel].astype(np.float32), err_msg=rel)
  assert [x.shape for x in source.read(0, 2)] == [want[r].shape for r in order[:2]]


def test_mixed_sizes_are_batched_one_size_at_a_time(folder):
  root, want = folder
  source = im.open_images(root, name="real")
  sizes = [want[rel].shape[:2] for rel in sorted(want)]
  np.testing.assert_array_equal(source.sizes(), sizes)
  seen_sizes = []
  for batch in im.batches(source, batch_size=3, progress=False):
    rows = batch.rows[batch.mask]
    assert len({sizes[r] for r in rows}) == 1
    assert batch.pixels.shape[1:3] == sizes[rows[0]]
    assert list(rows) == sorted(rows)
    seen_sizes.append(sizes[rows[0]])
  # a/gray.png is first: 3 of 9x7 (one batch), then 4 of 16x12 (a full one and a padded one).
  assert seen_sizes == [(9, 7), (16, 12), (16, 12)]
  _all_images(source)
  assert "real" in source.description
  with pytest.raises(ValueError, match="several sizes"):
    source.read_rows([0, 5])


def test_sklearn_photos_folder(capsys):
  folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
  source = im.open_images(folder)
  assert len(source) == 2  # README.txt and __init__.py are skipped
  got = _all_images(source, batch_size=4)
  for row, image in enumerate(load_sample_images().images):  # china, flower
    np.testing.assert_array_equal(got[row], image)
  list(im.batches(source, batch_size=4, progress=True))
  assert source.description in capsys.readouterr().err


def test_folder_errors_name_the_path(tmp_path, folder):
  with pytest.raises(ValueError, match="holds no images"):
    im.open_images(str(_empty_dir(tmp_path)))
  with pytest.raises(ValueError, match="no such file"):
    im.open_images(str(tmp_path / "missing"))
  root, _ = folder
  bad = os.path.join(root, "a", "broken.png")
  with open(bad, "wb") as f:
    f.write(b"this is not a png")
  with pytest.raises(ValueError, match="broken.png"):
    list(im.batches(im.open_images(root), batch_size=2, progress=False))
  with pytest.raises(ValueError, match="value_range"):
    im.open_images(root, value_range=(0, 1))


def _empty_dir(tmp_path):
  path = tmp_path / "empty"
  (path / "sub").mkdir(parents=True)
  (path / "sub" / "readme.txt").write_text("x")
  return path


def test_truncated_image_names_the_path(folder):
  root, _ = folder
  path = os.path.join(root, "c.jpg")
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(ValueError, match="c.jpg"):
    list(im.batches(im.open_images(root), batch_size=8, progress=False))


@pytest.fixture
def stack():
  return np.random.default_rng(3).integers(0, 256, (11, 6, 5, 3), np.uint8)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_is_streamed_and_equals_np_load(tmp_path, stack, monkeypatch, compressed):
  path = str(tmp_path / "samples.npz")
  save = np.savez_compressed if compressed else np.savez
  save(path, stack, np.arange(11))  # arr_0: images, arr_1: labels (ADM's layout)
  data = npz_stream.open_npz_array(path)
  assert isinstance(data, npz_stream.ZipMemberRows if compressed else np.memmap)
  assert data.shape == stack.shape and data.dtype == np.uint8
  with monkeypatch.context() as m:  # streaming never loads the whole member
    m.setattr(np, "load", None)
    source = im.open_images(path)
    got = _all_images(source, batch_size=4)
    np.testing.assert_array_equal(np.stack([got[i] for i in range(11)]), stack)
    np.testing.assert_array_equal(source.read_rows([7, 8, 2, 3, 10]), stack[[7, 8, 2, 3, 10]])
  assert source.description == f"npz {path}:arr_0: 11 images 6x5 uint8"


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_key_fortran_order_and_floats(tmp_path, stack, compressed):
  path = str(tmp_path / "named.npz")
  save = np.savez_compressed if compressed else np.savez
  floats = stack.transpose(0, 3, 1, 2) / 255.0  # NCHW float on (0, 1)
  save(path, images=np.asfortranarray(stack), nchw=floats)
  np.testing.assert_array_equal(im.open_images(path + ":images").read_rows(range(11)), stack)
  source = im.open_images(path + ":nchw", value_range=(0, 1))
  np.testing.assert_allclose(source.read_rows(range(11)), stack, atol=1e-4)
  with pytest.raises(ValueError, match=r"no array 'arr_0'.*images.*nchw"):
    im.open_images(path)
  with pytest.raises(ValueError, match="value_range"):
    im.open_images(path + ":nchw")


def test_corrupt_npz_is_an_error_naming_the_file(tmp_path, stack):
  for compressed in (False, True):
    path = str(tmp_path / f"s{compressed}.npz")
    (np.savez_compressed if compressed else np.savez)(path, stack)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
      f.write(data[:len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(path)):
      list(im.batches(im.open_images(path), batch_size=4, progress=False))
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="bad.npz"):
    im.open_images(str(bad))


def test_short_compressed_member_and_strided_reads_are_errors(tmp_path, stack):
  path = str(tmp_path / "c.npz")
  np.savez_compressed(path, stack)
  good = npz_stream.open_npz_array(path)
  np.testing.assert_array_equal(good[9:11], stack[9:11])
  np.testing.assert_array_equal(good[2:4], stack[2:4])  # backward: the member starts over
  claims_more = npz_stream.ZipMemberRows(path, "arr_0.npy", (20,) + stack.shape[1:], np.uint8,
                                         good._data_start)
  with pytest.raises(ValueError, match="truncated"):
    claims_more[9:14]
  with pytest.raises(ValueError, match="contiguous"):
    good[::2]


def test_npy_is_memory_mapped(tmp_path, stack):
  path = str(tmp_path / "x.npy")
  np.save(path, stack)
  source = im.open_images(path)
  assert isinstance(source._data, np.memmap)
  np.testing.assert_array_equal(source.read_rows(range(11)), stack)
  np.save(path, stack.astype(np.float32) * 2)  # 0..510: outside (0, 255)
  with pytest.raises(ValueError, match=r"rows 0\.\.3.*outside"):
    list(im.batches(im.open_images(path, value_range=(0, 255)), batch_size=4, progress=False))


def test_array_layouts(stack):
  want = stack.astype(np.float32)
  nchw = stack.transpose(0, 3, 1, 2)
  for array in (stack, nchw):
    np.testing.assert_array_equal(im.open_images(array).read_rows(range(11)), want)
  gray = stack[..., 0]
  rgb = np.repeat(gray[..., None], 3, -1)
  for array in (gray, gray[..., None], gray[:, None]):
    np.testing.assert_array_equal(im.open_images(array).read_rows(range(11)), rgb)
  # (n, 3, H, 3) is NHWC: the last axis decides first.
  odd = np.zeros((2, 3, 4, 3), np.uint8)
  assert im.open_images(odd).sizes().tolist() == [[3, 4], [3, 4]]
  assert im.open_images(stack).description == "array: 11 images 6x5 uint8"
  for bad, match in ((stack[..., :2], "got shape"), (stack[0, ..., 0], "got shape"),
                     (np.zeros((2, 4, 5, 4), np.uint8), "alpha"),
                     (stack.astype(np.int32), "uint8 or float"),
                     (stack[:0], "n >= 1"), ([stack[0], stack[0, :3]], "several sizes")):
    with pytest.raises(ValueError, match=match):
      im.open_images(bad)


def test_float_ranges_map_to_0_255_without_quantisation(stack):
  x = np.random.default_rng(0).random((3, 4, 5, 3))
  for value_range, scaled in (((0, 1), x), ((-1, 1), 2 * x - 1), ((0, 255), 255 * x)):
    got = im.open_images(scaled.astype(np.float32), value_range=value_range).read_rows(range(3))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, 255 * x, atol=1e-4)
  assert np.mean(got != np.round(got)) > 0.9  # not re-quantised
  half = np.full((1, 2, 2, 3), 0.5)
  assert im.open_images(half, value_range=(0, 1)).read_rows([0]).max() == 127.5
  # Within 1e-3 of the range's width: clipped; beyond it: an error.
  edge = np.array([[[[1.0005, -0.0005, 0.3]]]])
  got = im.open_images(edge, value_range=(0, 1)).read_rows([0])
  np.testing.assert_allclose(got[0, 0, 0], [255, 0, 76.5], atol=1e-4)
  for bad, value_range, match in (
      (x, None, "need `value_range`"), (x + 0.01, (0, 1), "outside"),
      (2 * x - 1, (0, 1), "outside"), (x * np.nan, (0, 1), "NaN"), (x, (0, 2), "one of"),
      (stack, (0, 1), "uint8 images are 0..255"), (x, "0-1", "one of")):
    with pytest.raises(ValueError, match=match):
      im.open_images(bad, value_range=value_range)
  assert im.open_images(stack, value_range=(0, 255)).read_rows([0]).dtype == np.uint8


@pytest.mark.parametrize("n,batch_size", [(10, 4), (8, 4), (3, 5), (1, 1)])
def test_last_batch_is_padded_and_masked_never_dropped(n, batch_size):
  x = np.random.default_rng(n).integers(0, 256, (n, 4, 3, 3), np.uint8)
  out = list(im.batches(im.open_images(x), batch_size=batch_size, progress=False))
  assert len(out) == -(-n // batch_size)
  assert all(b.pixels.shape == (batch_size, 4, 3, 3) for b in out)
  assert out[-1].mask.sum() == n - batch_size * (len(out) - 1)
  got = _all_images(im.open_images(x), batch_size)
  np.testing.assert_array_equal(np.stack([got[i] for i in range(n)]), x)
  for bad in (0, -1, 2.0, True):
    with pytest.raises(ValueError, match="batch_size"):
      next(im.batches(im.open_images(x), batch_size=bad))


def test_fingerprints_change_exactly_when_the_images_may_have(folder, tmp_path, stack):
  root, _ = folder
  first = im.open_images(root).fingerprint()
  assert im.open_images(root).fingerprint() == first  # nothing changed
  path = os.path.join(root, "a", "y.PNG")
  st = os.stat(path)
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
  touched = im.open_images(root).fingerprint()
  assert touched != first
  Image.fromarray(_rgb(9, 5, 5)).save(os.path.join(root, "b", "new.png"))
  assert im.open_images(root).fingerprint() not in (first, touched)
  # Files: path, size and mtime (and the key and value range).
  npz = str(tmp_path / "s.npz")
  np.savez(npz, stack, stack)
  fp = im.open_images(npz).fingerprint()
  assert im.open_images(npz).fingerprint() == fp
  assert im.open_images(npz + ":arr_1").fingerprint() != fp
  np.savez(npz, stack[:5], stack)
  assert im.open_images(npz).fingerprint() != fp
  # Arrays: bytes, shape and dtype.
  fp = im.open_images(stack).fingerprint()
  assert im.open_images(stack.copy()).fingerprint() == fp
  changed = stack.copy()
  changed[5, 2, 1, 0] ^= 1
  assert im.open_images(changed).fingerprint() != fp
  assert im.open_images(stack.reshape(11, 5, 6, 3)).fingerprint() != fp
  floats = stack.astype(np.float32)
  assert (im.open_images(floats, value_range=(0, 255)).fingerprint()
          != im.open_images(floats / 255, value_range=(0, 1)).fingerprint())


def test_image_rows_read_one_image_each_as_uint8():
  rng = np.random.default_rng(0)
  pixels = rng.uniform(0, 1, (5, 6, 7, 3)).astype(np.float32)
  rows = im.ImageRows(im.open_images(pixels, value_range=(0, 1)))
  assert len(rows) == 5
  third = rows[np.int64(2)]
  assert third.dtype == np.uint8 and third.shape == (6, 7, 3)
  np.testing.assert_array_equal(third, np.round(pixels[2] * 255.0))
