"""Tests of the classifier (density-ratio) frontier estimator.

Separate from test_frontiers_quantized.py so each file compiles less.
"""

import math

import jax
import numpy as np
import scipy.integrate
import scipy.stats

from gendiag.metrics import frontiers as fe


def _gaussian_fi(delta):
  """FI(N(delta, 1), N(0, 1)) by quadrature (= FI of N(mu, I), N(0, I))."""
  def integrand(t):
    a, b = scipy.stats.norm.pdf(t, delta), scipy.stats.norm.pdf(t)
    if a == b:
      return a
    return (a + b) / 2 - a * b * (math.log(a) - math.log(b)) / (a - b)
  return scipy.integrate.quad(integrand, -12, 12 + delta, limit=200)[0]


def test_gaussian_reference_values():
  np.testing.assert_allclose(_gaussian_fi(math.sqrt(2)), 0.276984, atol=1e-6)
  np.testing.assert_allclose(_gaussian_fi(1.0), 0.151418, atol=1e-6)


def test_classifier_estimator_beats_quantization_on_gaussians():
  """P = N(mu, I), Q = N(0, I), |mu| = sqrt(2): log dP/dQ is linear, so the
  cross-fitted logistic probe recovers FI; quantization cannot."""
  d, n, delta = 8, 1000, math.sqrt(2)
  rng = np.random.default_rng(7)
  mu = np.zeros(d)
  mu[:2] = 1.0
  real = (rng.normal(size=(n, d)) + mu).astype(np.float32)
  gen = rng.normal(size=(n, d)).astype(np.float32)
  truth = _gaussian_fi(delta)
  clf = fe.classifier_frontier(real, gen, key=jax.random.key(0),
                               num_resamples=100)
  quant = fe.frontier_integral(real, gen, key=jax.random.key(0))
  err_clf = abs(float(clf.frontier_integral) - truth)
  err_quant = abs(float(quant.frontier_integral) - truth)
  assert err_clf < 0.04, (float(clf.frontier_integral), truth)
  assert err_clf < err_quant / 2, (err_clf, err_quant)
  lo, hi = np.asarray(clf.frontier_integral_ci)
  assert lo < float(clf.frontier_integral) < hi
  assert lo - 0.02 < truth < hi + 0.02
  assert abs(float(clf.ratio_mean_generated) - 1.0) < 0.2
  assert 0.6 < float(clf.heldout_accuracy) < 0.85
  assert float(np.max(clf.grad_norm)) < 1e-2
  assert clf.log_ratio_real.shape == (n,)
  # The frontier's shape: monotone coordinates, MAUVE in (0, 1).
  assert np.all(np.diff(np.asarray(clf.kl_generated)) >= -1e-6)
  assert np.all(np.diff(np.asarray(clf.kl_real)) <= 1e-6)
  assert 0.0 < float(clf.mauve) < 1.0
