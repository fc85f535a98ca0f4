"""Sharded vs single-device results; run by test_sharding.py in a subprocess.

It must start with XLA_FLAGS=--xla_force_host_platform_device_count=4, which
only takes effect before JAX initialises, hence the separate process.
"""

import jax
import numpy as np

from gendiag.metrics import fld as fld_lib
from gendiag.metrics import kid as kid_lib
from gendiag.metrics import manifold
from gendiag.metrics import mmd as mmd_lib
from gendiag.metrics import precision_recall
from gendiag.ops import distances
from gendiag.ops import knn
from gendiag.ops import kernels
from gendiag.ops import quantize


def check(mesh):
  rng = np.random.default_rng(0)
  x = np.float32(rng.normal(size=(37, 5)))
  y = np.float32(rng.normal(size=(23, 5)) + 0.3)
  k = kernels.Gaussian(1.3)
  for exclude, a, b in [(False, x, y), (True, x, x)]:
    np.testing.assert_allclose(
        distances.kernel_row_sums(k, a, b, exclude_diagonal=exclude,
                                  block_size=8, mesh=mesh),
        distances.kernel_row_sums(k, a, b, exclude_diagonal=exclude,
                                  block_size=8), rtol=1e-5)
  v = np.float32(rng.normal(size=(37, 3)))
  np.testing.assert_allclose(
      distances.kernel_matvec(k, x, x, v, exclude_diagonal=True, block_size=5,
                              mesh=mesh),
      distances.kernel_matvec(k, x, x, v, exclude_diagonal=True, block_size=5),
      rtol=1e-4, atol=1e-5)
  d1, i1 = knn.knn(x, y, k=4, block_size=8, col_block_size=3, mesh=mesh)
  d0, i0 = knn.knn(x, y, k=4, block_size=8, col_block_size=3)
  np.testing.assert_allclose(d1, d0, rtol=1e-5)
  np.testing.assert_array_equal(i1, i0)
  np.testing.assert_allclose(knn.knn_radii(x, [1, 3], mesh=mesh),
                             knn.knn_radii(x, [1, 3]), rtol=1e-5)
  for estimator in ["biased", "unbiased"]:
    np.testing.assert_allclose(
        mmd_lib.mmd(x, y, kernel=k, estimator=estimator, mesh=mesh),
        mmd_lib.mmd(x, y, kernel=k, estimator=estimator), rtol=1e-5)
  key = jax.random.key(0)
  kid_sharded = kid_lib.kid(x, y, key=key, num_subsets=6, subset_size=10,
                            mesh=mesh)
  kid_local = kid_lib.kid(x, y, key=key, num_subsets=6, subset_size=10)
  np.testing.assert_allclose(kid_sharded.values, kid_local.values, rtol=1e-5)
  shared = kid_lib.kid(x, y, key=key, num_subsets=6, subset_size=10,
                       mesh=mesh, real_sums=kid_lib.kid_real_sums(
                           x, key=key, num_subsets=6, subset_size=10))
  np.testing.assert_allclose(shared.values, kid_local.values, rtol=1e-5)
  t1 = mmd_lib.mmd_test(x, y, key=key, kernel=k, num_permutations=20,
                        mesh=mesh)
  t0 = mmd_lib.mmd_test(x, y, key=key, kernel=k, num_permutations=20)
  np.testing.assert_allclose(t1.null_statistics, t0.null_statistics,
                             rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(
      mmd_lib.witness(x, y, x[:7], kernel=k, mesh=mesh),
      mmd_lib.witness(x, y, x[:7], kernel=k), rtol=1e-5, atol=1e-7)
  with jax.set_mesh(mesh):
    grad = jax.grad(lambda a: mmd_lib.mmd(a, y, kernel=k, mesh=mesh))(x)
  np.testing.assert_allclose(
      grad, jax.grad(lambda a: mmd_lib.mmd(a, y, kernel=k))(x),
      rtol=1e-4, atol=1e-6)


def assert_trees_close(a, b, **tolerances):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **tolerances),
               a, b)


