"""Covariance and the trace of a matrix square root."""

import numpy as np
import pytest
import scipy.linalg

from gendiag.ops import linalg


def test_covariance_two_pass_accurate_with_large_mean(rng):
  x = (rng.normal(size=(500, 8)) + 1e3).astype(np.float32)
  expected = np.cov(np.float64(x), rowvar=False)
  np.testing.assert_allclose(linalg.covariance(x), expected, rtol=1e-3,
                             atol=1e-4)


@pytest.mark.parametrize("n1,n2,d", [(40, 30, 10), (6, 8, 12), (5, 30, 12)])
def test_trace_sqrt_product_matches_scipy(rng, n1, n2, d):
  x1 = rng.normal(size=(n1, d))
  x2 = rng.normal(size=(n2, d)) * 1.5
  s1 = np.cov(x1, rowvar=False)
  s2 = np.cov(x2, rowvar=False)
  expected = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
  f1 = linalg.covariance_factor(np.float32(x1), np.float32(x1.mean(0)),
                                np.float32(s1))
  f2 = linalg.covariance_factor(np.float32(x2), np.float32(x2.mean(0)),
                                np.float32(s2))
  assert f1.shape == (d, min(n1, d))
  np.testing.assert_allclose(linalg.trace_sqrt_product(f1, f2), expected,
                             rtol=1e-4)


def test_psd_factor_falls_back_for_singular(rng):
  a = rng.normal(size=(6, 3))
  cov = np.float32(a @ a.T)  # rank 3
  f = linalg.psd_factor(cov)
  assert np.all(np.isfinite(f))
  np.testing.assert_allclose(f @ f.T, cov, atol=1e-4)


def test_psd_factor_cholesky_for_full_rank(rng):
  a = rng.normal(size=(6, 6))
  cov = np.float32(a @ a.T + np.eye(6))
  f = np.asarray(linalg.psd_factor(cov))
  np.testing.assert_allclose(f, np.linalg.cholesky(np.float64(cov)), rtol=1e-4,
                             atol=1e-5)
