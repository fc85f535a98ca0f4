"""FID against closed forms and a float64 scipy oracle, in float32."""

import numpy as np
import pytest
import scipy.linalg

from gendiag.metrics import frechet


def np_fid(x1, x2):
  x1, x2 = np.float64(x1), np.float64(x2)
  m1, m2 = x1.mean(0), x2.mean(0)
  s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
  root = scipy.linalg.sqrtm(s1 @ s2).real
  return ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)


def inception_like(rng, n, d, rank=32):
  """Non-negative, offset, low-rank-plus-noise features as in notes 3.4."""
  proj = rng.normal(size=(rank, d)) / np.sqrt(rank)
  z = rng.normal(size=(n, rank)) @ proj
  return np.float32(np.maximum(z, 0) + 0.3 + 0.1 * rng.uniform(size=(n, d)))


def test_bures_closed_form_from_moments(rng):
  d = 6
  a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
  s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
  m1, m2 = rng.normal(size=d), rng.normal(size=d)
  root1 = scipy.linalg.sqrtm(s1).real
  bures = np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(root1 @ s2 @ root1).real)
  want = ((m1 - m2) ** 2).sum() + bures
  got = frechet.fid_from_stats(
      frechet.frechet_stats_from_moments(np.float32(m1), np.float32(s1), 100),
      frechet.frechet_stats_from_moments(np.float32(m2), np.float32(s2), 100))
  np.testing.assert_allclose(got.fid, want, rtol=1e-4)


def test_commuting_covariances_closed_form():
  s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
  m1, m2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
  want = 5.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
  got = frechet.fid_from_stats(
      frechet.frechet_stats_from_moments(np.float32(m1), np.float32(np.diag(s1)), 10),
      frechet.frechet_stats_from_moments(np.float32(m2), np.float32(np.diag(s2)), 10))
  np.testing.assert_allclose(got.fid, want, rtol=1e-5)
  np.testing.assert_allclose(got.mean_term, 5.0, rtol=1e-6)


@pytest.mark.parametrize("n,d", [(150, 256), (600, 64), (64, 64)])
def test_float32_fid_matches_float64_scipy(rng, n, d):
  x1 = inception_like(rng, n, d)
  x2 = inception_like(rng, n + 7, d) * 1.05
  want = np_fid(x1, x2)
  got = frechet.fid(x1, x2)
  # n < d is where float32 eigen-based FIDs lose ~1%; the factor route doesn't.
  np.testing.assert_allclose(got.fid, want, rtol=2e-4)
  np.testing.assert_allclose(got.mean_term + got.trace_term, got.fid, rtol=1e-6)


@pytest.mark.parametrize("n,d", [(100, 300), (500, 40)])
def test_fid_of_a_set_with_itself_is_zero(rng, n, d):
  x = inception_like(rng, n, d)
  res = frechet.fid(x, x)
  scale = float(np.trace(np.cov(np.float64(x), rowvar=False)))
  assert abs(float(res.fid)) < 1e-5 * scale


def test_stats_route_equals_direct_and_is_symmetric(rng):
  x1, x2 = inception_like(rng, 200, 50), inception_like(rng, 90, 50) + 0.1
  direct = frechet.fid(x1, x2).fid
  via = frechet.fid_from_stats(frechet.frechet_stats(x1),
                               frechet.frechet_stats(x2)).fid
  np.testing.assert_allclose(direct, via, rtol=1e-6)
  np.testing.assert_allclose(direct, frechet.fid(x2, x1).fid, rtol=1e-5)


def test_fid_rises_with_mean_shift(rng):
  x = inception_like(rng, 300, 20)
  y = inception_like(rng, 300, 20)
  assert float(frechet.fid(x, y + 0.5).fid) > float(frechet.fid(x, y).fid) + 4.0


def test_fid_bad_inputs(rng):
  x = inception_like(rng, 20, 8)
  with pytest.raises(ValueError, match="at least 2"):
    frechet.fid(x[:1], x)
  with pytest.raises(ValueError, match="same feature extractor"):
    frechet.fid(x, x[:, :4])
  with pytest.raises(ValueError, match="2-D"):
    frechet.frechet_stats(x[0])
  with pytest.raises(ValueError, match="same extractor"):
    frechet.fid_from_stats(frechet.frechet_stats(x),
                           frechet.frechet_stats(x[:, :4]))
