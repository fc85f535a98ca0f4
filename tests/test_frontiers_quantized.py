"""Tests of gendiag.metrics.frontiers.quantized: MAUVE/FI from features.

Arrays share shapes across tests so k-means compiles a few times only.
"""


import jax
import mauve as mauve_text
import numpy as np
import pytest

from gendiag.metrics import frontiers as fe
from gendiag.metrics import frontiers

N, D = 500, 32


def _gaussians(seed, shift, n=N, d=D):
  rng = np.random.default_rng(seed)
  p = rng.normal(size=(n, d)).astype(np.float32)
  q = (rng.normal(size=(n, d)) + shift).astype(np.float32)
  return p, q


def test_cluster_rules():
  assert fe.num_clusters_for(5000, "n/10") == 500
  assert fe.num_clusters_for(10, "n/10") == 2
  assert fe.num_clusters_for(5000, "cube_root") == round(5 * 5000 ** (1 / 3))
  assert fe.num_clusters_for(1, "cube_root") == 5
  with pytest.raises(ValueError, match="cluster_rule"):
    fe.num_clusters_for(100, "sqrt")


def test_identical_sets_give_exactly_one_and_zero():
  p, _ = _gaussians(0, 0.0)
  res = fe.mauve(p, p, key=jax.random.key(0))
  assert 1.0 - 1e-6 <= float(res.mauve) <= 1.0
  assert float(res.frontier_integral) == 0.0
  assert res.num_clusters == 50 and 0 < res.num_components < D
  np.testing.assert_array_equal(res.real_counts, res.generated_counts)


def test_result_is_consistent_with_its_histograms():
  p, q = _gaussians(1, 0.15)
  res = fe.mauve(p, q, key=jax.random.key(1))
  assert float(res.real_counts.sum()) == N
  assert float(res.generated_counts.sum()) == N
  np.testing.assert_allclose(res.real_histogram, res.real_counts / N)
  want = frontiers.divergence_frontier_from_histograms(
      res.real_histogram, res.generated_histogram)
  np.testing.assert_allclose(res.mauve, want.mauve, atol=1e-6)
  np.testing.assert_allclose(res.frontier_integral, want.frontier_integral,
                             atol=1e-6)
  kt = lambda c: (c + 0.5) / (c + 0.5).sum()
  np.testing.assert_allclose(
      res.mauve_star, frontiers.mauve_from_histograms(
          kt(res.real_counts), kt(res.generated_counts)), atol=1e-6)
  assert bool(res.converged) and int(res.num_iterations) >= 1
  assert res.mauve_ci is None and res.null_mauve is None
  assert set(res.to_dict()) >= {"mauve", "frontier_integral", "null_mauve"}


def test_matches_mauve_text_end_to_end():
  """Within 3 std (or 0.03) of mauve-text's mean over its seeds 25..29."""
  p, q = _gaussians(2, 0.15)
  ref = [mauve_text.compute_mauve(p_features=p, q_features=q, seed=s)
         for s in range(25, 30)]
  ours = [fe.mauve(p, q, key=jax.random.key(s)) for s in range(5)]
  for field, ref_field in (("mauve", "mauve"),
                           ("frontier_integral", "frontier_integral"),
                           ("mauve_star", "mauve_star")):
    r = np.array([getattr(o, ref_field) for o in ref])
    g = np.array([float(getattr(o, field)) for o in ours])
    assert abs(g.mean() - r.mean()) <= max(3 * r.std(ddof=1), 0.03), (
        field, g, r)
  assert ours[0].num_clusters == ref[0].num_buckets


def test_bootstrap_interval_and_null_baseline():
  p, q = _gaussians(3, 0.3)
  res = fe.mauve(p, q, key=jax.random.key(3), num_resamples=50,
                 null_baseline=True)
  for est, ci, std in ((res.mauve, res.mauve_ci, res.mauve_std),
                       (res.frontier_integral, res.frontier_integral_ci,
                        res.frontier_integral_std)):
    lo, hi = np.asarray(ci)
    assert 0.0 <= lo < float(est) < hi <= 1.0
    assert 0.0 < float(std) < 0.2
  # Real against real scores far better than a visible shift.
  assert float(res.null_mauve) > float(res.mauve_ci[1])
  assert float(res.null_frontier_integral) < float(
      res.frontier_integral_ci[0])
  null = fe.null_baseline(p, key=jax.random.key(4))
  assert null.num_clusters == 25 and float(null.mauve) > 0.9


def test_cube_root_rule_lifts_the_same_distribution_floor():
  p, q = _gaussians(5, 0.0)
  tenth = fe.mauve(p, q, key=jax.random.key(5))
  cube = fe.mauve(p, q, key=jax.random.key(5), cluster_rule="cube_root",
                  smoothing="krichevsky_trofimov")
  assert cube.num_clusters == 40 and cube.smoothing == "krichevsky_trofimov"
  np.testing.assert_allclose(cube.mauve, cube.mauve_star, atol=1e-6)
  assert float(cube.mauve) > float(tenth.mauve)
  assert float(cube.frontier_integral) < float(tenth.frontier_integral)


def test_bad_inputs_raise():
  p, q = _gaussians(6, 0.0, n=20, d=4)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="exceeds"):
    fe.mauve(p, q, key=key, num_clusters=41)
  with pytest.raises(ValueError, match="same feature extractor"):
    fe.mauve(p, q[:, :3], key=key)
  bad = p.copy()
  bad[3, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    fe.frontier_integral(bad, q, key=key)
  with pytest.raises(ValueError, match="at least 1"):
    fe.mauve(p[:0], q, key=key)
  with pytest.raises(ValueError, match="2-D"):
    fe.mauve(p[0], q, key=key)
  with pytest.raises(ValueError, match="smoothing"):
    fe.mauve(p, q, key=key, smoothing="add_constant")
  with pytest.raises(ValueError, match="cluster_rule"):
    fe.mauve(p, q, key=key, cluster_rule="n/5")
  with pytest.raises(ValueError, match="num_resamples"):
    fe.mauve(p, q, key=key, num_resamples=1)
  with pytest.raises(ValueError, match="explained_variance"):
    fe.mauve(p, q, key=key, explained_variance=1.5)
  with pytest.raises(ValueError, match="scaling_factor"):
    fe.mauve(p, q, key=key, scaling_factor=0.0)
  with pytest.raises(ValueError, match="num_folds"):
    fe.classifier_frontier(p, q, key=key, num_folds=1)
  with pytest.raises(ValueError, match="already"):
    fe.null_baseline(p, key=key, null_baseline=True)
