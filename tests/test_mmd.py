"""MMD estimators, KID, the witness and the permutation test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendiag.metrics import kid as kid_lib
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import kernels
from tests.conftest import np_sq_distances


def np_gauss(x, y, bw):
  return np.exp(-np_sq_distances(x, y) / (2 * bw ** 2))


def np_poly(x, y):
  x, y = np.float64(x), np.float64(y)
  return (x @ y.T / x.shape[1] + 1) ** 3


def np_mmd2(x, y, gram, estimator):
  kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
  n, m = len(x), len(y)
  if estimator == "biased":
    return kxx.sum() / n**2 + kyy.sum() / m**2 - 2 * kxy.mean()
  if estimator == "unbiased":
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
  h = min(n, m) // 2
  x1, x2, y1, y2 = x[0:2*h:2], x[1:2*h:2], y[0:2*h:2], y[1:2*h:2]
  diag = lambda a, b: np.diag(gram(a, b))  # pylint: disable=g-long-lambda
  return np.mean(diag(x1, x2) + diag(y1, y2) - diag(x1, y2) - diag(x2, y1))


@pytest.fixture
def xy(rng):
  return (rng.normal(size=(41, 5)).astype(np.float32),
          (rng.normal(size=(33, 5)) * 1.2 + 0.4).astype(np.float32))


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear"])
@pytest.mark.parametrize("block_size", [7, 64])
def test_mmd_matches_float64_numpy(xy, estimator, block_size):
  x, y = xy
  k = kernels.Gaussian(bandwidth=1.7)
  got = mmd_lib.mmd(x, y, kernel=k, estimator=estimator, block_size=block_size)
  want = np_mmd2(x, y, lambda a, b: np_gauss(a, b, 1.7), estimator)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_mmd_default_kernel_is_median_gaussian(xy):
  x, y = xy
  bw = float(kernels.median_heuristic(x, y))
  np.testing.assert_allclose(
      mmd_lib.mmd(x, y),
      np_mmd2(x, y, lambda a, b: np_gauss(a, b, bw), "unbiased"), rtol=1e-4)


def test_mmd_jit_matches_eager_and_is_symmetric(xy):
  x, y = xy
  k = kernels.InverseMultiquadric(bandwidth=2.0)
  eager = mmd_lib.mmd(x, y, kernel=k)
  jitted = jax.jit(lambda a, b: mmd_lib.mmd(a, b, kernel=k))(x, y)
  np.testing.assert_allclose(eager, jitted, rtol=1e-6)
  np.testing.assert_allclose(eager, mmd_lib.mmd(y, x, kernel=k), rtol=1e-4)


def test_mmd_vmaps_over_datasets(xy):
  x, y = xy
  k = kernels.Gaussian(bandwidth=1.0)
  ys = jnp.stack([y, y + 1.0])
  batched = jax.vmap(lambda b: mmd_lib.mmd(x, b, kernel=k))(ys)
  np.testing.assert_allclose(batched[1], mmd_lib.mmd(x, y + 1.0, kernel=k),
                             rtol=1e-5)


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear"])
def test_mmd_gradient_matches_finite_differences(xy, estimator):
  x, y = xy
  k = kernels.Gaussian(bandwidth=1.5)
  grad = jax.grad(lambda b: mmd_lib.mmd(x, b, kernel=k, estimator=estimator,
                                        block_size=16))(y)
  assert np.all(np.isfinite(grad))
  y64 = np.float64(y)
  gram = lambda a, b: np_gauss(a, b, 1.5)  # pylint: disable=g-long-lambda
  for i, j in [(0, 0), (5, 3), (32, 4)]:
    plus, minus = y64.copy(), y64.copy()
    plus[i, j] += 1e-4
    minus[i, j] -= 1e-4
    fd = (np_mmd2(x, plus, gram, estimator)
          - np_mmd2(x, minus, gram, estimator)) / 2e-4
    np.testing.assert_allclose(grad[i, j], fd, rtol=1e-3, atol=1e-6)


def test_default_bandwidth_is_a_constant_of_the_gradient(xy):
  """As a loss, mmd(x, y) differentiates at the median bandwidth, held fixed.

  Before the bandwidth's gradient was stopped the two differed by ~30%.
  """
  x, y = xy
  fixed = kernels.Gaussian(kernels.median_heuristic(x, y))
  for loss in (lambda k, b: mmd_lib.mmd(x, b, kernel=k),
               lambda k, b: jnp.sum(mmd_lib.witness(x, b, x[:5], kernel=k))):
    got = jax.grad(lambda b, f=loss: f(None, b))(y)
    want = jax.grad(lambda b, f=loss: f(fixed, b))(y)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


def test_unbiased_mmd_is_unbiased_biased_is_not(rng):
  k = kernels.Gaussian(bandwidth=1.0)
  draw = lambda: np.float32(rng.normal(size=(20, 2)))  # pylint: disable=g-long-lambda
  pairs = [(draw(), draw()) for _ in range(300)]
  unbiased = np.array([mmd_lib.mmd(a, b, kernel=k) for a, b in pairs])
  biased = np.array([mmd_lib.mmd(a, b, kernel=k, estimator="biased")
                     for a, b in pairs])
  se = unbiased.std() / np.sqrt(len(pairs))
  assert abs(unbiased.mean()) < 3 * se
  assert biased.mean() > 10 * se


def test_kid_full_subset_equals_unbiased_poly_mmd(xy):
  x, y = xy
  res = kid_lib.kid(x, y, key=jax.random.key(0), num_subsets=3, subset_size=33)
  # With subset_size = n the generated subset is all of y (any order); the
  # real subset differs per draw, so check one draw against numpy directly.
  assert res.values.shape == (3,)
  res_all = kid_lib.kid(x[:33], y, key=jax.random.key(1), num_subsets=2,
                        subset_size=33)
  want = np_mmd2(x[:33], y, np_poly, "unbiased")
  np.testing.assert_allclose(res_all.values, [want, want], rtol=1e-4)
  np.testing.assert_allclose(res_all.mean, want, rtol=1e-4)
  assert float(res_all.std) < 1e-5 * abs(want) + 1e-7


@pytest.mark.parametrize("subset_size,block_size", [
    (33, 1024),   # one subset in a block: two row panels
    (31, 7),      # five panels of 7, 7, 7, 7, 3 rows (ragged last)
    (2, 1024),    # the smallest subset: two one-row panels
])
def test_kid_symmetric_blocks_match_float64_numpy_per_subset(
    xy, subset_size, block_size):
  # S_XX' and S_YY' come from the upper-triangle panels of K_XX and K_YY;
  # each subset must equal the float64 unbiased MMD^2 of the same rows,
  # rebuilt from the key as kid draws them (split, then choice per side).
  x, y = xy
  key = jax.random.key(5)
  res = kid_lib.kid(x, y, key=key, num_subsets=4, subset_size=subset_size,
                    block_size=block_size)
  want = []
  for subset_key in jax.random.split(key, 4):
    rows_x, rows_y = kid_lib.subset_indices(subset_key, len(x), len(y),
                                            subset_size)
    want.append(np_mmd2(x[np.asarray(rows_x)], y[np.asarray(rows_y)],
                        np_poly, "unbiased"))
  np.testing.assert_allclose(res.values, want, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(res.mean, np.mean(want), rtol=1e-4, atol=1e-6)


def test_symmetric_kernel_sum_matches_the_masked_full_sum(rng):
  # The upper-triangle sum of a symmetric Gram matrix, for one to many
  # panels, against sum_{i != j} K_ij in float64.
  a = np.float32(rng.normal(size=(23, 6)))
  k = kernels.Gaussian(bandwidth=2.0)
  gram = np_gauss(a, a, 2.0)
  want = gram.sum() - np.trace(gram)
  for block_size in (1, 4, 11, 12, 23, 64):
    got = kid_lib.symmetric_kernel_sum(k, jnp.asarray(a),
                                       block_size=block_size)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_kid_statistics_and_reproducibility(xy):
  x, y = xy
  a = kid_lib.kid(x, y, key=jax.random.key(3), num_subsets=20, subset_size=10)
  b = kid_lib.kid(x, y, key=jax.random.key(3), num_subsets=20, subset_size=10)
  np.testing.assert_array_equal(a.values, b.values)
  v = np.asarray(a.values, np.float64)
  np.testing.assert_allclose(a.mean, v.mean(), rtol=1e-5)
  np.testing.assert_allclose(a.std, v.std(), rtol=1e-4)
  np.testing.assert_allclose(a.stderr, v.std(ddof=1) / np.sqrt(20), rtol=1e-4)
  assert a.to_dict()["num_subsets"] == 20


def test_kid_real_sums_shared_by_models_give_each_models_kid(xy, rng):
  """kid_real_sums once, then each model's KID with them: the values of the
  plain calls with the same key (fails if the real subsets differ)."""
  x, y = xy
  key = jax.random.key(4)
  sums = kid_lib.kid_real_sums(x, key=key, num_subsets=12, subset_size=10)
  for other in (y, y[::-1] + 0.3):
    plain = kid_lib.kid(x, other, key=key, num_subsets=12, subset_size=10)
    shared = kid_lib.kid(x, other, key=key, num_subsets=12, subset_size=10,
                         real_sums=sums)
    np.testing.assert_allclose(shared.values, plain.values, rtol=1e-6,
                               atol=1e-9)
  wrong = kid_lib.kid(x, y, key=jax.random.key(5), num_subsets=12,
                      subset_size=10, real_sums=sums)
  assert not np.allclose(wrong.values, kid_lib.kid(
      x, y, key=jax.random.key(5), num_subsets=12, subset_size=10).values)
  with pytest.raises(ValueError, match="real_sums"):
    kid_lib.kid(x, y, key=key, num_subsets=6, subset_size=10, real_sums=sums)


def test_kid_is_unbiased_under_the_null(rng):
  means = []
  for seed in range(200):
    x = np.float32(rng.normal(size=(30, 8)))
    y = np.float32(rng.normal(size=(30, 8)))
    means.append(float(kid_lib.kid(x, y, key=jax.random.key(seed),
                                   num_subsets=5, subset_size=20).mean))
  means = np.array(means)
  assert abs(means.mean()) < 3 * means.std() / np.sqrt(len(means))


def test_witness_matches_numpy_and_integrates_to_mmd(xy):
  x, y = xy
  k = kernels.Gaussian(bandwidth=1.1)
  pts = np.concatenate([x, y])
  f = mmd_lib.witness(x, y, pts, kernel=k, block_size=9)
  want = np_gauss(pts, x, 1.1).mean(1) - np_gauss(pts, y, 1.1).mean(1)
  np.testing.assert_allclose(f, want, rtol=1e-4, atol=1e-6)
  biased = np_mmd2(x, y, lambda a, b: np_gauss(a, b, 1.1), "biased")
  np.testing.assert_allclose(f[:41].mean() - f[41:].mean(), biased, rtol=1e-4)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_permutation_statistics_equal_direct_mmd(xy, estimator):
  x, y = xy
  k = kernels.Gaussian(bandwidth=1.3)
  key = jax.random.key(4)
  res = mmd_lib.mmd_test(x, y, key=key, kernel=k, num_permutations=5,
                         estimator=estimator, block_size=16)
  np.testing.assert_allclose(res.statistic,
                             mmd_lib.mmd(x, y, kernel=k, estimator=estimator),
                             rtol=1e-4, atol=1e-7)
  z = np.concatenate([x, y])
  observed = (np.arange(74) < 41).astype(np.float32)
  for p, perm_key in enumerate(jax.random.split(key, 5)):
    mask = np.asarray(jax.random.permutation(perm_key, observed)) > 0
    want = np_mmd2(z[mask], z[~mask], lambda a, b: np_gauss(a, b, 1.3),
                   estimator)
    np.testing.assert_allclose(res.null_statistics[p], want, rtol=1e-3,
                               atol=1e-6)


def test_mmd_test_detects_shift_and_holds_level(rng):
  k = kernels.Gaussian(bandwidth=1.0)
  x = np.float32(rng.normal(size=(60, 2)))
  shifted = mmd_lib.mmd_test(x, x + 1.0, key=jax.random.key(0), kernel=k,
                             num_permutations=200)
  assert float(shifted.p_value) < 0.01
  # Level: under P = Q the permutation test is exact, so with 99
  # permutations P(p <= 0.05) = 5/100 and the rejections over N = 400
  # independent null pairs are Binomial(400, 0.05) (mean 20, sd 4.4):
  # P(X >= 36) = 5.7e-4 and P(X <= 7) = 6.2e-4 (scipy.stats.binom), so a
  # correct test fails this with probability ~1e-3, while a test rejecting
  # 10% of the time fails it with probability 0.77 (sf(35) of Bin(400, 0.1)).
  seeds = 400
  pooled = jnp.asarray(np.float32(rng.normal(size=(seeds, 80, 2))))
  keys = jax.random.split(jax.random.key(1), seeds)
  p_null = np.asarray(jax.vmap(lambda z, key: mmd_lib.permutation_p_value(
      mmd_lib.permutation_statistics(
          z, k, key, 40, 99, "unbiased", 1024))[2])(pooled, keys))
  for i in range(3):  # the vmapped replicates are mmd_test's p-values
    np.testing.assert_allclose(p_null[i], mmd_lib.mmd_test(
        pooled[i, :40], pooled[i, 40:], key=keys[i], kernel=k,
        num_permutations=99).p_value)
  rejections = int(np.sum(p_null <= 0.05))
  assert 8 <= rejections <= 35, rejections
  assert min(p_null) >= 1 / 100


@pytest.mark.parametrize("call", [
    lambda x, y: mmd_lib.mmd(x[0], y),
    lambda x, y: mmd_lib.mmd(x, y[:, :3]),
    lambda x, y: mmd_lib.mmd(x[:1], y),
    lambda x, y: mmd_lib.mmd(x, y, estimator="quadratic"),
    lambda x, y: kid_lib.kid(x, y, key=jax.random.key(0), subset_size=1000),
    lambda x, y: kid_lib.kid(x, y, key=jax.random.key(0), subset_size=1),
    lambda x, y: mmd_lib.mmd_test(x, y, key=jax.random.key(0),
                                  estimator="linear"),
    lambda x, y: mmd_lib.witness(x, y, x[:, :2]),
])
def test_bad_inputs_raise_value_error(xy, call):
  x, y = xy
  with pytest.raises(ValueError):
    call(x, y)


def test_nan_input_names_the_rows(xy):
  x, y = xy
  x = x.copy()
  x[4, 1] = np.nan
  with pytest.raises(ValueError, match=r"`real` contains NaN or inf in 1 rows"):
    mmd_lib.mmd(x, y)
  with pytest.raises(ValueError, match="generated"):
    kid_lib.kid(y, np.where(np.isnan(x), np.inf, x)[:33],
                key=jax.random.key(0), subset_size=10)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_normalisers_do_not_overflow_at_50k(estimator):
  """n (n - 1) = 2.5e9 > int32 max at n = 50,000 (found by the 50k benchmark)."""
  n = m = 50_000
  pairs = n * (n - 1) if estimator == "unbiased" else n * n
  value = jax.jit(lambda a, b, c: mmd_lib.combine_sums(
      a, b, c, n, m, estimator))(jnp.float32(0.5 * pairs),
                                 jnp.float32(0.5 * pairs),
                                 jnp.float32(0.25 * n * m))
  np.testing.assert_allclose(value, 0.5, rtol=1e-5)
