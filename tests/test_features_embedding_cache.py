"""The on-disk embedding cache: keys, round trips, corrupt entries, atomic writes."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

from gendiag.features import embedding_cache as ec

FIELDS = dict(extractor="inception_fid", weights_sha256="7ff4a85c" * 8, preprocessing="adm")


@pytest.fixture
def arrays():
  rng = np.random.default_rng(0)
  return {"pool3": rng.random((5, 2048), dtype=np.float32),
          "spatial": rng.random((5, 2023)).astype(np.float64),
          "rows": np.arange(5), "mask": np.array([1, 1, 0, 1, 0], bool)}


def _key(fingerprint="fp", **kw):
  return ec.cache_key(fingerprint, **{**FIELDS, **kw})


def test_round_trip_keeps_values_dtypes_and_metadata(tmp_path, arrays):
  key = _key()
  path = ec.save(str(tmp_path), key, arrays, {"n": 5, "extractor": "inception_fid"})
  assert path == str(tmp_path / f"{key}.npz") and os.listdir(tmp_path) == [f"{key}.npz"]
  got = ec.load(str(tmp_path), key)
  assert sorted(got) == sorted(arrays)
  for name, array in arrays.items():
    assert got[name].dtype == array.dtype
    np.testing.assert_array_equal(got[name], array)
  meta = ec.load_metadata(str(tmp_path), key)
  assert meta == {"n": 5, "extractor": "inception_fid", "key": key, "format": ec.FORMAT}
  with np.load(path) as archive:  # metadata is a JSON string array inside the npz
    assert json.loads(str(archive[ec.METADATA_KEY]))["n"] == 5
  ec.save(str(tmp_path), key, {"pool3": arrays["pool3"][:2]}, {"n": 2})  # overwrite
  assert ec.load(str(tmp_path), key)["pool3"].shape == (2, 2048)


def test_absent_or_off_is_none(tmp_path, arrays):
  assert ec.load(str(tmp_path), _key()) is None
  assert ec.load_metadata(str(tmp_path / "never_made"), _key()) is None
  for off in ("", "none", "OFF"):
    assert ec.save(off, _key(), arrays, {}) is None
    assert ec.load(off, _key()) is None
  assert not os.listdir(tmp_path)


def test_default_directory_mirrors_the_compilation_cache(tmp_path, monkeypatch, arrays):
  monkeypatch.delenv(ec.ENV_VAR, raising=False)
  assert ec.default_cache_dir() == os.path.join("~", ".cache", "gendiag", "embeddings")
  monkeypatch.setenv(ec.ENV_VAR, str(tmp_path / "env"))
  assert ec.default_cache_dir() == str(tmp_path / "env")
  path = ec.save(None, _key(), arrays, {})
  assert os.path.dirname(path) == str(tmp_path / "env")
  assert ec.load(None, _key()) is not None
  monkeypatch.setenv(ec.ENV_VAR, "none")
  assert ec.load(None, _key()) is None


def test_key_changes_with_each_field_and_only_then():
  base = _key()
  assert len(base) == 64 and int(base, 16) >= 0
  assert _key() == base
  assert ec.cache_key("fp", extra={}, **FIELDS) == base
  variants = [_key("fp2"), _key(extractor="dinov2"), _key(weights_sha256="0" * 64),
              _key(preprocessing="clean_fid"), _key(extra={"size": 299}),
              _key(extra={"size": 256}), _key(extra={"size": 299, "outputs": ["pool3"]})]
  assert len({base, *variants}) == len(variants) + 1
  assert (_key(extra={"a": 1, "b": [2, 3]}) == _key(extra={"b": [2, 3], "a": 1}))
  for bad in (dict(extractor=""), dict(preprocessing=None), dict(extra={"x": object()}),
              dict(extra={"x": float("nan")})):
    with pytest.raises(ValueError):
      _key(**bad)


def _warns_and_misses(cache_dir, key):
  with pytest.warns(RuntimeWarning, match="corrupt embedding cache entry"):
    assert ec.load(cache_dir, key) is None
  with pytest.warns(RuntimeWarning):
    assert ec.load_metadata(cache_dir, key) is None


def test_corrupt_entries_warn_and_read_as_absent(tmp_path, arrays):
  d, key = str(tmp_path), _key()
  path = ec.save(d, key, arrays, {"n": 5})
  data = open(path, "rb").read()
  with open(path, "wb") as f:  # truncated
    f.write(data[:len(data) // 2])
  _warns_and_misses(d, key)
  with open(path, "wb") as f:  # not a zip at all
    f.write(b"garbage")
  _warns_and_misses(d, key)
  damaged = bytearray(data)  # one flipped byte inside pool3's data: the zip CRC catches it
  with zipfile.ZipFile(io.BytesIO(data)) as zf:
    info = zf.getinfo("pool3.npy")
  damaged[info.header_offset + 30 + len("pool3.npy") + 1000] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(damaged))
  _warns_and_misses(d, key)
  other = _key("another source")  # an entry under another entry's name
  with open(os.path.join(d, f"{other}.npz"), "wb") as f:
    f.write(data)
  _warns_and_misses(d, other)
  ec.save(d, key, arrays, {"n": 5})  # a recomputed entry replaces the corrupt one
  assert ec.load(d, key) is not None


def test_writes_are_atomic(tmp_path, arrays, monkeypatch):
  d, key = str(tmp_path), _key()
  ec.save(d, key, arrays, {"n": 5})
  before = open(os.path.join(d, f"{key}.npz"), "rb").read()

  def savez_then_fail(f, **named):
    f.write(b"PK\x03\x04 half an entry")
    raise KeyboardInterrupt  # even an interrupt leaves no partial file

  monkeypatch.setattr(np, "savez", savez_then_fail)
  with pytest.raises(KeyboardInterrupt):
    ec.save(d, key, {"pool3": np.zeros((1, 3))}, {"n": 1})
  with pytest.raises(KeyboardInterrupt):
    ec.save(d, _key("new"), {"pool3": np.zeros((1, 3))}, {"n": 1})
  assert os.listdir(d) == [f"{key}.npz"]  # no temporary and no new entry left behind
  assert open(os.path.join(d, f"{key}.npz"), "rb").read() == before


def test_bad_arguments_raise_naming_the_fix(tmp_path, arrays):
  d = str(tmp_path)
  with pytest.raises(ValueError, match="`key`"):
    ec.load(d, "../../etc/passwd")
  with pytest.raises(ValueError, match="`key`"):
    ec.save(d, "ABC", arrays, {})
  with pytest.raises(ValueError, match="__metadata__"):
    ec.save(d, _key(), {ec.METADATA_KEY: np.zeros(2)}, {})
  with pytest.raises(ValueError, match="name"):
    ec.save(d, _key(), {"a/b": np.zeros(2)}, {})
  with pytest.raises(ValueError, match="objects"):
    ec.save(d, _key(), {"x": np.array([None, 1])}, {})
  with pytest.raises(ValueError, match="metadata"):
    ec.save(d, _key(), arrays, {"when": object()})
  with pytest.raises(ValueError, match="empty"):
    ec.save(d, _key(), {}, {})
  assert not os.listdir(d)
