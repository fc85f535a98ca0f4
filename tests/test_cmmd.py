"""CMMD against a float64 numpy transcription of google-research/cmmd's
`distance.mmd` (sigma = 10, x1000, the biased V-statistic, squared
distances as |x|^2 + |y|^2 - 2 x.y), on fixed unit-norm embeddings.

Observed: |gendiag - float64| <= 6e-7 (2.5 float32 ulps of a CMMD of 3),
where the peer's own formula evaluated in float32 is off by ~1e-5 to 1e-4.
"""

import jax
import numpy as np
import pytest

import gendiag
from gendiag.metrics import cmmd as cmmd_lib
from gendiag.metrics import mmd as mmd_lib
from gendiag.ops import kernels


def _peer(x, y, dtype=np.float64, sigma=10.0, scale=1000.0):
  """google-research/cmmd distance.mmd, transcribed (in `dtype`)."""
  x, y = np.asarray(x, dtype), np.asarray(y, dtype)
  gamma = dtype(1.0 / (2 * sigma ** 2))

  def mean_k(a, b):
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * (a @ b.T)
    return np.exp(-gamma * d).mean(dtype=dtype)
  return scale * (mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y))


def _unbiased(x, y, sigma=10.0, scale=1000.0):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

  def k(a, b):
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    return np.exp(-d / (2 * sigma ** 2))
  n, m = len(x), len(y)
  kxx, kyy = k(x, x), k(y, y)
  return scale * ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                  + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                  - 2 * k(x, y).mean())


def _unit(rng, n, centre, spread):
  x = centre + spread * rng.normal(size=(n, centre.size))
  return np.float32(x / np.linalg.norm(x, axis=1, keepdims=True))


def _sets(seed, shift, d=768, spread=0.03):
  """CLIP-like embeddings: unit vectors around a centre (cosine ~0.6)."""
  rng = np.random.default_rng(seed)
  centre = rng.normal(size=d)
  centre /= np.linalg.norm(centre)
  x = _unit(rng, 200, centre, spread)
  y = _unit(rng, 160, centre + shift * rng.normal(size=d), spread)
  return x, y


@pytest.mark.parametrize("seed,shift", [(0, 0.0), (1, 0.01), (1, 0.03),
                                        (3, 0.03)])
def test_cmmd_equals_the_peers_formula_in_float64(seed, shift):
  x, y = _sets(seed, shift)
  reference = _peer(x, y)
  value = float(gendiag.cmmd(x, y, normalize=False))
  assert abs(value - reference) <= 1e-6 * max(1.0, abs(reference)), (
      value, reference)
  # The peer's arithmetic in float32 is much further off.
  assert abs(_peer(x, y, np.float32) - reference) > 10 * abs(
      value - reference)
  # A single block and blocks of 64 rows agree.
  np.testing.assert_allclose(
      gendiag.cmmd(x, y, normalize=False, block_size=64), value, atol=1e-6)


def test_unbiased_cmmd_equals_the_u_statistic_in_float64():
  x, y = _sets(2, 0.01, d=64, spread=0.1)
  value = float(gendiag.cmmd(x, y, estimator="unbiased", normalize=False))
  np.testing.assert_allclose(value, _unbiased(x, y), rtol=1e-6, atol=1e-7)


def test_normalising_makes_the_scale_of_each_row_irrelevant():
  x, y = _sets(0, 0.02)
  scales = np.random.default_rng(0).uniform(0.5, 3.0, (len(x), 1))
  np.testing.assert_allclose(gendiag.cmmd(np.float32(x * scales), y),
                             gendiag.cmmd(x, y), rtol=1e-5)
  assert float(gendiag.cmmd(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_the_shifted_kernels_give_the_same_mmd():
  x, y = _sets(1, 0.03, d=32, spread=0.3)
  for estimator in ("biased", "unbiased"):
    base = mmd_lib.mmd(x, y, kernel=kernels.Gaussian(1.0),
                       estimator=estimator)
    shifted = mmd_lib.mmd(x, y, kernel=kernels.Gaussian(1.0, drop_terms=1),
                          estimator=estimator)
    np.testing.assert_allclose(shifted, base, rtol=1e-4)
  s = -np.linspace(0.0, 5.0, 2001)
  remainder = kernels.Gaussian(1.0, drop_terms=2).profile(
      np.float32(-2.0 * s))
  np.testing.assert_allclose(remainder, np.expm1(s) - s, rtol=1e-6,
                             atol=1e-12)


def test_cmmd_test_separates_shifted_sets_and_brackets_its_statistic():
  key = jax.random.key(0)
  x, y = _sets(4, 0.03, d=64, spread=0.1)
  far = gendiag.cmmd_test(x, y, key=key, num_permutations=100,
                          num_resamples=100)
  assert float(far.cmmd) == pytest.approx(
      float(gendiag.cmmd(x, y, estimator="unbiased")), rel=1e-6)
  assert float(far.p_value) <= 0.02
  assert float(far.ci_low) <= float(far.cmmd) <= float(far.ci_high)
  rng = np.random.default_rng(5)
  pooled = np.concatenate([x, y])[rng.permutation(len(x) + len(y))]
  near = gendiag.cmmd_test(pooled[:180], pooled[180:], key=key,
                           num_permutations=100, num_resamples=20)
  assert float(near.p_value) > 0.05
  assert set(far.to_dict()) >= {"cmmd", "ci_low", "ci_high", "p_value"}


def test_bad_inputs_raise_naming_the_fix():
  x, y = _sets(0, 0.0, d=8)
  with pytest.raises(ValueError, match="norm 0"):
    gendiag.cmmd(np.zeros_like(x), y)
  with pytest.raises(ValueError, match="sigma"):
    gendiag.cmmd(x, y, sigma=0.0)
  with pytest.raises(ValueError, match="estimator"):
    gendiag.cmmd(x, y, estimator="linear")
  with pytest.raises(ValueError):
    gendiag.cmmd(x, y[:, :4])
  assert cmmd_lib.SIGMA == 10.0 and cmmd_lib.SCALE == 1000.0