def check_precision_recall(mesh):
  """Radii, memberships, counts, realism and nearest distances, padded rows."""
  rng = np.random.default_rng(1)
  x = np.float32(rng.normal(size=(37, 5)))
  y = np.float32(rng.normal(size=(23, 5)) + 0.3)
  for real, generated in [(x, y), (y, x)]:
    assert_trees_close(
        precision_recall.improved_precision_recall(
            real, generated, k=(3, 5), block_size=8, mesh=mesh),
        precision_recall.improved_precision_recall(
            real, generated, k=(3, 5), block_size=8), rtol=1e-5)
    assert_trees_close(
        precision_recall.prdc(real, generated, k=5, block_size=8, mesh=mesh),
        precision_recall.prdc(real, generated, k=5, block_size=8), rtol=1e-5)
    # The fused pass, with the real radii from a sharded radius pass.
    radii = manifold.manifold_radii(real, k=(3, 5), block_size=8, mesh=mesh)
    assert_trees_close(radii, manifold.manifold_radii(real, k=(3, 5),
                                                      block_size=8),
                       rtol=1e-5)
    want = (precision_recall.improved_precision_recall(
        real, generated, k=3, block_size=8),
            precision_recall.prdc(real, generated, k=5, block_size=8))
    for real_radii in (None, radii):
      assert_trees_close(precision_recall.improved_pr_and_prdc(
          real, generated, real_radii=real_radii, block_size=8, mesh=mesh),
                         want, rtol=1e-5)


def check_kmeans(mesh):
  """k-means++ picks, Lloyd's psums, re-seeding of empty clusters, assign."""
  rng = np.random.default_rng(2)
  x = np.float32(rng.normal(size=(41, 3))
                 + rng.integers(0, 4, size=(41, 1)) * 3.0)
  key = jax.random.key(3)
  r1 = quantize.kmeans(x, key=key, num_clusters=5, num_restarts=2,
                       block_size=8, mesh=mesh)
  r0 = quantize.kmeans(x, key=key, num_clusters=5, num_restarts=2,
                       block_size=8)
  np.testing.assert_allclose(r1.centroids, r0.centroids, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(r1.labels, r0.labels)
  np.testing.assert_allclose(r1.inertia, r0.inertia, rtol=1e-5)
  np.testing.assert_array_equal(r1.num_iterations, r0.num_iterations)
  labels, sq = quantize.assign(x, r0.centroids, block_size=8, mesh=mesh)
  np.testing.assert_array_equal(labels, r0.labels)
  np.testing.assert_allclose(  # |x|^2 ~ 50: the matmul formula's round-off
      sq, quantize.assign(x, r0.centroids, block_size=8)[1], rtol=1e-5,
      atol=1e-4)
  # 9 distinct points in 26 rows, 12 clusters: duplicated initial centres
  # leave clusters empty, which are re-seeded at the farthest points.
  dup = np.repeat(x[:9], 3, axis=0)[:26]
  r1 = quantize.kmeans(dup, key=key, num_clusters=12, init="random",
                       block_size=8, mesh=mesh)
  r0 = quantize.kmeans(dup, key=key, num_clusters=12, init="random",
                       block_size=8)
  np.testing.assert_allclose(r1.centroids, r0.centroids, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(r1.labels, r0.labels)


def check_fld(mesh):
  """Mixture scoring (the blocked log-sum-exp over centres) and FLD."""
  rng = np.random.default_rng(3)
  train = np.float32(rng.normal(size=(30, 4)))
  test = np.float32(rng.normal(size=(21, 4)))
  generated = np.concatenate([train[:5], np.float32(rng.normal(size=(6, 4)))])
  log_var = np.float32(rng.normal(size=(11,)) - 1.0)
  np.testing.assert_allclose(
      fld_lib.mixture_nll(test, generated, log_var, block_size=4, mesh=mesh),
      fld_lib.mixture_nll(test, generated, log_var, block_size=4),
      rtol=1e-5)
  key = jax.random.key(4)
  options = dict(key=key, max_epochs=3, batch_size=16, block_size=8)
  assert_trees_close(fld_lib.fld(train, test, generated, mesh=mesh, **options),
                     fld_lib.fld(train, test, generated, **options),
                     rtol=1e-5, atol=1e-6)


def main():
  assert jax.device_count() == 4, jax.devices()
  explicit = jax.make_mesh((4,), ("data",))  # Explicit axes (jax default)
  auto = jax.sharding.Mesh(np.array(jax.devices()).reshape(2, 2),
                           ("a", "b"))  # Auto axes, two mesh dimensions
  for mesh in (explicit, auto):
    check(mesh)
  check_precision_recall(explicit)
  check_kmeans(auto)
  check_fld(explicit)
  print("sharding checks passed")


if __name__ == "__main__":
  main()
