"""Feature loading, validation, named paths and saved FID statistics."""

import numpy as np
import pytest

from gendiag import io
from gendiag.metrics import frechet


def test_load_npy_npz_and_key(tmp_path, rng):
  x = rng.normal(size=(10, 3))
  np.save(tmp_path / "a.npy", x)
  np.savez(tmp_path / "b.npz", feats=x)
  np.savez(tmp_path / "c.npz", feats=x, other=x[:2])
  for path in ["a.npy", "b.npz", "c.npz:feats"]:
    got = io.load_features(str(tmp_path / path))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x, rtol=1e-6)


@pytest.mark.parametrize("make,match", [
    (lambda p: np.savez(p / "c.npz", a=np.ones((3, 2)), b=np.ones((3, 2))),
     "name one"),
    (lambda p: np.save(p / "c.npy", np.ones(5)), "2-D"),
    (lambda p: np.save(p / "c.npy", np.full((3, 2), np.nan)), "NaN"),
    (lambda p: np.save(p / "c.npy", np.ones((1, 2))), "at least 2"),
])
def test_bad_files_raise(tmp_path, make, match):
  make(tmp_path)
  path = next(tmp_path.iterdir())
  with pytest.raises(ValueError, match=match):
    io.load_features(str(path))


def test_missing_file_and_key(tmp_path):
  with pytest.raises(ValueError, match="no such file"):
    io.load_features(str(tmp_path / "nope.npy"))
  np.savez(tmp_path / "d.npz", a=np.ones((3, 2)))
  with pytest.raises(ValueError, match="no array 'b'"):
    io.load_features(str(tmp_path / "d.npz") + ":b")


def test_labels(tmp_path):
  np.save(tmp_path / "l.npy", np.array([0, 1, 1]))
  assert io.load_labels(str(tmp_path / "l.npy"), num_rows=3).tolist() == [0, 1, 1]
  with pytest.raises(ValueError, match="shape"):
    io.load_labels(str(tmp_path / "l.npy"), num_rows=4)
  np.save(tmp_path / "f.npy", np.array([0.5, 1, 1]))
  with pytest.raises(ValueError, match="integers"):
    io.load_labels(str(tmp_path / "f.npy"), num_rows=3)


def test_parse_named_paths():
  assert io.parse_named_paths("a=x.npy, b=y.npz:f") == {"a": "x.npy",
                                                       "b": "y.npz:f"}
  assert io.parse_named_paths("") == {}
  with pytest.raises(ValueError, match="NAME=PATH"):
    io.parse_named_paths("x.npy")
  with pytest.raises(ValueError, match="twice"):
    io.parse_named_paths("a=x.npy,a=y.npy")


def test_frechet_stats_roundtrip_and_pytorch_fid_format(tmp_path, rng):
  x = np.float32(rng.normal(size=(50, 8)))
  y = np.float32(rng.normal(size=(40, 8)) + 0.2)
  stats = frechet.frechet_stats(x)
  io.save_frechet_stats(str(tmp_path / "s.npz"), stats)
  loaded = io.load_frechet_stats(str(tmp_path / "s.npz"))
  assert int(loaded.n) == 50
  want = frechet.fid(x, y).fid
  got = frechet.fid_from_stats(loaded, frechet.frechet_stats(y)).fid
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.savez(tmp_path / "pt.npz", mu=np.float64(x.mean(0)),
           sigma=np.cov(np.float64(x), rowvar=False))
  pt = io.load_frechet_stats(str(tmp_path / "pt.npz"))
  np.testing.assert_allclose(
      frechet.fid_from_stats(pt, frechet.frechet_stats(y)).fid, want,
      rtol=1e-4)
