"""PCA and k-means against scikit-learn, invariants and edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import cluster
from sklearn import decomposition
from sklearn import metrics as skmetrics

from gendiag.ops import quantize


@pytest.fixture
def blobs(rng):
  centres = rng.normal(size=(5, 8)) * 10
  labels = np.repeat(np.arange(5), 60)
  x = centres[labels] + rng.normal(size=(300, 8))
  return np.float32(x), labels


def test_pca_matches_sklearn(rng):
  x = np.float32(rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)))
  pca = quantize.pca_fit(x)
  ref = decomposition.PCA().fit(np.float64(x))
  np.testing.assert_allclose(pca.explained_variance_ratio,
                             ref.explained_variance_ratio_, rtol=1e-4,
                             atol=1e-6)
  ours = np.asarray(quantize.pca_transform(pca, x))
  theirs = ref.transform(np.float64(x))
  np.testing.assert_allclose(np.abs(ours), np.abs(theirs), rtol=1e-3,
                             atol=1e-3)


def test_pca_explained_variance_rule_is_mauves(rng):
  x = np.float32(rng.normal(size=(300, 10)) * np.arange(1, 11))
  ratio = decomposition.PCA().fit(np.float64(x)).explained_variance_ratio_
  for t in (0.5, 0.9, 0.99):
    want = int(np.argmax(np.cumsum(ratio) >= t)) + 1
    assert quantize.pca_fit(x, explained_variance=t).components.shape[1] == want
  assert quantize.pca_fit(x, num_components=3).components.shape == (10, 3)
  with pytest.raises(ValueError, match="not both"):
    quantize.pca_fit(x, num_components=2, explained_variance=0.5)
  with pytest.raises(ValueError, match="exceeds"):
    quantize.pca_fit(x, num_components=11)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_kmeans_recovers_separated_blobs(blobs, init):
  x, labels = blobs
  # Random init gets stuck in local optima more often: it needs more runs.
  fit = quantize.kmeans(x, key=jax.random.key(0), num_clusters=5,
                        num_restarts=4 if init == "k-means++" else 12,
                        init=init)
  assert skmetrics.adjusted_rand_score(labels, np.asarray(fit.labels)) == 1.0
  assert bool(fit.converged)
  ref = cluster.KMeans(5, n_init=10, random_state=0).fit(np.float64(x))
  np.testing.assert_allclose(fit.inertia, ref.inertia_, rtol=1e-3)
  assign_labels, sq = quantize.assign(x, fit.centroids, block_size=64)
  np.testing.assert_array_equal(assign_labels, fit.labels)
  np.testing.assert_allclose(np.sum(sq), fit.inertia, rtol=1e-5)


def test_kmeans_inertia_close_to_sklearn_on_overlapping_data(rng):
  x = np.float32(rng.normal(size=(500, 4)))
  fit = quantize.kmeans(x, key=jax.random.key(1), num_clusters=8,
                        num_restarts=5)
  ref = cluster.KMeans(8, n_init=5, random_state=0).fit(np.float64(x))
  assert float(fit.inertia) <= 1.03 * ref.inertia_


def test_restarts_keep_the_best_and_are_deterministic(blobs):
  x, _ = blobs
  singles = [float(quantize.kmeans(x, key=jax.random.key(7), num_clusters=9,
                                   num_restarts=r).inertia) for r in (1, 6)]
  assert singles[1] <= singles[0]
  a = quantize.kmeans(x, key=jax.random.key(3), num_clusters=9)
  b = quantize.kmeans(x, key=jax.random.key(3), num_clusters=9)
  np.testing.assert_array_equal(a.labels, b.labels)


def test_empty_clusters_are_reseeded():
  # Three distinct points, each repeated: random init often picks duplicates,
  # whose empty clusters must be moved to the far points.
  x = np.float32(np.repeat([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], 20, axis=0))
  for seed in range(5):
    fit = quantize.kmeans(x, key=jax.random.key(seed), num_clusters=3,
                          init="random")
    assert float(fit.inertia) == pytest.approx(0.0, abs=1e-6)
    assert len(np.unique(np.asarray(fit.labels))) == 3


def test_max_iters_reports_non_convergence(rng):
  x = np.float32(rng.normal(size=(400, 3)))
  fit = quantize.kmeans(x, key=jax.random.key(0), num_clusters=20,
                        max_iters=1, tol=0.0)
  assert int(fit.num_iterations) == 1 and not bool(fit.converged)


def test_cluster_histograms(blobs):
  x, _ = blobs
  p, q = quantize.cluster_histograms(x[::2], x[1::2], key=jax.random.key(0),
                                     num_clusters=5)
  np.testing.assert_allclose([np.sum(p), np.sum(q)], 1.0, rtol=1e-6)
  np.testing.assert_allclose(p, q, atol=0.05)
  p, q = quantize.cluster_histograms(x[:120], x[180:], key=jax.random.key(0),
                                     num_clusters=5)
  assert np.sum(np.minimum(p, q)) == pytest.approx(0.0)  # disjoint blobs


def test_bad_inputs(blobs):
  x, _ = blobs
  with pytest.raises(ValueError, match="at least 400"):
    quantize.kmeans(x, key=jax.random.key(0), num_clusters=400)
  with pytest.raises(ValueError, match="init"):
    quantize.kmeans(x, key=jax.random.key(0), num_clusters=3, init="forgy")
  with pytest.raises(ValueError, match="num_clusters"):
    quantize.kmeans(x, key=jax.random.key(0), num_clusters=0)
  with pytest.raises(ValueError, match="same feature"):
    quantize.cluster_histograms(x, x[:, :3], key=jax.random.key(0),
                                num_clusters=3)


def test_few_cluster_shortcut_equals_the_blocked_search_and_scatter(
    rng, monkeypatch):
  """k <= FEW_CLUSTERS (matmul + argmin, one-hot sums) against the knn
  search and segment_sum path, forced by lowering the threshold."""
  x = np.float32(rng.normal(size=(3000, 16)))
  centroids = x[:10]
  fast_labels, fast_sq = quantize.assign(x, centroids, block_size=512)
  fast_fit = quantize.kmeans(x, key=jax.random.key(3), num_clusters=10,
                             num_restarts=2)
  monkeypatch.setattr(quantize, "FEW_CLUSTERS", 0)
  jax.clear_caches()   # the threshold is read at trace time
  slow_labels, slow_sq = quantize.assign(x, centroids, block_size=512)
  slow_fit = quantize.kmeans(x, key=jax.random.key(3), num_clusters=10,
                             num_restarts=2)
  np.testing.assert_array_equal(fast_labels, slow_labels)
  np.testing.assert_allclose(fast_sq, slow_sq, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(fast_fit.labels, slow_fit.labels)
  np.testing.assert_allclose(fast_fit.centroids, slow_fit.centroids,
                             rtol=1e-5, atol=1e-5)
  jax.clear_caches()


def test_plus_plus_distances_by_matvec_match_differences_and_never_repick(rng):
  """The k-means++ D^2 as |x|^2 - 2 x.p + |p|^2: float64 differences' values,
  0 at the picked row, so with k = n every row is drawn exactly once."""
  x = np.float32(rng.normal(size=(40, 7)) + 3.0)
  x_sq = jnp.sum(jnp.asarray(x) ** 2, axis=1)
  got = np.asarray(quantize._sq_dist_to(jnp.asarray(x), x_sq, 5))
  want = ((x.astype(np.float64) - x[5].astype(np.float64)) ** 2).sum(1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert got[5] == 0.0
  cents = np.asarray(quantize._init_plus_plus(jax.random.key(1),
                                              jnp.asarray(x), 40))
  rows = [int(np.flatnonzero((x == c).all(1))[0]) for c in cents]
  assert sorted(rows) == list(range(40))


def test_plus_plus_draws_follow_d_squared():
  """The inverse-CDF draw: given the first centre, the second is row j with
  probability D(x_j)^2 / sum D^2 (4,000 keys; 5-sigma binomial bounds)."""
  x = jnp.asarray(np.float32([[0.0], [1.0], [2.0], [4.0]]))
  keys = jax.random.split(jax.random.key(7), 4000)
  cents = np.asarray(jax.vmap(
      lambda kk: quantize._init_plus_plus(kk, x, 2))(keys))[:, :, 0]
  for first in range(4):
    second = cents[cents[:, 0] == x[first, 0], 1]
    d2 = (np.asarray(x[:, 0]) - float(x[first, 0])) ** 2
    want = d2 / d2.sum()
    got = np.array([np.mean(second == float(v)) for v in x[:, 0]])
    assert got[first] == 0.0
    bound = 5 * np.sqrt(want * (1 - want) / len(second)) + 1e-9
    np.testing.assert_array_less(np.abs(got - want), bound)


def test_plus_plus_on_coincident_rows_draws_uniformly():
  """All rows equal: D^2 is 0 everywhere, and the draw falls back to a
  uniform row (no NaN from a zero total)."""
  x = jnp.ones((6, 3), jnp.float32)
  cents = np.asarray(quantize._init_plus_plus(jax.random.key(0), x, 4))
  np.testing.assert_array_equal(cents, np.ones((4, 3), np.float32))


def test_restart_seedings_are_vmapped_but_equal_the_single_ones(rng):
  """`_kmeans_best` seeds its restarts in one vmapped pass (they share each
  read of x): restart r's centres equal the unbatched k-means++ with key
  fold_in(key, r)."""
  x = jnp.asarray(np.float32(rng.normal(size=(300, 5))))
  key = jax.random.key(3)
  keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(4))
  batched = jax.jit(jax.vmap(
      lambda kk: quantize._initial_centroids(kk, x, 30, "k-means++")))(keys)
  for r in range(4):
    single = quantize._init_plus_plus(keys[r], x, 30)
    np.testing.assert_array_equal(np.asarray(batched[r]), np.asarray(single))
