"""float64 tests of the frontier math: closed forms to 1e-12 and mauve-text.

Each test enables x64 in a `jax.enable_x64(True)` context, so this file can
share a process with float32 tests. mauve-text's histogram-level functions
(`get_divergence_curve_for_multinomials`, `get_fronter_integral`) are private;
the differential tests call them on the same histograms.
"""

import math

import jax
import importlib
import numpy as np
import pytest
import scipy.integrate
from sklearn.metrics import auc

from gendiag.metrics import frontiers
from gendiag.metrics.frontiers import smoothing

mauve_lib = importlib.import_module("mauve.compute_mauve")

P5 = np.array([.6, .3, .1])
Q5 = np.array([.2, .3, .5])


def mauve_text(p, q, c=5.0, m=25):
  """mauve-text 0.4.0's MAUVE and FI of two histograms (compute_mauve's code)."""
  weights = np.linspace(1e-6, 1 - 1e-6, m)
  x, y = mauve_lib.get_divergence_curve_for_multinomials(p, q, weights, c).T
  i, j = np.argsort(x), np.argsort(y)
  area = 0.5 * (auc(x[i], y[i]) + auc(y[j], x[j]))
  return area, mauve_lib.get_fronter_integral(p, q)


def _random_histograms(rng, k, zeros=0):
  p, q = rng.dirichlet(np.ones(k) * 0.7), rng.dirichlet(np.ones(k) * 0.7)
  if zeros:
    p[rng.choice(k, zeros, replace=False)] = 0
    q[rng.choice(k, zeros, replace=False)] = 0
  return p / p.sum(), q / q.sum()


@pytest.mark.parametrize("k,zeros", [(3, 0), (10, 0), (50, 5), (500, 100)])
def test_matches_mauve_text_on_histograms(k, zeros):
  rng = np.random.default_rng(k)
  with jax.enable_x64(True):
    for _ in range(5):
      p, q = _random_histograms(rng, k, zeros)
      for c, m in ((5.0, 25), (1.0, 25), (10.0, 7)):
        res = frontiers.divergence_frontier_from_histograms(
            p, q, scaling_factor=c, num_weights=m)
        want_mauve, want_fi = mauve_text(p, q, c, m)
        np.testing.assert_allclose(float(res.mauve), want_mauve, rtol=0,
                                   atol=1e-9)
        np.testing.assert_allclose(float(res.frontier_integral), want_fi,
                                   rtol=0, atol=1e-9)


def test_matches_mauve_text_kt_smoothed_counts():
  """MAUVE* / FI*: KT-smoothed histograms of counts, as mauve-text builds them."""
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    for _ in range(5):
      cp, cq = rng.integers(0, 6, 40), rng.integers(0, 6, 40)
      p = smoothing.estimate(cp, "krichevsky_trofimov")
      q = smoothing.estimate(cq, "krichevsky_trofimov")
      want = mauve_text((cp + .5) / (cp + .5).sum(), (cq + .5) / (cq + .5).sum())
      np.testing.assert_allclose(float(frontiers.mauve_from_histograms(p, q)),
                                 want[0], atol=1e-12)
      np.testing.assert_allclose(
          float(frontiers.frontier_integral_from_histograms(p, q)), want[1],
          atol=1e-12)


def test_worked_examples_from_the_notes():
  with jax.enable_x64(True):
    res = frontiers.divergence_frontier_from_histograms(P5, Q5)
    np.testing.assert_allclose(float(res.mauve), 0.5789393058069949,
                               atol=1e-12)
    np.testing.assert_allclose(float(res.frontier_integral),
                               0.16923657434530465, atol=1e-12)
    by_c = {1: 0.9646367873390662, 2: 0.883732546453261,
            10: 0.2270455908066894}
    for c, want in by_c.items():
      got = frontiers.mauve_from_histograms(P5, Q5, scaling_factor=c)
      np.testing.assert_allclose(float(got), want, atol=1e-12)
    by_m = {5: 0.5761353086897285, 100: 0.5790102026243665,
            1000: 0.5790145762238685}
    for m, want in by_m.items():
      got = frontiers.mauve_from_histograms(P5, Q5, num_weights=m)
      np.testing.assert_allclose(float(got), want, atol=1e-12)
    half, point = np.array([.5, .5]), np.array([1., 0.])
    np.testing.assert_allclose(
        float(frontiers.frontier_integral_from_histograms(half, point)),
        1 - math.log(2), atol=1e-12)
    np.testing.assert_allclose(
        float(frontiers.mauve_from_histograms(half, point)),
        0.2781137253672402, atol=1e-12)
    kt_p = smoothing.estimate(np.array([6, 3, 1]), "krichevsky_trofimov")
    kt_q = smoothing.estimate(np.array([2, 3, 5]), "krichevsky_trofimov")
    np.testing.assert_allclose(float(frontiers.mauve_from_histograms(
        kt_p, kt_q)), 0.7105688606061585, atol=1e-12)
    np.testing.assert_allclose(float(
        frontiers.frontier_integral_from_histograms(kt_p, kt_q)),
                               0.1250837912875979, atol=1e-12)
    # Merging bins 2 and 3 (data processing).
    merged = frontiers.divergence_frontier_from_histograms(
        np.array([.6, .4]), np.array([.2, .8]))
    np.testing.assert_allclose(float(merged.frontier_integral),
                               0.11589856895161094, atol=1e-12)
    np.testing.assert_allclose(float(merged.mauve), 0.7387706368683639,
                               atol=1e-12)


