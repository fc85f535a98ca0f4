"""FID's influence-function standard error against float64 references."""

import numpy as np
import pytest
import scipy.linalg

from gendiag.metrics import frechet
from gendiag.metrics import frechet_delta


def _psd_power(s, p):
  w, v = np.linalg.eigh(s)
  return (v * np.maximum(w, 1e-300) ** p) @ v.T


def _np_fid(x, y):
  m1, m2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  root = scipy.linalg.sqrtm(s1 @ s2).real
  return ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(
      root)


def _np_standard_errors(x, y):
  """float64 transcription: psi with the dense transport map T."""
  m1, m2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  r1, ir1 = _psd_power(s1, 0.5), _psd_power(s1, -0.5)
  t = ir1 @ _psd_power(r1 @ s2 @ r1, 0.5) @ ir1
  t_inv = np.linalg.inv(t)
  eye = np.eye(len(m1))
  c1, c2 = x - m1, y - m2
  mean_1, mean_2 = 2 * c1 @ (m1 - m2), -2 * c2 @ (m1 - m2)
  tr_1 = np.einsum("ij,jk,ik->i", c1, eye - t, c1)
  tr_2 = np.einsum("ij,jk,ik->i", c2, eye - t_inv, c2)

  def se(a, b):
    return np.sqrt(a.var(ddof=1) / len(x) + b.var(ddof=1) / len(y))

  return se(mean_1 + tr_1, mean_2 + tr_2), se(mean_1, mean_2), se(tr_1, tr_2)


@pytest.mark.parametrize("n,m,d,shift,scale", [
    (600, 500, 8, 0.3, 1.2), (400, 400, 16, 0.0, 1.0), (300, 350, 5, 1.0, 0.5)])
def test_matches_float64_transcription(n, m, d, shift, scale):
  rng = np.random.default_rng(d)
  mix = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
  x = rng.normal(size=(n, d)) @ mix
  y = (rng.normal(size=(m, d)) * scale + shift) @ mix
  res = frechet_delta.fid_standard_error(x.astype(np.float32),
                                         y.astype(np.float32))
  want = _np_standard_errors(x, y)
  got = (res.fid_se, res.mean_term_se, res.trace_term_se)
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-3,
                             atol=1e-6)
  np.testing.assert_allclose(float(res.fid), _np_fid(x, y), rtol=1e-4,
                             atol=1e-5)
  assert bool(res.full_rank)


def test_mean_term_has_no_error_when_means_agree_exactly():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 3))
  y = rng.normal(size=(250, 3)) * 1.5
  x, y = x - x.mean(0), y - y.mean(0)
  res = frechet_delta.fid_standard_error(x.astype(np.float32),
                                         y.astype(np.float32))
  assert float(res.mean_term_se) < 1e-5 < float(res.trace_term_se)


def test_rank_deficient_sets_are_flagged():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(10, 12)).astype(np.float32)
  assert not bool(frechet_delta.fid_standard_error(x, x + 0.1).full_rank)


def _population_fid(shift, scale, d):
  return d * shift ** 2 + d * (1 - scale) ** 2


def test_coverage_matches_the_bootstraps_on_gaussians():
  """95% intervals fid -+ 1.96 se: the delta method's coverage of the
  population FID matches the bootstrap's (fid -+ 1.96 std of resamples, as
  `fid_bootstrap`) over 60 draws, and both are near 95%."""
  n, d, shift, scale, draws, resamples = 400, 4, 0.3, 1.3, 60, 40
  truth = _population_fid(shift, scale, d)
  rng = np.random.default_rng(2)
  hit_delta, hit_boot, ratios = [], [], []
  for _ in range(draws):
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) * scale + shift
    res = frechet_delta.fid_standard_error(x.astype(np.float32),
                                           y.astype(np.float32))
    value, se = float(res.fid), float(res.fid_se)
    boot = np.std([_np_fid(x[rng.integers(0, n, n)], y[rng.integers(0, n, n)])
                   for _ in range(resamples)])
    hit_delta.append(abs(value - truth) <= 1.96 * se)
    hit_boot.append(abs(value - truth) <= 1.96 * boot)
    ratios.append(se / boot)
  cover_delta, cover_boot = np.mean(hit_delta), np.mean(hit_boot)
  # Binomial(60, 0.95): 2 standard errors are ~0.056.
  assert cover_delta >= 0.85 and cover_boot >= 0.85
  assert abs(cover_delta - cover_boot) <= 0.1
  assert 0.8 < np.median(ratios) < 1.2


