"""Bootstrap weights, weighted MMD replicates and interval coverage."""

import jax
import numpy as np
import pytest

from gendiag.metrics import frechet
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import intervals
from gendiag.ops import kernels
from tests.conftest import np_sq_distances


def test_resample_weights_are_counts():
  w = np.asarray(intervals.resample_weights(jax.random.key(0), 50, 7))
  assert w.shape == (7, 50)
  np.testing.assert_array_equal(w.sum(1), 50)
  np.testing.assert_array_equal(w, np.round(w))


def test_replicate_equals_u_statistic_over_distinct_original_rows(rng):
  x = np.float32(rng.normal(size=(30, 3)))
  y = np.float32(rng.normal(size=(25, 3)) + 0.5)
  k = kernels.Gaussian(1.2)
  key = jax.random.key(3)
  stats = mmd_lib.bootstrap_statistics(x, y, k, key, 4, "unbiased", 16)
  key_x, key_y = jax.random.split(key)
  w = np.asarray(intervals.resample_weights(key_x, 30, 4))
  v = np.asarray(intervals.resample_weights(key_y, 25, 4))
  gram = lambda a, b: np.exp(-np_sq_distances(a, b) / (2 * 1.2 ** 2))  # pylint: disable=g-long-lambda
  for b in range(4):
    ix = np.repeat(np.arange(30), w[b].astype(int))
    iy = np.repeat(np.arange(25), v[b].astype(int))
    same_x = ix[:, None] == ix[None, :]
    same_y = iy[:, None] == iy[None, :]
    kxx = np.where(same_x, 0.0, gram(x[ix], x[ix]))
    kyy = np.where(same_y, 0.0, gram(y[iy], y[iy]))
    want = (kxx.sum() / (~same_x).sum() + kyy.sum() / (~same_y).sum()
            - 2 * gram(x[ix], y[iy]).mean())
    np.testing.assert_allclose(stats[b + 1], want, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(stats[0], mmd_lib.mmd(x, y, kernel=k), rtol=1e-5)


def _population_mmd2(delta, s, bw, d):
  c = (bw ** 2 / (bw ** 2 + 2 * s ** 2)) ** (d / 2)
  return 2 * c * (1 - np.exp(-np.sum(delta ** 2) / (2 * (bw ** 2 + 2 * s ** 2))))


def test_mmd_interval_covers_population_value(rng):
  d, bw = 2, 1.0
  delta = np.array([0.5, 0.0])
  truth = _population_mmd2(delta, 1.0, bw, d)
  k = kernels.Gaussian(bw)
  covered = 0
  for trial in range(40):
    x = np.float32(rng.normal(size=(120, d)))
    y = np.float32(rng.normal(size=(120, d)) + delta)
    res = mmd_lib.mmd_bootstrap(x, y, key=jax.random.key(trial), kernel=k,
                                num_resamples=200)
    covered += float(res.ci_low) <= truth <= float(res.ci_high)
  assert covered >= 32  # nominal 95%: 38 of 40; >= 80% leaves room for noise


def test_biased_replicates_and_bad_arguments(rng):
  x = np.float32(rng.normal(size=(20, 2)))
  res = mmd_lib.mmd_bootstrap(x, x + 1, key=jax.random.key(0),
                              estimator="biased", num_resamples=10)
  np.testing.assert_allclose(res.statistic,
                             mmd_lib.mmd(x, x + 1, estimator="biased"),
                             rtol=1e-5)
  assert res.ci_low <= res.ci_high
  with pytest.raises(ValueError, match="estimator"):
    mmd_lib.mmd_bootstrap(x, x, key=jax.random.key(0), estimator="linear")
  with pytest.raises(ValueError, match="num_resamples"):
    mmd_lib.mmd_bootstrap(x, x, key=jax.random.key(0), num_resamples=1)
  with pytest.raises(ValueError, match="level"):
    intervals.percentile_interval(np.ones(3), level=1.5)


def test_fid_interval_centres_estimate_with_sampling_spread(rng):
  draws = [float(frechet.fid(np.float32(rng.normal(size=(200, 10))),
                             np.float32(rng.normal(size=(200, 10)) + 0.2)).fid)
           for _ in range(40)]
  x = np.float32(rng.normal(size=(200, 10)))
  y = np.float32(rng.normal(size=(200, 10)) + 0.2)
  res = frechet.fid_bootstrap(x, y, key=jax.random.key(0), num_resamples=100)
  np.testing.assert_allclose(res.fid, frechet.fid(x, y).fid, rtol=1e-6)
  np.testing.assert_allclose((res.ci_low + res.ci_high) / 2, res.fid, rtol=1e-5)
  boot_std = np.std(np.asarray(res.replicates), ddof=1)
  assert 0.5 < boot_std / np.std(draws) < 2.0


def test_fid_weighted_stats_with_unit_weights_equal_plain(rng):
  for n, d in [(10, 20), (40, 5)]:
    x = np.float32(rng.normal(size=(n, d)))
    a = frechet.weighted_stats(x, np.ones(n, np.float32))
    b = frechet.frechet_stats(x)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.factor @ a.factor.T, b.cov, rtol=1e-4,
                               atol=1e-5)
