"""Confidence intervals and real-vs-real references of the report families.

Each interval must contain its point estimate and shrink as the sample
grows; every family must attach one to every scalar entry (p-values and
the documented exceptions aside), which the smoke run of the main job
checks for every registered family; the scores listed in REFERENCED carry
a finite held-out-real reference.
"""

import os

import jax
import numpy as np
import pytest

from gendiag import report
from gendiag.data.inputs import EvalInputs
from gendiag.ops import intervals as ci_lib
from gendiag.report import bootstrap
from gendiag.report.families import precision_recall as pr_family

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
    reps = ci_lib.bootstrap_means(KEY, flags, num_resamples=400)
    assert reps.shape == (400, 2)
    ci = ci_lib.percentile_intervals(reps)
    for j in range(2):
      assert _contains(ci[j], flags[:, j].mean())
    # Binomial standard error: the 95% width is about 4 sqrt(p(1-p)/n).
    np.testing.assert_allclose(_width(ci[0]), 3.92 * np.sqrt(p * (1 - p) / n),
                               rtol=0.25)
    widths.append(_width(ci[0]))
  assert widths[1] < 0.4 * widths[0]


def test_bootstrap_means_are_exact_weighted_means():
  values = np.arange(6, dtype=np.float32)
  reps = np.asarray(ci_lib.bootstrap_means(KEY, values, num_resamples=3))
  w = np.asarray(ci_lib.resample_weights(KEY, 6, 3))
  assert np.all(w.sum(axis=1) == 6)
  np.testing.assert_allclose(reps[:, 0], w @ values / 6, rtol=1e-6)


def test_normal_intervals_are_centred_and_clipped():
  reps = np.stack([np.linspace(0.5, 0.7, 50), np.linspace(0.9, 1.1, 50)], 1)
  ci = ci_lib.normal_intervals([0.6, 0.99], reps)
  np.testing.assert_allclose(ci[0].mean(), 0.6, atol=1e-6)
  assert ci[1][1] == 1.0 and _contains(ci[1], 0.99)


def test_prd_bootstrap_contains_estimate_and_shrinks():
  from gendiag.ops import pr_curves  # pylint: disable=g-import-not-at-top
  p = np.array([[0.3, 0.3, 0.2, 0.2, 0.0]] * 2, np.float32)
  q = np.array([[0.1, 0.3, 0.2, 0.2, 0.2]] * 2, np.float32)
  curve = pr_curves.pr_curve(p[0], q[0], num_angles=201)
  widths = []
  for n in (100, 2500):
    reps = bootstrap.prd_bootstrap(KEY, p, q, num_real=n, num_generated=n,
                                   num_resamples=200, num_angles=201)
    ci = ci_lib.normal_intervals([curve.f_beta, curve.f_inv_beta], reps)
    assert _contains(ci[0], float(curve.f_beta))
    assert _contains(ci[1], float(curve.f_inv_beta))
    # The replicates scatter around the exact value.
    assert abs(float(np.mean(reps[:, 1])) - float(curve.f_inv_beta)) < 0.05
    widths.append(_width(ci[1]))
  assert widths[1] < 0.4 * widths[0]


def test_resampled_histograms_are_multinomial():
  """Counts are integers summing to n with the Multinomial(n, p) moments:
  mean p, variance p (1 - p) / n; an empty cluster stays empty."""
  p = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.1, 0.7]], np.float32)
  n, draws = 50, 4000
  reps = np.asarray(jax.vmap(
      lambda k: bootstrap._resample_histograms(k, p, n))(  # pylint: disable=protected-access
          jax.random.split(KEY, draws)))
  counts = reps * n
  np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
  np.testing.assert_allclose(counts.sum(-1), n, atol=1e-3)
  assert np.all(reps[:, 0, 3] == 0)
  var = p * (1 - p) / n
  assert np.all(np.abs(reps.mean(0) - p) <= 5 * np.sqrt(var / draws) + 1e-7)
  mask = p > 0
  np.testing.assert_allclose(reps.var(0)[mask], var[mask], rtol=0.12)


