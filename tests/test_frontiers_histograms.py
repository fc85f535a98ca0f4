"""Tests of gendiag.metrics.frontiers (float32; float64 in *_float64.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendiag.metrics import frontiers

P5 = np.array([.6, .3, .1], np.float32)
Q5 = np.array([.2, .3, .5], np.float32)


def _hist(rng, k):
  return rng.dirichlet(np.ones(k)).astype(np.float32)


# ---------------------------------------------------------------- histograms


def test_identical_histograms():
  rng = np.random.default_rng(0)
  for k in (1, 2, 7, 300):
    p = _hist(rng, k)
    res = frontiers.divergence_frontier_from_histograms(p, p)
    assert 1.0 - 1e-6 <= float(res.mauve) <= 1.0
    assert float(res.frontier_integral) == 0.0
    np.testing.assert_allclose(res.kl_real, 0, atol=1e-6)
    np.testing.assert_allclose(res.kl_generated, 0, atol=1e-6)


def test_symmetry_ranges_and_scaling():
  rng = np.random.default_rng(1)
  for _ in range(10):
    p, q = _hist(rng, 20), _hist(rng, 20)
    pq = frontiers.divergence_frontier_from_histograms(p, q)
    qp = frontiers.divergence_frontier_from_histograms(q, p)
    np.testing.assert_allclose(pq.mauve, qp.mauve, atol=1e-6)
    np.testing.assert_allclose(pq.frontier_integral, qp.frontier_integral,
                               atol=1e-6)
    # Swapping P and Q swaps the coordinates and reverses lam.
    np.testing.assert_allclose(pq.kl_real, qp.kl_generated[::-1], atol=1e-5)
    assert 0 < float(pq.mauve) <= 1 and 0 <= float(pq.frontier_integral) <= 1
    scores = [float(frontiers.mauve_from_histograms(p, q, scaling_factor=c))
              for c in (0.5, 1, 2, 5, 10)]
    assert np.all(np.diff(scores) < 0)


def test_fi_is_independent_of_c_and_lowered_by_merging_bins():
  rng = np.random.default_rng(2)
  for _ in range(10):
    p, q = _hist(rng, 10), _hist(rng, 10)
    fi = float(frontiers.frontier_integral_from_histograms(p, q))
    mv = float(frontiers.mauve_from_histograms(p, q))
    merge = lambda v: np.concatenate([v[:5], [v[5:].sum()]])
    assert float(frontiers.frontier_integral_from_histograms(
        merge(p), merge(q))) <= fi + 1e-6
    assert float(frontiers.mauve_from_histograms(merge(p), merge(q))) >= (
        mv - 1e-6)
    res = frontiers.divergence_frontier_from_histograms(p, q,
                                                        scaling_factor=2.)
    np.testing.assert_allclose(res.frontier_integral, fi, rtol=1e-6)


def test_worked_example_float32():
  res = frontiers.divergence_frontier_from_histograms(P5, Q5)
  assert res.mauve.dtype == jnp.float32
  np.testing.assert_allclose(res.mauve, 0.5789393058069949, atol=2e-6)
  np.testing.assert_allclose(res.frontier_integral, 0.16923657434530465,
                             atol=2e-6)


def test_fi_branches():
  # p = q on some bins, one zero on others, both zero on one.
  p = np.array([.25, .25, .5, 0, 0], np.float32)
  q = np.array([.25, .25, 0, .5, 0], np.float32)
  np.testing.assert_allclose(frontiers.frontier_integral_from_histograms(p, q),
                             0.5, atol=1e-7)
  # Nearly equal bins (the series branch) against the closed form in float64.
  p = np.array([.5 + 1e-3, .5 - 1e-3], np.float32)
  q = np.array([.5, .5], np.float32)
  pd, qd = p.astype(np.float64), q.astype(np.float64)
  want = np.sum((pd + qd) / 2 - pd * qd * np.log(pd / qd) / (pd - qd))
  np.testing.assert_allclose(frontiers.frontier_integral_from_histograms(p, q),
                             want, rtol=1e-3)


def test_jit_and_vmap():
  rng = np.random.default_rng(3)
  ps = np.stack([_hist(rng, 9) for _ in range(4)])
  qs = np.stack([_hist(rng, 9) for _ in range(4)])
  fn = lambda p, q: frontiers.divergence_frontier_from_histograms(p, q)
  eager = [fn(p, q) for p, q in zip(ps, qs)]
  batched = jax.vmap(jax.jit(fn))(ps, qs)
  np.testing.assert_allclose(batched.mauve, [e.mauve for e in eager],
                             rtol=1e-6)
  np.testing.assert_allclose(
      jax.jit(frontiers.frontier_integral_from_histograms)(ps[0], qs[0]),
      frontiers.frontier_integral_from_histograms(ps[0], qs[0]), rtol=1e-6)


def test_histogram_validation():
  with pytest.raises(ValueError, match="same length"):
    frontiers.mauve_from_histograms(P5, P5[:2] / P5[:2].sum())
  with pytest.raises(ValueError, match="normalise"):
    frontiers.frontier_integral_from_histograms(P5, Q5 * 2)
  with pytest.raises(ValueError, match="non-negative"):
    frontiers.mauve_from_histograms(P5, np.array([1.5, -.5, 0.]))
  with pytest.raises(ValueError, match="num_weights"):
    frontiers.mauve_from_histograms(P5, Q5, num_weights=1)
  with pytest.raises(ValueError, match="non-empty"):
    frontiers.mauve_from_histograms(np.zeros(0), np.zeros(0))


def test_ratio_frontier_matches_histograms_on_atoms():
  """Samples of discrete P, Q with exact log ratios reproduce the histogram
  values (the expectations are then exact weighted sums)."""
  p, q = P5.astype(np.float64), Q5.astype(np.float64)
  s = np.log(p / q).astype(np.float32)
  res = frontiers.ratio_frontier(s, s, weights_real=p, weights_generated=q)
  want = frontiers.divergence_frontier_from_histograms(P5, Q5)
  np.testing.assert_allclose(res.frontier_integral, want.frontier_integral,
                             atol=1e-6)
  np.testing.assert_allclose(res.mauve, want.mauve, atol=1e-5)
  np.testing.assert_allclose(res.kl_real, want.kl_real, atol=1e-5)
  np.testing.assert_allclose(res.kl_generated, want.kl_generated, atol=1e-5)