def test_identical_histograms_float64():
  rng = np.random.default_rng(5)
  with jax.enable_x64(True):
    for k in (1, 3, 50, 500):
      p = rng.dirichlet(np.ones(k))
      res = frontiers.divergence_frontier_from_histograms(p, p)
      np.testing.assert_allclose(float(res.mauve), 1.0, atol=1e-12)
      assert float(res.mauve) <= 1.0
      assert float(res.frontier_integral) == 0.0


def test_disjoint_supports():
  p, q = np.array([.5, .5, 0, 0]), np.array([0, 0, .3, .7])
  with jax.enable_x64(True):
    np.testing.assert_allclose(
        float(frontiers.frontier_integral_from_histograms(p, q)), 1.0,
        atol=1e-12)
    np.testing.assert_allclose(float(frontiers.mauve_from_histograms(p, q)),
                               0.0040720962619612555, atol=1e-12)
    for m in (3, 25, 100):  # c = 1: a straight line, area 1/2 on any grid
      got = frontiers.mauve_from_histograms(p, q, scaling_factor=1.0,
                                            num_weights=m)
      np.testing.assert_allclose(float(got), 0.5, atol=1e-12)
    fine = frontiers.mauve_from_histograms(p, q, num_weights=20001)
    np.testing.assert_allclose(float(fine), 1 / 252, rtol=1e-5)


def test_fi_equals_integral_of_skew_js():
  """FI = 2 int_0^1 [lam KL(P||R) + (1-lam) KL(Q||R)] dlam, by quadrature."""
  rng = np.random.default_rng(3)

  def kl(a, b):
    pos = a > 0
    return float(np.sum(a[pos] * np.log(a[pos] / b[pos])))

  with jax.enable_x64(True):
    for p, q in [(P5, Q5), _random_histograms(rng, 8, 2),
                 (np.array([.5, .5]), np.array([1., 0.]))]:
      def integrand(lam, p=p, q=q):
        r = lam * p + (1 - lam) * q
        return lam * kl(p, r) + (1 - lam) * kl(q, r)

      want = 2 * scipy.integrate.quad(integrand, 0, 1, epsabs=1e-13,
                                      epsrel=1e-12, limit=200)[0]
      got = float(frontiers.frontier_integral_from_histograms(p, q))
      np.testing.assert_allclose(got, want, rtol=1e-8)


def test_frontier_shape_and_endpoints():
  rng = np.random.default_rng(4)
  with jax.enable_x64(True):
    p, q = _random_histograms(rng, 12)
    res = frontiers.divergence_frontier_from_histograms(p, q, num_weights=201)
    kl_g, kl_r = np.asarray(res.kl_generated), np.asarray(res.kl_real)
    assert np.all(np.diff(kl_g) >= -1e-15)
    assert np.all(np.diff(kl_r) <= 1e-15)
    lam = np.asarray(res.weights)
    assert np.all(kl_r <= -np.log(lam) + 1e-12)
    assert np.all(kl_g <= -np.log1p(-lam) + 1e-12)
    kl_pq = np.sum(p * np.log(p / q))
    kl_qp = np.sum(q * np.log(q / p))
    np.testing.assert_allclose([kl_g[0], kl_r[0]], [0, kl_pq], atol=1e-5)
    np.testing.assert_allclose([kl_g[-1], kl_r[-1]], [kl_qp, 0], atol=1e-5)
    # The mixture minimises the weighted sum: excess = KL(R_lam || R) >= 0.
    for lam_i, g, r_ in zip(lam[::40], kl_g[::40], kl_r[::40]):
      other = rng.dirichlet(np.ones(12))
      mix = lam_i * p + (1 - lam_i) * q
      lhs = lam_i * np.sum(p * np.log(p / other)) + (1 - lam_i) * np.sum(
          q * np.log(q / other))
      excess = lhs - (lam_i * r_ + (1 - lam_i) * g)
      np.testing.assert_allclose(excess, np.sum(mix * np.log(mix / other)),
                                 atol=1e-10)
