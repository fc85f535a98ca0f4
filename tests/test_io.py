"""Feature loading, validation, named paths, saved FID statistics and the
ADM evaluator's reference batches."""

import numpy as np
import pytest
import scipy.linalg

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


def _relu_features(rng, n, d, shift=0.0):
  """Non-negative, correlated "Inception-like" features (a ReLU'd projection)."""
  z = rng.normal(size=(n, d // 2)) @ rng.normal(size=(d // 2, d)) / np.sqrt(d)
  return np.float32(np.maximum(z + 0.3 + shift, 0.0) + rng.uniform(size=(n, d)))


def _adm_frechet_distance(mu1, sigma1, mu2, sigma2):
  """The ADM evaluator's formula in float64 (scipy sqrtm, real part)."""
  diff = np.float64(mu1) - np.float64(mu2)
  covmean = scipy.linalg.sqrtm(np.float64(sigma1) @ np.float64(sigma2)).real
  return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(
      covmean)


def test_adm_reference_written_and_read_back_gives_the_same_fid_and_sfid(
    tmp_path, rng):
  pool3, spatial = _relu_features(rng, 300, 24), _relu_features(rng, 300, 14)
  gen_pool3 = _relu_features(rng, 200, 24, shift=0.2)
  gen_spatial = _relu_features(rng, 200, 14, shift=-0.1)
  images = rng.integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
  path = str(tmp_path / "VIRTUAL_test.npz")
  written = io.save_adm_reference(path, pool3=pool3, spatial=spatial,
                                  images=images, dims=None)
  with np.load(path) as archive:  # the evaluator's statistics, as stored
    assert sorted(archive.files) == ["arr_0", "mu", "mu_s", "sigma",
                                     "sigma_s"]
    assert archive["mu"].dtype == np.float32
    assert archive["sigma"].dtype == np.float64
    np.testing.assert_array_equal(archive["mu"], np.mean(pool3, axis=0))
    np.testing.assert_array_equal(archive["sigma_s"],
                                  np.cov(spatial, rowvar=False))
    np.testing.assert_array_equal(archive["arr_0"], images)
  ref = io.load_adm_reference(path, dims=None)
  assert ref.has_images and ref.num_images == 5
  assert ref.image_shape == (5, 8, 8, 3) == written.image_shape
  frechet_ref = io.frechet_reference(ref, source="VIRTUAL_test.npz")
  for stats, real, gen, mu, sigma in (
      (frechet_ref.features, pool3, gen_pool3, ref.mu, ref.sigma),
      (frechet_ref.spatial, spatial, gen_spatial, ref.mu_s, ref.sigma_s)):
    want = float(frechet.fid(real, gen).fid)
    got = float(frechet.fid_from_stats(stats, frechet.frechet_stats(gen)).fid)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    adm = _adm_frechet_distance(mu, sigma, np.mean(gen, axis=0),
                                np.cov(gen, rowvar=False))
    np.testing.assert_allclose(got, adm, rtol=1e-5)
    assert want > 1.0  # the sets differ: not a trivial zero
  loaded = io.load_reference(path)
  assert loaded.source == "VIRTUAL_test.npz" and loaded.spatial is not None
  np.testing.assert_allclose(loaded.spatial.mean, ref.mu_s)


def test_load_adm_reference_never_reads_the_images(tmp_path, rng,
                                                   monkeypatch):
  path = str(tmp_path / "ref.npz")
  io.save_adm_reference(path, pool3=_relu_features(rng, 20, 6),
                        spatial=_relu_features(rng, 20, 4),
                        images=np.zeros((7, 4, 4, 3), np.uint8), dims=None)
  read = []
  original = np.lib.npyio.NpzFile.__getitem__

  def spy(self, key):
    read.append(key)
    return original(self, key)

  monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
  ref = io.load_adm_reference(path, dims=None)
  assert ref.num_images == 7 and sorted(read) == sorted(io.ADM_KEYS)


def test_adm_reference_at_the_evaluator_dimensions(tmp_path, rng):
  path = str(tmp_path / "ref.npz")
  io.save_adm_reference(path, pool3=_relu_features(rng, 6, 2048),
                        spatial=_relu_features(rng, 6, 2023))
  ref = io.load_adm_reference(path)  # default dims: (2048, 2023)
  assert ref.mu.shape == (2048,) and ref.sigma_s.shape == (2023, 2023)
  assert not ref.has_images and ref.image_shape is None
  with pytest.raises(ValueError, match="has 2048"):
    io.save_adm_reference(str(tmp_path / "b.npz"),
                          pool3=np.ones((4, 64)), spatial=np.ones((4, 2023)))


def _write(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


@pytest.mark.parametrize("arrays,match", [
    (dict(arr_0=np.zeros((2, 4, 4, 3), np.uint8)), "lacks"),
    (dict(mu=np.zeros(3), sigma=np.eye(3), mu_s=np.zeros(2)), "sigma_s"),
    (dict(mu=np.zeros(3), sigma=np.eye(4), mu_s=np.zeros(2),
          sigma_s=np.eye(2)), "shape"),
    (dict(mu=np.zeros(3), sigma=np.eye(3), mu_s=np.zeros((2, 1)),
          sigma_s=np.eye(2)), "shape"),
    (dict(mu=np.full(3, np.nan), sigma=np.eye(3), mu_s=np.zeros(2),
          sigma_s=np.eye(2)), "NaN"),
])
def test_bad_adm_references_raise(tmp_path, arrays, match):
  path = _write(tmp_path / "ref.npz", **arrays)
  with pytest.raises(ValueError, match=match):
    io.load_adm_reference(path, dims=None)


def test_adm_reference_checks_dims_files_and_images(tmp_path, rng):
  small = _write(tmp_path / "small.npz", mu=np.zeros(3), sigma=np.eye(3),
                 mu_s=np.zeros(2), sigma_s=np.eye(2))
  with pytest.raises(ValueError, match="ADM reference batch has 2048"):
    io.load_adm_reference(small)
  np.save(tmp_path / "x.npy", np.zeros(3))
  with pytest.raises(ValueError, match="not an .npz"):
    io.load_adm_reference(str(tmp_path / "x.npy"))
  with pytest.raises(ValueError, match="no such file"):
    io.load_adm_reference(str(tmp_path / "nope.npz"))
  x = _relu_features(rng, 10, 4)
  with pytest.raises(ValueError, match="uint8"):
    io.save_adm_reference(str(tmp_path / "r.npz"), pool3=x, spatial=x,
                          images=np.zeros((2, 4, 4, 3)), dims=None)
  with pytest.raises(ValueError, match="same images"):
    io.save_adm_reference(str(tmp_path / "r.npz"), pool3=x, spatial=x[:5],
                          dims=None)
  with pytest.raises(ValueError, match="npz"):
    io.save_adm_reference(str(tmp_path / "r"), pool3=x, spatial=x, dims=None)


def test_negative_spatial_mean_is_logged(tmp_path, caplog):
  path = _write(tmp_path / "neg.npz", mu=np.zeros(3), sigma=np.eye(3),
                mu_s=np.array([-1.0, 0.5]), sigma_s=np.eye(2))
  with caplog.at_level("WARNING"):
    io.load_adm_reference(path, dims=None)
  assert "post-ReLU" in caplog.text


def test_load_reference_reads_fid_statistics_without_spatial(tmp_path, rng):
  x = _relu_features(rng, 40, 5)
  io.save_frechet_stats(str(tmp_path / "s.npz"), frechet.frechet_stats(x))
  ref = io.load_reference(str(tmp_path / "s.npz"))
  assert ref.spatial is None and int(ref.features.n) == 40


@pytest.mark.slow  # 2-3 min on 2 cores: d x d SVDs at d = 2048 and 2023
def test_adm_reference_round_trip_at_the_evaluator_dimensions(tmp_path, rng):
  """n = 2200 > d: full-rank covariances, as in ADM's 50k-sample batches.

  Measured here: FID 498.03 and sFID 490.79 agree to 1.2e-7 and 5.0e-7.
  """
  real = _relu_features(rng, 2200, 2048), _relu_features(rng, 2200, 2023)
  gen = (_relu_features(rng, 2100, 2048, shift=0.1),
         _relu_features(rng, 2100, 2023, shift=0.1))
  path = str(tmp_path / "VIRTUAL_full.npz")
  io.save_adm_reference(path, pool3=real[0], spatial=real[1])
  ref = io.frechet_reference(io.load_adm_reference(path))
  for stats, r, g in zip((ref.features, ref.spatial), real, gen):
    gen_stats = frechet.frechet_stats(g)
    want = float(frechet.fid_from_stats(frechet.frechet_stats(r),
                                        gen_stats).fid)
    got = float(frechet.fid_from_stats(stats, gen_stats).fid)
    np.testing.assert_allclose(got, want, rtol=1e-5)
