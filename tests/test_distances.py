"""Blocked distances, kernel reductions and k-NN against float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendiag.ops import distances

from gendiag.ops import knn

from gendiag.ops import kernels
from tests.conftest import np_sq_distances


@pytest.fixture
def data(rng):
  x = rng.normal(size=(37, 6)).astype(np.float32)
  y = rng.normal(size=(23, 6)).astype(np.float32) + 0.5
  return x, y


def test_sq_distances_matches_numpy(data):
  x, y = data
  np.testing.assert_allclose(distances.sq_distances(x, y),
                             np_sq_distances(x, y), rtol=1e-5, atol=1e-5)


def test_sq_distances_nonnegative_for_identical_points():
  x = np.full((4, 3), 1e3, np.float32)
  assert np.all(np.asarray(distances.sq_distances(x, x)) >= 0)


@pytest.mark.parametrize("block_size", [1, 5, 8, 37, 100])
@pytest.mark.parametrize("exclude_diagonal", [False, True])
def test_kernel_row_sums_any_block_size(data, block_size, exclude_diagonal):
  x, _ = data
  k = kernels.Gaussian(bandwidth=1.5)
  gram = np.exp(-np_sq_distances(x, x) / (2 * 1.5 ** 2))
  if exclude_diagonal:
    np.fill_diagonal(gram, 0.0)
  got = distances.kernel_row_sums(k, x, x, exclude_diagonal=exclude_diagonal,
                                  block_size=block_size)
  np.testing.assert_allclose(got, gram.sum(1), rtol=1e-5)
  total = distances.kernel_sum(k, x, x, exclude_diagonal=exclude_diagonal,
                               block_size=block_size)
  np.testing.assert_allclose(total, gram.sum(), rtol=1e-5)


def test_kernel_row_sums_rectangular(data):
  x, y = data
  k = kernels.Gaussian(bandwidth=2.0)
  gram = np.exp(-np_sq_distances(x, y) / 8.0)
  np.testing.assert_allclose(
      distances.kernel_row_sums(k, x, y, block_size=7), gram.sum(1),
      rtol=1e-5)


def test_exclude_diagonal_needs_square(data):
  x, y = data
  with pytest.raises(ValueError, match="same set"):
    distances.kernel_row_sums(kernels.Gaussian(), x, y, exclude_diagonal=True)


@pytest.mark.parametrize("block_size", [4, 37])
def test_kernel_matvec(data, block_size):
  x, _ = data
  v = np.arange(37 * 3, dtype=np.float32).reshape(37, 3) / 50
  gram = np.exp(-np_sq_distances(x, x) / 2.0)
  np.fill_diagonal(gram, 0.0)
  got = distances.kernel_matvec(kernels.Gaussian(), x, x, v,
                                exclude_diagonal=True, block_size=block_size)
  np.testing.assert_allclose(got, gram @ v, rtol=1e-5)


# 37 rows: block sizes giving 1 block, 2 -> 3 blocks (padding), 5 and 9
# (odd counts, a partial last block) and one row per block.
@pytest.mark.parametrize("block_size", [1, 5, 8, 19, 37, 100])
@pytest.mark.parametrize("exclude_diagonal", [False, True])
@pytest.mark.parametrize("columns", [None, 3])
def test_gram_matvec_uses_symmetry_with_the_full_products_result(
    data, block_size, exclude_diagonal, columns):
  """Half the kernel blocks, transposed products for the other half: K v
  of the whole Gram matrix (fails if a block pair is missed, doubled, or
  padding leaks in), for the polynomial kernel too (k(x, 0) != 0)."""
  x, _ = data
  shape = (37,) if columns is None else (37, columns)
  v = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 50
       - 0.3)
  for kernel, gram in (
      (kernels.Gaussian(bandwidth=1.5),
       np.exp(-np_sq_distances(x, x) / (2 * 1.5 ** 2))),
      (kernels.Polynomial(drop_constant=False),
       (x.astype(np.float64) @ x.T / 6 + 1) ** 3)):
    if exclude_diagonal:
      np.fill_diagonal(gram, 0.0)
    got = distances.gram_matvec(kernel, x, v, exclude_diagonal=exclude_diagonal,
                                block_size=block_size)
    assert got.shape == shape
    np.testing.assert_allclose(got, gram @ v, rtol=2e-5, atol=2e-5)


def test_map_row_blocks_jit_matches_eager(data):
  x, _ = data
  fn = lambda b, start: jnp.sum(b, axis=1) + start  # pylint: disable=g-long-lambda
  eager = distances.map_row_blocks(fn, x, block_size=10)
  jitted = jax.jit(lambda a: distances.map_row_blocks(fn, a, block_size=10))(x)
  np.testing.assert_allclose(eager, jitted)
  expected = x.sum(1) + (np.arange(37) // 10) * 10
  np.testing.assert_allclose(eager, expected, rtol=1e-5)


@pytest.mark.parametrize("block_size,col_block_size", [(5, 7), (64, 3),
                                                       (37, 23), (8, 100)])
def test_knn_matches_brute_force(data, block_size, col_block_size):
  x, y = data
  dist, idx = knn.knn(x, y, k=4, block_size=block_size,
                      col_block_size=col_block_size)
  d2 = np_sq_distances(x, y)
  order = np.argsort(d2, axis=1, kind="stable")[:, :4]
  np.testing.assert_array_equal(idx, order)
  np.testing.assert_allclose(dist, np.sqrt(np.take_along_axis(d2, order, 1)),
                             rtol=1e-4, atol=1e-5)


def test_knn_exclude_self_and_radii(data):
  x, _ = data
  d2 = np_sq_distances(x, x)
  np.fill_diagonal(d2, np.inf)
  expected = np.sqrt(np.sort(d2, axis=1))
  radii = knn.knn_radii(x, [1, 3, 5], block_size=6, col_block_size=9)
  np.testing.assert_allclose(radii, expected[:, [0, 2, 4]], rtol=1e-4)
  _, idx = knn.knn(x, x, k=3, exclude_self=True, block_size=10)
  assert not np.any(np.asarray(idx) == np.arange(37)[:, None])


def test_knn_radii_counts_duplicates_at_zero():
  x = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], np.float32)
  radii = knn.knn_radii(x, [1, 2])
  np.testing.assert_allclose(radii, [[0, 5], [0, 5], [5, 5]], atol=1e-6)


def test_knn_radii_rejects_bad_k(data):
  x, _ = data
  with pytest.raises(ValueError, match=r"\[1, n - 1\]"):
    knn.knn_radii(x, [37])


def test_nearest_neighbor(data):
  x, y = data
  dist, idx = knn.nearest_neighbor(y, x, block_size=4)
  d2 = np_sq_distances(y, x)
  np.testing.assert_array_equal(idx, d2.argmin(1))
  np.testing.assert_allclose(dist, np.sqrt(d2.min(1)), rtol=1e-4)


def _temp_bytes(fn, *args):
  stats = jax.jit(fn).lower(*args).compile().memory_analysis()
  if stats is None:
    pytest.skip("backend reports no memory analysis")
  return stats.temp_size_in_bytes


@pytest.mark.parametrize("op", ["knn", "row_sums"])
def test_compiled_temporaries_scale_with_block_not_n_times_m(op):
  """XLA's own memory analysis: temporaries ~ block x m, not n x m."""
  n = m = 4096
  x, y = jnp.zeros((n, 16)), jnp.zeros((m, 16))

  def run(block):
    if op == "knn":
      return lambda a, b: knn.knn(a, b, k=5, block_size=block,
                                  col_block_size=block)
    return lambda a, b: distances.kernel_row_sums(
        kernels.Gaussian(), a, b, exclude_diagonal=True, block_size=block)

  blocked = _temp_bytes(run(256), x, y)
  whole = _temp_bytes(run(n), x, y)
  assert whole >= n * m * 4 // 2  # the check can tell one block from many
  assert blocked <= 2 * 256 * m * 4


@pytest.mark.parametrize("n,block_size,ks", [
    (37, 8, (1, 3, 5)),   # 5 blocks (odd), padded
    (40, 10, (3,)),       # 4 blocks made 5
    (8, 4, (4,)),         # 2 blocks kept even (k > 8/3): offset-H pairs once
    (16, 4, (4,)),        # 4 blocks made 5
    (10, 4, (5,)),        # k > block: the plain pass
    (100, 1024, (3, 5)),  # one block
])
def test_symmetric_radii_match_float64_at_every_block_layout(n, block_size,
                                                             ks):
  rng = np.random.default_rng(n)
  x = np.float32(rng.normal(size=(n, 6)))
  x[5] = x[7]  # a duplicate: radius 0 for k = 1
  d = np.sqrt(np_sq_distances(x.astype(np.float64), x.astype(np.float64)))
  np.fill_diagonal(d, np.inf)
  want = np.sort(d, axis=1)[:, [k - 1 for k in ks]]
  got = knn.knn_radii(x, ks, block_size=block_size)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
