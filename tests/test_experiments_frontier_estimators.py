"""experiments/frontier_estimators.py: true FI, rules, smoke run end to end."""

import json
import os

import jax
import numpy as np
import pytest
from scipy import integrate
from scipy import stats

from configs import frontier_estimators as config_lib
from gendiag.experiments import frontier_estimators as fx
from gendiag.metrics import frontiers
from gendiag.metrics.frontiers import smoothing


def test_true_frontier_integral_matches_the_notes_reference_values():
  # ../notes/frontiers.md section 5, test 15 (quadrature).
  assert fx.true_frontier_integral("gaussian_shift") == pytest.approx(
      0.276984, abs=2e-6)
  assert fx.true_frontier_integral("gaussian_scale") == pytest.approx(
      0.300780, abs=2e-6)


def test_true_frontier_integral_agrees_with_one_dimensional_quadrature():
  # The shift pair's ratio depends only on the projection on the shift,
  # so FI = E_Q[f(p/q)] with 1-D N(0, 1) and N(sqrt 2, 1).
  def integrand(t):
    p, q = stats.norm.pdf(t), stats.norm.pdf(t, loc=np.sqrt(2))
    if p == q:
      return 0.0
    return (p + q) / 2 - p * q * (np.log(p) - np.log(q)) / (p - q)

  one_d, _ = integrate.quad(integrand, -12, 14, limit=200)
  assert fx.true_frontier_integral("gaussian_shift") == pytest.approx(
      one_d, abs=1e-9)


def test_samples_have_the_named_moments():
  p, q = fx.sample_pair("gaussian_scale", jax.random.key(0), 20000)
  np.testing.assert_allclose(np.cov(np.asarray(p).T), np.eye(2), atol=0.05)
  np.testing.assert_allclose(np.cov(np.asarray(q).T), 5 * np.eye(2),
                             atol=0.25)
  _, q = fx.sample_pair("gaussian_shift", jax.random.key(1), 20000)
  np.testing.assert_allclose(np.asarray(q).mean(0), [1.0, 1.0], atol=0.03)


def test_rules_and_bad_names():
  assert fx.num_bins("n/10", 1000, 5.0) == 100
  assert fx.num_bins("n^(1/3)", 1000, 5.0) == 50
  assert fx.num_bins("n^(1/2)", 10000, 5.0) == 500
  assert fx.num_bins("n^(1/3)", 1, 1.0) == 2
  with pytest.raises(ValueError, match="quantization rule"):
    fx.num_bins("log n", 100, 5.0)
  with pytest.raises(ValueError, match="unknown distribution"):
    fx.true_frontier_integral("cauchy")


def test_fi_by_estimator_matches_the_library_per_estimator():
  counts_p = np.array([12.0, 0.0, 3.0, 1.0, 1.0, 7.0])
  counts_q = np.array([2.0, 5.0, 0.0, 1.0, 4.0, 7.0])
  got = np.asarray(fx.fi_by_estimator(counts_p, counts_q))
  want = [frontiers.frontier_integral_from_histograms(
      smoothing.estimate(counts_p, m), smoothing.estimate(counts_q, m))
          for m in fx.ESTIMATORS]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(
      np.asarray(fx.fi_by_estimator(counts_p, counts_p)), 0.0, atol=1e-6)


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_smoke_config_end_to_end(tmp_path):
  config = config_lib.get_config("smoke")
  results = fx.run(config, str(tmp_path))
  for name in ("results.json", "table.md", "frontier_estimators.png"):
    assert os.path.getsize(tmp_path / name) > 100
  saved = json.load(open(tmp_path / "results.json"))  # strict JSON
  out = saved["distributions"]["gaussian_shift"]
  assert out["true_frontier_integral"] == pytest.approx(0.276984, abs=2e-6)
  assert out["num_bins"]["n/10"] == [10, 30]
  for rule in config.rules:
    for e in fx.ESTIMATORS:
      errors = np.array(out["mean"][rule][e])
      assert errors.shape == (2,)
      assert np.all((errors >= 0) & (errors < 1))
  assert out["findings"]["best_rule"] in config.rules
  assert set(out["findings"]["smoothed_beat_empirical"]) == set(
      fx.ESTIMATORS[1:])
  assert results["distributions"].keys() == saved["distributions"].keys()


def test_config_variants():
  assert config_lib.get_config().sample_sizes[-1] == 10000
  with pytest.raises(ValueError, match="variant"):
    config_lib.get_config("big")
