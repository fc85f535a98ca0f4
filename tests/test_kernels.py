"""Kernels against closed forms, gradients, pytree behaviour, median rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendiag.ops import kernels
from tests.conftest import np_sq_distances


@pytest.fixture
def xy(rng):
  return (rng.normal(size=(9, 4)).astype(np.float32),
          rng.normal(size=(7, 4)).astype(np.float32))


def np_gram(name, x, y):
  d2 = np_sq_distances(x, y)
  if name == "gaussian":
    return np.exp(-d2 / (2 * 1.3 ** 2))
  if name == "imq":
    return (1 + d2 / 1.3 ** 2) ** -0.5
  if name == "laplace":
    return np.exp(-np.sqrt(d2) / 1.3)
  x64, y64 = np.float64(x), np.float64(y)
  return (x64 @ y64.T / x.shape[1] + 1.0) ** 3


def make(name):
  if name == "polynomial":
    return kernels.Polynomial(drop_constant=False)
  return kernels.get_kernel(name, bandwidth=1.3)


@pytest.mark.parametrize("name", ["gaussian", "imq", "laplace", "polynomial"])
def test_gram_matches_numpy(name, xy):
  x, y = xy
  k = make(name)
  np.testing.assert_allclose(k(x, y), np_gram(name, x, y), rtol=2e-5,
                             atol=1e-6)
  np.testing.assert_allclose(k.paired(x[:7], y), np.diag(np_gram(name, x[:7], y)),
                             rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["gaussian", "imq", "laplace"])
def test_radial_kernels_are_one_on_the_diagonal(name, xy):
  x, _ = xy
  # The matmul-formula squared distance of a row to itself is float32
  # round-off, ~eps |x|^2 (a few ulps of the norms, depending on the CPU's
  # matmul summation order); the Laplace kernel's square root turns it into
  # ~sqrt(eps) |x| (module docstring), the others see it unchanged.
  sq_norm = np.sum(x.astype(np.float64) ** 2, axis=1)
  round_off = 8 * np.finfo(np.float32).eps * 2 * sq_norm
  atol = np.sqrt(round_off) if name == "laplace" else round_off + 1e-6
  diag = np.diag(np.asarray(make(name)(x, x), np.float64))
  assert np.all(diag <= 1.0)
  assert np.all(np.abs(diag - 1.0) <= atol), (diag, atol)


def test_polynomial_drop_constant_is_exact_shift(xy):
  x, y = xy
  full = kernels.Polynomial(drop_constant=False, coef0=2.0, degree=4)(x, y)
  dropped = kernels.Polynomial(coef0=2.0, degree=4)(x, y)
  np.testing.assert_allclose(full - dropped, 2.0 ** 4, rtol=1e-5)


@pytest.mark.parametrize("name", ["gaussian", "imq", "laplace", "polynomial"])
def test_gradients_finite_and_match_finite_differences(name, xy):
  x, y = xy
  k = make(name)
  loss = lambda a: jnp.sum(k(a, y) ** 2)  # pylint: disable=g-long-lambda
  grad = jax.grad(loss)(jnp.asarray(x, jnp.float32))
  assert np.all(np.isfinite(grad))
  x64 = np.float64(x)
  eps = 1e-3
  i, j = 2, 1
  plus, minus = x64.copy(), x64.copy()
  plus[i, j] += eps
  minus[i, j] -= eps
  fd = ((np_gram(name, plus, y) ** 2).sum()
        - (np_gram(name, minus, y) ** 2).sum()) / (2 * eps)
  np.testing.assert_allclose(grad[i, j], fd, rtol=2e-3, atol=1e-4)


def test_laplace_gradient_finite_at_coincident_points(xy):
  x, _ = xy
  grad = jax.grad(lambda a: jnp.sum(kernels.Laplace()(a, a)))(x)
  assert np.all(np.isfinite(grad))


def test_kernels_are_pytrees_bandwidth_differentiable(xy):
  x, y = xy
  def loss(bw):
    return jnp.sum(kernels.Gaussian(bandwidth=bw)(x, y))
  g = jax.grad(loss)(1.0)
  d2 = np_sq_distances(x, y)
  expected = np.sum(np.exp(-d2 / 2) * d2)  # d/ds exp(-d2/2s^2) at s=1
  np.testing.assert_allclose(g, expected, rtol=1e-4)
  leaves = jax.tree.leaves(kernels.Polynomial(gamma=0.5))
  assert leaves == [0.5, 1.0]


def test_kernel_change_does_not_recompile(xy):
  x, y = xy
  traces = []

  @jax.jit
  def f(k, a, b):
    traces.append(1)
    return k(a, b).sum()

  f(kernels.Gaussian(1.0), x, y)
  f(kernels.Gaussian(2.0), x, y)
  assert len(traces) == 1


def test_median_heuristic_matches_numpy(xy):
  x, y = xy
  z = np.concatenate([x, y])
  d = np.sqrt(np_sq_distances(z, z)[np.triu_indices(len(z), 1)])
  np.testing.assert_allclose(kernels.median_heuristic(x, y), np.median(d),
                             rtol=1e-5)


def test_median_heuristic_subsamples_deterministically(rng):
  x = rng.normal(size=(3000, 3)).astype(np.float32)
  a = kernels.median_heuristic(x, max_points=500)
  b = kernels.median_heuristic(x, max_points=500)
  assert float(a) == float(b)
  np.testing.assert_allclose(a, kernels.median_heuristic(x[:1500]), rtol=0.05)


def test_median_heuristic_never_zero():
  assert float(kernels.median_heuristic(np.zeros((5, 2), np.float32))) == 1.0


def test_unknown_kernel_name():
  with pytest.raises(ValueError, match="unknown kernel"):
    kernels.get_kernel("cosine")


def test_median_heuristic_carries_no_gradient(xy):
  """A data-derived bandwidth is a constant: its gradient is exactly 0."""
  x, y = xy
  gx, gy = jax.grad(lambda a, b: kernels.median_heuristic(a, b),
                    argnums=(0, 1))(x, y)
  assert not np.any(gx) and not np.any(gy)