def test_classifier_bootstrap_contains_estimate_and_shrinks():
  from gendiag.metrics import prd  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  widths = []
  for n in (100, 1600):
    real = np.float32(rng.normal(1.0, 1.0, n))
    gen = np.float32(rng.normal(0.0, 1.0, n))
    curve = prd.pr_curve_from_scores(real, gen, num_angles=201)
    reps = bootstrap.classifier_bootstrap(KEY, real, gen, num_resamples=200,
                                          num_angles=201)
    ci = ci_lib.normal_intervals([curve.f_beta, curve.f_inv_beta], reps)
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


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_precision_recall_family_has_intervals_everywhere():
  rng = np.random.default_rng(3)
  real, labels = _mixture(rng, 200)
  good, _ = _mixture(rng, 200)
  dropped, _ = _mixture(rng, 200, classes=(0, 1, 3, 4))
  inputs = EvalInputs(
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


# --------------------------------------------------------------------------
# Helpers shared by the families.


def test_count_and_seed_intervals():
  assert ci_lib.count_interval(2, [1] * 19 + [2]) == (1.0, 2.0)
  assert ci_lib.count_interval(0, [0, 0, 1, 0] * 5) == (0.0, 1.0)
  # One seed and no bootstrap: a point interval; the seed spread uses t_2.
  assert ci_lib.seed_interval(3.0, [3.0]) == (3.0, 3.0)
  lo, hi = ci_lib.seed_interval(3.0, [3.0, 4.0, 2.0])
  np.testing.assert_allclose(hi - 3.0, 4.303 * 1.0, rtol=1e-6)
  lo, hi = ci_lib.seed_interval(3.0, [3.0], boot_std=0.5)
  np.testing.assert_allclose([lo, hi], [3.0 - 0.98, 3.0 + 0.98], atol=1e-3)
  assert ci_lib.seed_interval(np.inf, [np.inf]) is None
  # A NaN bound means no interval.
  assert ci_lib.as_ci([np.nan, 1.0]) is None


def test_normal_intervals_skip_non_finite_replicates():
  reps = np.array([[0.1], [0.2], [np.inf], [0.3]])
  ci = ci_lib.normal_intervals([0.2], reps, bounds=(0.0, np.inf))
  np.testing.assert_allclose(ci[0], [0.2 - 1.96 * 0.1, 0.2 + 1.96 * 0.1],
                             atol=1e-3)
  assert np.isnan(ci_lib.normal_intervals([np.inf], reps)[0]).all()


def test_fid_term_replicates_are_fid_bootstrap_resamples():
  from gendiag.metrics import frechet  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  real = np.float32(rng.normal(size=(150, 4)))
  gen = np.float32(rng.normal(0.3, 1.2, size=(120, 4)))
  reps = np.asarray(frechet.fid_term_replicates(real, gen, KEY,
                                                num_resamples=20))
  boot = frechet.fid_bootstrap(real, gen, key=KEY, num_resamples=20)
  np.testing.assert_allclose(reps[:, 0], np.asarray(boot.replicates),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(reps[:, 1] + reps[:, 2], reps[:, 0], rtol=1e-4,
                             atol=1e-5)


def test_fld_train_nlls_are_the_gap_term_row_by_row():
  from gendiag.metrics import fld as fld_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(8)
  train = np.float32(rng.normal(size=(120, 6)))
  test = np.float32(rng.normal(size=(100, 6)))
  gen = np.float32(rng.normal(size=(60, 6)))
  gen[:20] = train[:20]          # copies: exact zero distances
  test[:, 5] = 1.0               # a constant test dimension is dropped
  res = fld_lib.fld(train, test, gen, key=KEY)
  rows = np.asarray(res.train_nlls)
  assert rows.shape == (120,)
  np.testing.assert_allclose(rows.mean(), float(res.nll_train), rtol=1e-4,
                             atol=1e-4)


# --------------------------------------------------------------------------
# The gel, fld and distance families.


def _labelled_inputs(n, config, seed=11):
  rng = np.random.default_rng(seed)
  real, labels = _mixture(rng, n)
  good, good_labels = _mixture(rng, n)
  dropped, dropped_labels = _mixture(rng, n, classes=(0, 1, 3, 4))
  train, _ = _mixture(rng, n)
  memorized = good.copy()
  memorized[: n // 4] = train[: n // 4]
  return EvalInputs(
      real=real, real_labels=labels, train=train,
      generated={"good": good, "dropped": dropped, "memorized": memorized},
      generated_labels={"good": good_labels, "dropped": dropped_labels,
                        "memorized": good_labels},
      config=config)


@pytest.mark.slow  # GEL / FLD compiles: minutes on a shared 2-core machine
def test_gel_family_intervals():
  from gendiag.report.families import gel as gel_family  # pylint: disable=g-import-not-at-top
  inputs = _labelled_inputs(160, {"gel": dict(
      num_witnesses=16, num_permutations=19, num_resamples=12)})
  out = gel_family.gel_family(inputs, KEY)
  exempt = ("gel_statistic", "gel_p_value")
  for model, entries in out.metrics.items():
    for name in exempt:
      assert entries[name]["ci"] is None
    finite = {k: e for k, e in entries.items()
              if k not in exempt and e["value"] is not None}
    _check_entries({model: finite})
  # The dropped model lacks class 2: its max class divergence is inf (no
  # interval), and its Hellinger distance to the real mix sits above the
  # good model's whole interval.
  dropped, good = out.metrics["dropped"], out.metrics["good"]
  assert dropped["gel_max_class_divergence"]["value"] is None
  assert dropped["gel_max_class_divergence"]["ci"] is None
  assert (dropped["gel_mode_dropping"]["ci"][0]
          > good["gel_mode_dropping"]["ci"][1])
  assert any("permutation test" in n for n in out.notes)


@pytest.mark.slow  # smoke-size end to end; the main job's smoke run covers it
def test_gel_mode_bootstrap_replicates_scatter_around_the_estimate():
  from gendiag.report import bootstrap  # pylint: disable=g-import-not-at-top
  from gendiag.metrics.gel import modes as gel_modes  # pylint: disable=g-import-not-at-top
  inputs = _labelled_inputs(160, {})
  real, gen = inputs.real, inputs.generated["good"]
  labels, gen_labels = inputs.real_labels, inputs.generated_labels["good"]
  witnesses = np.concatenate([real[:8], gen[:8]])
  est = gel_modes.gel_mode_probabilities(
      real, gen, real_labels=labels, generated_labels=gen_labels, witnesses=witnesses,
      kernel="gaussian", num_classes=5)
  reps = np.asarray(bootstrap.mode_bootstrap(
      KEY, real, gen, labels, gen_labels, witnesses, 0.1, num_resamples=12,
      objective="et", kernel="gaussian", num_classes=5, class_moments=8))
  assert reps.shape == (12, 4)
  # Resampling adds noise to a near-zero distance: replicates sit within a
  # few spreads of the estimate, and none flags a dropped class.
  h = reps[:, 0]
  assert abs(np.mean(h) - float(est.hellinger_to_real)) < 3 * np.std(h) + 0.05
  assert np.all(reps[:, 2] == 0)


@pytest.mark.slow  # GEL / FLD compiles: minutes on a shared 2-core machine
def test_fld_family_intervals():
  from gendiag.report.families import fld as fld_family  # pylint: disable=g-import-not-at-top
  inputs = _labelled_inputs(160, {"fld": dict(num_seeds=2, num_resamples=100,
                                              max_epochs=20)})
  out = fld_family.fld_family(inputs, KEY)
  _check_entries(out.metrics)
  for model, entries in out.metrics.items():
    assert len(entries["fld"]["seeds"]) == 2
    assert entries["fld"]["seeds"][0] == entries["fld"]["value"]
  good, mem = out.metrics["good"], out.metrics["memorized"]
  assert good["copies"]["ci"] == [0.0, 0.0]
  assert mem["copies"]["ci"][0] > 0 and mem["fld_gap"]["ci"][1] < good[
      "fld_gap"]["ci"][0]
  assert any("seeds of their fits" in n for n in out.notes)


@pytest.mark.slow  # GEL / FLD compiles: minutes on a shared 2-core machine
def test_fld_interval_shrinks_with_the_test_set():
  from gendiag.report.families import fld as fld_family  # pylint: disable=g-import-not-at-top
  widths = []
  for n in (60, 600):
    rng = np.random.default_rng(12)
    train, _ = _mixture(rng, 200)
    gen, _ = _mixture(rng, 100)
    test, _ = _mixture(rng, n)
    inputs = EvalInputs(
        real=test, test=test, train=train, generated={"m": gen},
        config={"fld": dict(num_seeds=1, num_resamples=200, max_epochs=20,
                            data_copying=False)})
    out = fld_family.fld_family(inputs, KEY)
    widths.append(_width(out.metrics["m"]["fld"]["ci"]))
  assert widths[1] < 0.5 * widths[0]


def test_distance_families_have_intervals():
  from gendiag.report.families import fid, kid, mmd  # pylint: disable=g-import-not-at-top
  inputs = _labelled_inputs(120, {
      "fid": dict(num_resamples=20), "mmd": dict(num_permutations=20,
                                                 num_resamples=20),
      "kid": dict(num_subsets=10, subset_size=60, num_resamples=20)})
  for fn in (fid.fid_family, kid.kid_family, mmd.mmd_family):
    out = fn(inputs, KEY)
    _check_entries(out.metrics, exempt=("mmd_p_value",))


# --------------------------------------------------------------------------
# Every family of the main job's smoke run (tests/conftest.py `smoke_run`).

# Scalars without an interval, each documented in its family: a test's
# statistic and p-value (the permutation test is their uncertainty
# statement). A value that is not finite (null, e.g. the class divergence
# of a class the model lacks) has none either.
EXEMPT = {"mmd": {"mmd_p_value"}, "gel": {"gel_statistic", "gel_p_value"}}

# The scores that must show what held-out real data gets at the same sizes.
REFERENCED = {"fid": ("fid",), "kid": ("kid",), "mmd": ("mmd2",),
              "precision_recall": ("precision", "recall", "density",
                                   "coverage", "prd_f8", "prd_f1_8"),
              "cas": ("cas",),
              "gel": ("gel_mode_dropping", "gel_dropped_classes"),
              "frontiers": ("mauve", "frontier_integral")}


def check_family_intervals(metrics, families):
  """Every family gives every model entries, each scalar a containing ci."""
  for family in families:
    names = metrics["families"][family]["metrics"]
    assert names, f"family {family} returned no entries"
    for model, entries in metrics["models"].items():
      for name in names:
        assert name in entries, f"{family}: {model} lacks {name}"
        e = entries[name]
        if name in EXEMPT.get(family, ()) or e["value"] is None:
          continue
        assert e["ci"] is not None, f"{family}: {model}/{name} has no ci"
        assert _contains(e["ci"], e["value"], tol=1e-5), (model, name, e)


def test_check_family_intervals_fails_on_empty_or_missing_ci():
  entry = {"value": 0.5, "ci": [0.4, 0.6]}
  good = {"models": {"m": {"s": entry}},
          "families": {"f": {"metrics": ["s"]}}}
  check_family_intervals(good, ["f"])
  with pytest.raises(AssertionError, match="no entries"):
    check_family_intervals({"models": {"m": {}},
                            "families": {"f": {"metrics": []}}}, ["f"])
  with pytest.raises(AssertionError, match="has no ci"):
    check_family_intervals(
        {"models": {"m": {"s": {"value": 0.5, "ci": None}}},
         "families": {"f": {"metrics": ["s"]}}}, ["f"])


# Families the digits default skips (they need Inception outputs or CLIP
# embeddings); their intervals are checked on image inputs
# (tests/test_families_image_scores.py, tests/test_experiments_diagnose_vit.py).
NOT_IN_DEFAULT = ("image_scores", "cmmd")


def test_every_family_gives_every_scalar_an_interval(smoke_run):
  _, metrics = smoke_run
  families = [n for n in report.REGISTRY if not n.startswith("_")]
  assert set(metrics["families"]) == set(families)  # every family ran
  ran = {n for n in families
         if not metrics["families"][n]["notes"][0].startswith("skipped: needs")}
  assert ran <= set(metrics["meta"]["family_seconds"]) <= set(families)
  # The peak RSS after each family that ran: a high-water mark, so it never
  # falls from one family to the next.
  peaks = metrics["meta"]["family_peak_rss_gib"]
  assert set(peaks) == set(metrics["meta"]["family_seconds"])
  in_order = [peaks[n] for n in families if n in peaks]
  assert in_order[0] > 0.1 and in_order == sorted(in_order)
  assert "cmmd" not in ran   # it needs CLIP embeddings
  for name in NOT_IN_DEFAULT:
    assert "skipped" in metrics["families"][name]["notes"][0]
  check_family_intervals(metrics, [n for n in families
                                   if n not in NOT_IN_DEFAULT])
  # The frontier's end points, unmatched masses and nulls among them.
  good = metrics["models"]["good"]
  for name in ("kl_model_to_real", "kl_real_to_model", "missed_real_mass",
               "off_real_mass", "mauve_null", "fi_null"):
    assert good[name]["ci"] is not None, name


def test_every_score_carries_a_real_vs_real_reference(smoke_run):
  workdir, metrics = smoke_run
  models = metrics["models"]
  for family, names in REFERENCED.items():
    assert set(names) <= set(metrics["families"][family]["metrics"])
    for name in names:
      refs = [models[m][name]["reference"] for m in models]
      for ref in refs:
        assert ref["value"] is not None and np.isfinite(ref["value"]), name
        if ref["ci"] is not None:
          assert _contains(ref["ci"], ref["value"], tol=1e-5), (name, ref)
      # Every model has 300 samples: one reference, computed once.
      assert all(r == refs[0] for r in refs), name
  # The good model draws real digits: it scores like the reference, which
  # the dropped model's scores lie above.
  for name in ("fid", "kid", "mmd2"):
    good, dropped = models["good"][name], models["dropped"][name]
    ref = good["reference"]
    assert good["ci"][0] <= ref["ci"][1] and ref["ci"][0] <= good["ci"][1], (
        name, good)
    assert dropped["value"] > ref["ci"][1], (name, dropped)
  assert models["good"]["cas"]["reference"]["value"] == models["good"][
      "cas_real"]["value"]
  assert models["good"]["mauve"]["reference"]["value"] == models["good"][
      "mauve_null"]["value"]
  text = open(os.path.join(workdir, "report.md")).read()
  html = open(os.path.join(workdir, "index.html")).read()
  for doc in (text, html):
    assert doc.count(report.REFERENCE_ROW) == len(REFERENCED)


def test_mean_interval_is_the_t_interval_of_the_mean():
  lo, hi = ci_lib.mean_interval([1.0, 2.0, 3.0])
  np.testing.assert_allclose([lo, hi], [2.0 - 4.303 / np.sqrt(3),
                                        2.0 + 4.303 / np.sqrt(3)], rtol=1e-6)
  assert ci_lib.mean_interval([1.0]) is None


def test_frontier_side_intervals_contain_and_shrink():
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top
  from gendiag.report.families import frontiers as fam  # pylint: disable=g-import-not-at-top
  from gendiag.metrics import frontiers as fe  # pylint: disable=g-import-not-at-top
  from gendiag.metrics.frontiers import scores as fe_scores  # pylint: disable=g-import-not-at-top
  p = np.array([0.4, 0.3, 0.2, 0.1])
  q = np.array([0.05, 0.2, 0.3, 0.45])
  cfg = dict(fam.DEFAULTS, num_resamples=200)
  settings = fam.estimator_settings(cfg)
  widths = []
  for n in (100, 10_000):
    cr, cg = np.float32(p * n), np.float32(q * n)
    _, _, front = fe_scores.scores(
        cr, cg, np.float32(5.0), smoothing="empirical",
        num_weights=fe.NUM_WEIGHTS)
    res = SimpleNamespace(real_counts=cr, generated_counts=cg,
                          weights=front.weights,
                          kl_generated=front.kl_generated,
                          kl_real=front.kl_real)
    ci = fam.side_intervals(KEY, res, cfg, settings)
    est = fam.kl_ends(res) + fam.unmatched_mass(res, cfg["mass_ratio"])
    # KL(P || R_lam_min) ~ KL(p || q); missed real mass: class 0 (q < p / 5).
    np.testing.assert_allclose(est[1], np.sum(p * np.log(p / q)), rtol=1e-3)
    assert est[2] == pytest.approx(0.4) and est[3] == 0.0
    for row, value in zip(ci, est):
      assert _contains(row, value), (row, value)
    widths.append(_width(ci[1]))
  assert widths[1] < 0.2 * widths[0]