def test_fid_equals_fid():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(50, 4)).astype(np.float32)
  y = rng.normal(size=(60, 4)).astype(np.float32) + 0.5
  np.testing.assert_allclose(
      float(frechet_delta.fid_standard_error(x, y).fid),
      float(frechet.fid(x, y).fid), rtol=1e-6)


def _fid_family(real, generated, **cfg):
  from gendiag.data.inputs import EvalInputs  # pylint: disable=g-import-not-at-top
  from gendiag.report.families import fid  # pylint: disable=g-import-not-at-top
  inputs = EvalInputs(real=real, generated={"a": generated},
                      config={"fid": dict(num_resamples=8, **cfg)})
  return fid.fid_family(inputs, __import__("jax").random.key(0))


def test_report_interval_is_the_delta_methods_where_sets_exceed_d():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(120, 4)).astype(np.float32)
  y = (rng.normal(size=(100, 4)) * 1.2 + 0.3).astype(np.float32)
  out = _fid_family(x, y)
  se = frechet_delta.fid_standard_error(x, y)
  low, high = out.metrics["a"]["fid"]["ci"]
  np.testing.assert_allclose(high - low, 2 * 1.959964 * float(se.fid_se),
                             rtol=1e-4)
  assert any("delta method" in n for n in out.notes)
  forced = _fid_family(x, y, interval="bootstrap")
  assert any("bootstrap (8 resamples)" in n for n in forced.notes)
  assert forced.metrics["a"]["fid"]["ci"] != out.metrics["a"]["fid"]["ci"]
  with pytest.raises(ValueError, match="fid.interval"):
    _fid_family(x, y, interval="jackknife")


def test_report_bootstraps_when_a_set_has_no_more_rows_than_features():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(40, 6)).astype(np.float32)
  y = rng.normal(size=(6, 6)).astype(np.float32)
  out = _fid_family(x, y)
  assert any("bootstrap" in n for n in out.notes)
  assert not any("delta" in n for n in out.notes)


def test_bad_inputs_are_cast_or_refused():
  rng = np.random.default_rng(6)
  x = rng.integers(0, 5, size=(30, 3))
  y = rng.integers(0, 5, size=(40, 3))
  want = frechet_delta.fid_standard_error(x.astype(np.float32),
                                          y.astype(np.float32))
  got = frechet_delta.fid_standard_error(x.tolist(), y)
  assert float(got.fid_se) == pytest.approx(float(want.fid_se), rel=1e-6)
  with pytest.raises(ValueError, match="standardise"):
    frechet_delta.fid_standard_error(x * 1e20, y)
  with pytest.raises(ValueError, match="NaN"):
    frechet_delta.fid_standard_error(np.where(x == 0, np.nan, x), y)


def test_shared_real_side_gives_each_models_result():
  """One real_side for several models: the numbers of the plain calls
  (fails if the shared basis or whitened rows are off), and the float64
  transcription's standard errors."""
  rng = np.random.default_rng(7)
  d = 12
  x = (rng.normal(size=(500, d)) @ (np.eye(d) + 0.2 * rng.normal(
      size=(d, d)))).astype(np.float32)
  side = frechet_delta.real_side(x)
  for shift in (0.0, 0.5):
    y = (rng.normal(size=(450, d)) * 1.1 + shift).astype(np.float32)
    plain = frechet_delta.fid_standard_error(x, y)
    shared = frechet_delta.fid_standard_error(x, y, real_side=side)
    for field in ("fid", "mean_term", "trace_term", "fid_se", "mean_term_se",
                  "trace_term_se"):
      np.testing.assert_allclose(float(getattr(shared, field)),
                                 float(getattr(plain, field)), rtol=1e-5,
                                 atol=1e-7, err_msg=field)
    want = _np_standard_errors(x.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(float(shared.fid_se), want[0], rtol=2e-3)


def test_real_side_of_another_set_is_refused():
  rng = np.random.default_rng(8)
  x = rng.normal(size=(50, 4)).astype(np.float32)
  side = frechet_delta.real_side(x[:40])
  with pytest.raises(ValueError, match="real_side"):
    frechet_delta.fid_standard_error(x, x + 1.0, real_side=side)
