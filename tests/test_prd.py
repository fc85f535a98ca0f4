"""PR curves from features: classifier-based (Simon et al.) and PRD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gendiag.metrics import prd
from gendiag.ops import pr_curves


def _bayes_scores(p_counts, q_counts):
  """Samples with exactly these state counts, scored by log(p/q)."""
  p_counts, q_counts = np.asarray(p_counts), np.asarray(q_counts)
  p, q = p_counts / p_counts.sum(), q_counts / q_counts.sum()
  score = np.log(p / q).astype(np.float32)
  states_r = np.repeat(np.arange(p.size), p_counts)
  states_g = np.repeat(np.arange(q.size), q_counts)
  return score[states_r], score[states_g], p, q


# --------------------------------------------------------------------------
# From scores to curves.


def test_simon_closed_form():
  # P = (.1, .2, .3, .4), Q = (.4, .3, .2, .1): alpha = .25, .6, .9 at
  # lam = .25, 1, 3 (min over sets A of lam P(A) + Q(A^c)).
  sr, sg, _, _ = _bayes_scores([10, 20, 30, 40], [40, 30, 20, 10])
  alpha = prd.alpha_from_scores(jnp.asarray(sr), jnp.asarray(sg),
                                jnp.array([0.25, 1.0, 3.0]))
  np.testing.assert_allclose(alpha, [0.25, 0.6, 0.9], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_bayes_scores_give_the_exact_discrete_curve(seed):
  rng = np.random.default_rng(seed)
  p_counts = rng.integers(1, 40, size=7)
  q_counts = rng.integers(1, 40, size=7)
  sr, sg, p, q = _bayes_scores(p_counts, q_counts)
  got = prd.pr_curve_from_scores(sr, sg)
  want = pr_curves.pr_curve(p.astype(np.float32), q.astype(np.float32))
  np.testing.assert_allclose(got.precision, want.precision, atol=1e-5)
  np.testing.assert_allclose(got.recall, want.recall, atol=1e-5)
  assert float(got.f_beta) == pytest.approx(float(want.f_beta), abs=1e-5)
  # Any increasing transform of the score gives the same curve.
  again = prd.pr_curve_from_scores(np.exp(sr) * 3 + 1, np.exp(sg) * 3 + 1)
  np.testing.assert_allclose(again.precision, got.precision, atol=1e-6)
  # A worse classifier (a wrong score per state) can only overestimate alpha.
  # (Noise per sample would not do: it separates identically distributed
  # samples of the finite sets, which is over-fitting, not a worse test.)
  bad_score = np.log(p / q) + rng.normal(size=p.size)
  states_r = np.repeat(np.arange(p.size), p_counts)
  states_g = np.repeat(np.arange(p.size), q_counts)
  noisy = prd.pr_curve_from_scores(bad_score[states_r].astype(np.float32),
                                   bad_score[states_g].astype(np.float32))
  assert np.all(np.asarray(noisy.precision) >= np.asarray(got.precision)
                - 1e-6)


def test_scores_curve_endpoints_and_jit():
  sr = np.linspace(0, 1, 50).astype(np.float32)
  far = prd.pr_curve_from_scores(sr, sr - 10)  # perfectly separated
  np.testing.assert_allclose(far.precision, 0, atol=1e-6)
  same = jax.jit(lambda a, b: prd.pr_curve_from_scores(a, b).precision)(sr, sr)
  np.testing.assert_allclose(same, np.minimum(pr_curves.angle_slopes(1001), 1),
                             rtol=1e-6)


def test_scores_validation():
  with pytest.raises(ValueError, match="1-D"):
    prd.pr_curve_from_scores(np.ones((3, 2)), np.ones(3))
  with pytest.raises(ValueError, match="1-D"):
    prd.pr_curve_from_scores(np.ones(3), np.ones(0))
  with pytest.raises(ValueError, match="NaN"):
    prd.pr_curve_from_scores(np.array([1.0, np.nan]), np.ones(3))


# --------------------------------------------------------------------------
# The probe ensemble end to end (one compile: every call shares shapes).

N = 3000


def _classifier(real, gen, seed=0):
  return prd.classifier_pr_curve(real, gen, key=jax.random.key(seed),
                                 num_runs=3, num_steps=300,
                                 learning_rate=0.05)


def test_classifier_curve_of_gaussians_matches_closed_form():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(N, 1)).astype(np.float32)
  gen = (rng.normal(size=(N, 1)) + 1.0).astype(np.float32)
  res = _classifier(real, gen)
  lam = np.asarray(res.slopes, np.float64)
  x = np.log(lam) + 0.5  # P = N(0,1), Q = N(1,1)
  alpha = stats.norm.cdf(x - 1) + lam * (1 - stats.norm.cdf(x))
  # Sup deviation of an empirical ROC with 1500 + 1500 test rows: ~0.05.
  np.testing.assert_allclose(res.precision, np.minimum(alpha, 1), atol=0.08)
  assert res.logits_real.shape == (N // 2,)
  assert res.train_loss.shape == (3,)
  assert 0.6 < float(res.heldout_accuracy) < 0.75  # Bayes: Phi(1/2) = .69


def test_classifier_curve_sees_mode_dropping_and_identity():
  rng = np.random.default_rng(1)
  real = (rng.normal(size=(N, 1)) + rng.choice([-4.0, 4.0], size=(N, 1))
          ).astype(np.float32)
  dropped = (rng.normal(size=(N, 1)) + 4.0).astype(np.float32)
  res = _classifier(real, dropped)
  assert float(res.f_beta) < 0.6       # recall-like: half the modes missing
  assert float(res.f_inv_beta) > 0.9   # precision-like: samples are fine
  same = (rng.normal(size=(N, 1)) + rng.choice([-4.0, 4.0], size=(N, 1))
          ).astype(np.float32)
  res = _classifier(real, same)
  assert float(res.f_beta) > 0.9 and float(res.f_inv_beta) > 0.9


def test_classifier_validation():
  x = np.zeros((3, 2), np.float32)
  with pytest.raises(ValueError, match="at least 4"):
    prd.classifier_pr_curve(x, x, key=jax.random.key(0))
  y = np.zeros((8, 2), np.float32)
  with pytest.raises(ValueError, match="num_runs"):
    prd.classifier_pr_curve(y, y, key=jax.random.key(0), num_runs=0)


# --------------------------------------------------------------------------
# PRD (every call shares shapes and settings: one k-means compile).

CENTRES = np.random.default_rng(10).normal(size=(10, 8)) * 8


def _mixture(seed, classes, n=1000):
  rng = np.random.default_rng(seed)
  labels = rng.choice(classes, size=n)
  return (CENTRES[labels] + rng.normal(size=(n, 8))).astype(np.float32)


def _prd(real, gen, seed=0):
  return prd.prd(real, gen, key=jax.random.key(seed), num_runs=4)


def test_prd_sees_mode_dropping_like_the_exact_curve():
  real = _mixture(0, np.arange(10))
  dropped = _mixture(1, np.arange(5))
  res = _prd(real, dropped)
  exact = pr_curves.pr_curve(np.full(10, 0.1, np.float32),
                             np.r_[np.full(5, 0.2), np.zeros(5)].astype(np.float32))
  assert float(res.f_beta) == pytest.approx(float(exact.f_beta), abs=0.05)
  assert float(res.f_inv_beta) == pytest.approx(float(exact.f_inv_beta),
                                                abs=0.05)
  assert float(res.f_beta) < 0.6 < 0.9 < float(res.f_inv_beta)
  assert res.real_histograms.shape == (4, 20)
  np.testing.assert_allclose(jnp.sum(res.real_histograms, axis=1), 1,
                             rtol=1e-6)
  assert bool(jnp.all(res.converged))
  # Mass of the dropped classes' clusters is real only.
  assert float(jnp.min(jnp.max(res.real_histograms - res.generated_histograms,
                               axis=1))) > 0.05


def test_prd_identical_distributions_and_seeding():
  real = _mixture(0, np.arange(10))
  same = _mixture(2, np.arange(10))
  a, b = _prd(real, same), _prd(real, same)
  assert float(a.f_beta) > 0.95 and float(a.f_inv_beta) > 0.95
  np.testing.assert_array_equal(a.precision, b.precision)
  c = _prd(real, same, seed=1)
  assert not np.array_equal(a.real_histograms, c.real_histograms)


def test_prd_matches_a_scikit_learn_reference():
  """The reference's pipeline (sklearn k-means of the union, 20 clusters,
  histograms, averaged curves), with sklearn's KMeans in place of its
  unseeded MiniBatchKMeans."""
  from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
  real = _mixture(0, np.arange(10))
  gen = _mixture(3, np.r_[np.arange(10), np.arange(4)])  # 0-3 twice as often
  union = np.concatenate([real, gen])
  precisions, recalls = [], []
  for seed in range(4):
    labels = KMeans(20, n_init=1, random_state=seed).fit_predict(union)
    p = np.bincount(labels[:1000], minlength=20) / 1000
    q = np.bincount(labels[1000:], minlength=20) / 1000
    curve = pr_curves.pr_curve(p.astype(np.float32), q.astype(np.float32))
    precisions.append(curve.precision)
    recalls.append(curve.recall)
  f8, f18 = pr_curves.max_f_beta(np.mean(precisions, 0), np.mean(recalls, 0))
  res = _prd(real, gen)
  assert float(res.f_beta) == pytest.approx(float(f8), abs=0.03)
  assert float(res.f_inv_beta) == pytest.approx(float(f18), abs=0.03)


def test_prd_validation():
  x = np.zeros((30, 2), np.float32)
  with pytest.raises(ValueError, match="enforce_balance"):
    prd.prd(x, x[:25], key=jax.random.key(0))
  with pytest.raises(ValueError, match="at least 20"):
    prd.prd(x[:10], x[:10], key=jax.random.key(0))
  with pytest.raises(ValueError, match="num_runs"):
    prd.prd(x, x, key=jax.random.key(0), num_runs=0)


# --------------------------------------------------------------------------
# The report family.


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_report_family_flags_a_dropped_mode():
  from gendiag.data.inputs import EvalInputs  # pylint: disable=g-import-not-at-top
  from gendiag.report.families import precision_recall as family  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(20)
  labels = rng.integers(0, 5, 300)
  real = (CENTRES[labels] + rng.normal(size=(300, 8))).astype(np.float32)
  gen_labels = rng.integers(0, 5, 600)
  gen = (CENTRES[gen_labels] + rng.normal(size=(600, 8))).astype(np.float32)
  # Equal sizes: one compile of each metric serves both models.
  good, dropped = gen[:200], gen[200:][gen_labels[200:] != 2][:200]
  inputs = EvalInputs(
      real=real, real_labels=labels,
      generated={"good": good, "dropped": dropped},
      config={"precision_recall": dict(prd_runs=2, classifier_runs=2,
                                       classifier_steps=100)})
  out = family.precision_recall_family(inputs, jax.random.key(0))
  assert set(out.metrics) == {"good", "dropped"}
  assert set(out.metrics["good"]) == {
      "precision", "recall", "density", "coverage", "prd_f8", "prd_f1_8",
      "clf_f8", "clf_f1_8"}
  cov = out.metrics["dropped"]["coverage"]
  assert cov["expected_if_equal"] == pytest.approx(
      family.expected_coverage(300, 200, 5))
  assert "good" not in out.findings
  assert any("does not cover classes 2" in f for f in out.findings["dropped"])
  assert out.metrics["dropped"]["prd_f8"]["value"] < 0.9
  assert "precision_recall.png" in out.figures
  assert any("Coverage by real class" in s for s in out.sections)
  assert any("subsampled" in n for n in out.notes)


def test_expected_coverage_matches_the_notes():
  from gendiag.report.families import precision_recall as family  # pylint: disable=g-import-not-at-top
  assert family.expected_coverage(10_000, 10_000, 3) == pytest.approx(
      0.875038, abs=1e-6)
  assert family.expected_coverage(10_000, 10_000, 5) == pytest.approx(
      0.968773, abs=1e-6)
