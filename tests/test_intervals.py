"""Confidence intervals of the report families precision_recall, gel and fld.

Each interval must contain its point estimate and shrink as the sample
grows; the families must attach one to every scalar entry (p-values and
the documented exceptions aside).
"""

import jax
import numpy as np
import pytest

from gendiag import report
from gendiag.evaluators import precision_recall as pr_family
from gendiag.ops import bootstrap

KEY = jax.random.key(0)


def _width(ci):
  return float(ci[1] - ci[0])


def _contains(ci, value, tol=1e-6):
  return ci[0] - tol <= value <= ci[1] + tol


# --------------------------------------------------------------------------
# Building blocks.


@pytest.mark.parametrize("p", [0.3, 0.9])
def test_bootstrap_means_of_flags_contain_and_shrink(p):
  rng = np.random.default_rng(0)
  widths = []
  for n in (100, 1600):
    flags = rng.random((n, 2)) < p
    reps = pr_family.bootstrap_means(KEY, flags, num_resamples=400)
    assert reps.shape == (400, 2)
    ci = pr_family.percentile_intervals(reps)
    for j in range(2):
      assert _contains(ci[j], flags[:, j].mean())
    # Binomial standard error: the 95% width is about 4 sqrt(p(1-p)/n).
    np.testing.assert_allclose(_width(ci[0]), 3.92 * np.sqrt(p * (1 - p) / n),
                               rtol=0.25)
    widths.append(_width(ci[0]))
  assert widths[1] < 0.4 * widths[0]


def test_bootstrap_means_are_exact_weighted_means():
  values = np.arange(6, dtype=np.float32)
  reps = np.asarray(pr_family.bootstrap_means(KEY, values, num_resamples=3))
  w = np.asarray(bootstrap.resample_weights(KEY, 6, 3))
  assert np.all(w.sum(axis=1) == 6)
  np.testing.assert_allclose(reps[:, 0], w @ values / 6, rtol=1e-6)


def test_normal_intervals_are_centred_and_clipped():
  reps = np.stack([np.linspace(0.5, 0.7, 50), np.linspace(0.9, 1.1, 50)], 1)
  ci = pr_family.normal_intervals([0.6, 0.99], reps)
  np.testing.assert_allclose(ci[0].mean(), 0.6, atol=1e-6)
  assert ci[1][1] == 1.0 and _contains(ci[1], 0.99)


def test_prd_bootstrap_contains_estimate_and_shrinks():
  from gendiag.ops import fdiv  # pylint: disable=g-import-not-at-top
  p = np.array([[0.3, 0.3, 0.2, 0.2, 0.0]] * 2, np.float32)
  q = np.array([[0.1, 0.3, 0.2, 0.2, 0.2]] * 2, np.float32)
  curve = fdiv.pr_curve(p[0], q[0], num_angles=201)
  widths = []
  for n in (100, 2500):
    reps = pr_family.prd_bootstrap(KEY, p, q, num_real=n, num_generated=n,
                                   num_resamples=200, num_angles=201)
    ci = pr_family.normal_intervals([curve.f_beta, curve.f_inv_beta], reps)
    assert _contains(ci[0], float(curve.f_beta))
    assert _contains(ci[1], float(curve.f_inv_beta))
    # The replicates scatter around the exact value.
    assert abs(float(np.mean(reps[:, 1])) - float(curve.f_inv_beta)) < 0.05
    widths.append(_width(ci[1]))
  assert widths[1] < 0.4 * widths[0]


def test_classifier_bootstrap_contains_estimate_and_shrinks():
  from gendiag.metrics import prd  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  widths = []
  for n in (100, 1600):
    real = np.float32(rng.normal(1.0, 1.0, n))
    gen = np.float32(rng.normal(0.0, 1.0, n))
    curve = prd.pr_curve_from_scores(real, gen, num_angles=201)
    reps = pr_family.classifier_bootstrap(KEY, real, gen, num_resamples=200,
                                          num_angles=201)
    ci = pr_family.normal_intervals([curve.f_beta, curve.f_inv_beta], reps)
    assert _contains(ci[0], float(curve.f_beta))
    widths.append(_width(ci[0]))
  assert widths[1] < 0.4 * widths[0]


# --------------------------------------------------------------------------
# The families.

CENTRES = np.random.default_rng(5).normal(scale=6.0, size=(5, 8))


def _mixture(rng, n, classes=range(5)):
  labels = rng.choice(np.asarray(list(classes)), n)
  return (CENTRES[labels] + rng.normal(size=(n, 8))).astype(np.float32), labels


def _check_entries(metrics, exempt=()):
  for model, entries in metrics.items():
    for name, e in entries.items():
      if name in exempt:
        continue
      assert e["ci"] is not None, f"{model}/{name} has no interval"
      assert _contains(e["ci"], e["value"]), (model, name, e)


def test_precision_recall_family_has_intervals_everywhere():
  rng = np.random.default_rng(3)
  real, labels = _mixture(rng, 200)
  good, _ = _mixture(rng, 200)
  dropped, _ = _mixture(rng, 200, classes=(0, 1, 3, 4))
  inputs = report.EvalInputs(
      real=real, real_labels=labels,
      generated={"good": good, "dropped": dropped},
      config={"precision_recall": dict(prd_runs=2, classifier_runs=2,
                                       classifier_steps=100,
                                       num_resamples=50)})
  out = pr_family.precision_recall_family(inputs, KEY)
  _check_entries(out.metrics)
  assert any("k-NN radii held fixed" in n for n in out.notes)
  # Coverage of the model that drops a class sits well below the good one's.
  assert (out.metrics["dropped"]["coverage"]["ci"][1]
          < out.metrics["good"]["coverage"]["ci"][0])
