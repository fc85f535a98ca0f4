"""GEL weights, the permutation test and the class-mass metrics (float32)."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gendiag.data import synthetic
from gendiag.report.families import gel as gel_family
from gendiag.ops import kernels
from gendiag.metrics import gel as gel_lib
from gendiag.metrics.gel import dual as gel_dual

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="module")
def fixture():
  inputs = np.load(os.path.join(DATA, "gel_inputs.npz"))
  with open(os.path.join(DATA, "gel_reference.json")) as f:
    ref = json.load(f)
  return {k: inputs[k] for k in inputs}, ref


def _run(ref, name, sample, objective):
  for run in ref["runs"][name]["runs"]:
    if run["sample"] == sample and run["objective_type"] == objective:
      return run
  raise KeyError((name, sample, objective))


def _class_masses(weights, labels):
  return np.bincount(labels, weights=np.asarray(weights, np.float64),
                     minlength=10)


# The reference's own objective names: 'euc' is gendiag's 'cue'.
# (float64 covers every run; these share two compilations.)
FLOAT32_CASES = [("kgel_10", "one", "et"), ("kgel_4", "one", "et"),
                 ("kgel_6", "two", "el"), ("kgel_8", "two", "el")]


@pytest.mark.parametrize("name,sample,objective", FLOAT32_CASES)
def test_matches_the_reference_in_float32(fixture, name, sample, objective):
  data, ref = fixture
  run = _run(ref, name, sample, objective)
  tol = ref["tolerances"]
  k = int(name.split("_")[1])
  kernel = name.startswith("kgel")
  res = gel_lib.gel(
      jnp.asarray(data["test"], jnp.float32),
      jnp.asarray(data[f"model_{k}"], jnp.float32),
      two_sample=sample == "two",
      objective={"euc": "cue"}.get(objective, objective),
      moments="kernel" if kernel else "raw",
      witnesses=jnp.asarray(data["witness"], jnp.float32) if kernel else None)
  assert int(res.status) == gel_dual.SOLVED
  np.testing.assert_allclose(float(res.divergence), run["divergence"],
                             rtol=tol["divergence_rel_float32"])
  np.testing.assert_allclose(
      _class_masses(res.real_weights, data["test_labels"]),
      run["test_mode_probs"], atol=tol["mode_probs_abs_float32"])
  if sample == "two":
    np.testing.assert_allclose(
        _class_masses(res.generated_weights, data[f"model_{k}_labels"]),
        run["model_mode_probs"], atol=tol["mode_probs_abs_float32"])
    np.testing.assert_allclose(
        [float(res.generated_divergence), float(res.real_divergence)],
        [run["model_divergence"], run["test_divergence"]],
        rtol=tol["divergence_rel_float32"])


def test_reference_false_success_is_flagged_infeasible(fixture):
  """kgel_2 one-sample ET: the reference says 'solved' (residual 1.76)."""
  data, ref = fixture
  assert _run(ref, "kgel_2", "one", "et")["status"] == "solved"
  res = gel_lib.gel(jnp.asarray(data["test"], jnp.float32),
                    jnp.asarray(data["model_2"], jnp.float32),
                    witnesses=jnp.asarray(data["witness"], jnp.float32))
  assert int(res.status) == gel_dual.INFEASIBLE
  assert np.isinf(float(res.divergence)) and np.isinf(float(res.statistic))
  w = np.asarray(res.real_weights)
  assert np.all(np.isfinite(w)) and abs(w.sum() - 1) < 1e-5


@pytest.fixture(scope="module")
def small():
  rng = np.random.default_rng(3)
  x = np.float32(rng.normal(size=(200, 3)))
  y = np.float32(rng.normal(size=(200, 3)))
  return x, y


@pytest.mark.parametrize("two_sample", [False, True])
def test_identical_sets_give_uniform_weights(small, two_sample):
  x, _ = small
  res = gel_lib.gel(x, x, two_sample=two_sample, moments="raw")
  assert int(res.status) == gel_dual.SOLVED
  np.testing.assert_allclose(np.asarray(res.real_weights), 1 / 200, atol=1e-6)
  np.testing.assert_allclose(np.asarray(res.generated_weights), 1 / 200,
                             atol=1e-6)
  assert abs(float(res.divergence)) < 1e-6


def test_affine_invariance(small, rng):
  x, y = small
  a = np.float32(rng.normal(size=(3, 3)) + 2 * np.eye(3))
  b = np.float32(rng.normal(size=3))
  plain = gel_lib.gel(x, y, moments="raw")
  moved = gel_lib.gel(x @ a + b, y @ a + b, moments="raw")
  np.testing.assert_allclose(np.asarray(moved.real_weights),
                             np.asarray(plain.real_weights), atol=2e-6)


def test_objectives_agree_to_first_order_near_the_null(small):
  x, y = small
  res = {o: gel_lib.gel(x, y, two_sample=True, moments="raw", objective=o)
         for o in ("el", "et", "cue")}
  stat = {o: float(r.statistic) for o, r in res.items()}
  assert all(int(r.status) == gel_dual.SOLVED for r in res.values())
  assert 0.5 < stat["et"] < 30.0  # about chi^2_3 under the null
  np.testing.assert_allclose(stat["el"], stat["et"], rtol=0.1)
  np.testing.assert_allclose(stat["cue"], stat["et"], rtol=0.1)
  for o in ("el", "cue"):
    np.testing.assert_allclose(np.asarray(res[o].real_weights),
                               np.asarray(res["et"].real_weights),
                               atol=0.1 / 200)


def test_permutation_p_values_are_uniform_under_the_null():
  """200 seeds of a small null problem, vmapped in one call: p ~ U(0, 1).

  The same call holds 19 shifted alternatives (p should be small) and one
  pair with disjoint hulls (infeasible: a finite capped T, above every
  relabelling's, the smallest p-value).
  """
  kx, ky, kp = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (220, 30, 2))
  y = jax.random.normal(ky, (220, 30, 2))
  y = y.at[200:219].add(1.0)
  x = x.at[219].set(jax.random.uniform(kx, (30, 2)))
  y = y.at[219].set(x[219] + 5.0)
  fn = functools.partial(
      gel_lib.gel_test_core, objective="et", moments="raw", kernel="exponential",
      num_permutations=99, max_iterations=100, null_max_iterations=200,
      tol=None, block_size=1024, batch_size=99)
  res = jax.jit(jax.vmap(lambda a, b, k: fn(a, b, None, None, 1.0, k)))(
      x, y, jax.random.split(kp, 220))
  p = np.asarray(res.p_value)
  status = np.asarray(res.status)
  assert np.all(status[:219] == gel_dual.SOLVED)
  assert int(jnp.sum(res.null_unsolved)) == 0
  assert stats.kstest(p[:200], "uniform").pvalue > 0.01
  assert 0.01 <= np.mean(p[:200] <= 0.05) <= 0.10
  assert np.mean(p[200:219] <= 0.05) >= 0.9
  assert status[219] == gel_dual.INFEASIBLE
  # (issue 18: the test's statistic stays finite outside the hull)
  assert np.isfinite(np.asarray(res.statistic)[219])
  assert float(res.statistic[219]) > float(jnp.max(res.null_statistics[219]))
  assert np.isinf(np.asarray(res.divergence)[219])
  assert p[219] == pytest.approx(1 / 100)
  assert float(res.chi2_p_value[219]) == 0.0
  assert np.all(np.isfinite(np.asarray(res.real_weights[219])))


def test_gel_test_rejects_a_shift_with_more_witnesses_than_rows():
  """Issue 18: 200 + 200 rows, J = 256 witnesses, a 0.3 shift per coordinate
  (MMD: p = 0.001). The old test said T = inf, infeasible, p = 1.0."""
  rng = np.random.default_rng(0)
  x = np.float32(rng.normal(size=(200, 8)))
  y = np.float32(rng.normal(size=(200, 8)) + 0.3)
  res = gel_lib.gel_test(x, y, key=jax.random.key(0), num_permutations=20)
  assert float(res.p_value) <= 0.05
  assert np.isfinite(float(res.statistic))
  assert int(res.null_unsolved) == 0
  assert int(res.num_moments) <= gel_lib.default_max_moments(200, 200)
  assert float(res.statistic) > float(jnp.max(res.null_statistics))


def _vmapped_gel_tests(x, y, key, *, objective, kernel, num_witnesses,
                       num_permutations=19):
  """`gel_test` on each pair x[s], y[s], vmapped; witnesses drawn from the
  pooled pair as `gel_test` and the report draw them."""
  num_rows = x.shape[1] + y.shape[1]

  def one(a, b, k):
    witness_key, perm_key = jax.random.split(k)
    idx = jax.random.choice(witness_key, num_rows, (num_witnesses,),
                            replace=False)
    return gel_lib.gel_test_core(
        a, b, jnp.concatenate([a, b])[idx], None, 1.0, perm_key,
        objective=objective, moments="kernel", kernel=kernel,
        num_permutations=num_permutations, max_iterations=100,
        null_max_iterations=200, tol=None, block_size=1024,
        batch_size=num_permutations)

  return jax.jit(jax.vmap(one))(x, y, jax.random.split(key, x.shape[0]))


# Under P = Q the permutation p-value with 19 relabellings (continuous
# statistics, no ties) is <= 0.05 with probability exactly 1/20, so the
# number of rejections among S independent seeds is Binomial(S, 0.05):
# S = 200 gives the two-sided 99.8% range [binom.ppf(0.001), binom.ppf(0.999)]
# = [2, 21] (a test rejecting at 2.5% or 11% falls outside it).
SEEDS = 200


def _binomial_range(seeds, level=0.05):
  return tuple(int(b) for b in stats.binom.ppf([0.001, 0.999], seeds, level))


def test_gel_test_is_calibrated_and_powerful_with_more_witnesses_than_rows():
  """J = 64 witnesses for 40 + 40 rows (n <= J): the old test was
  infeasible on nearly every relabelling and never rejected (0 / 200)."""
  kx, ky = jax.random.split(jax.random.key(2))
  num_shifted = 20
  x = jax.random.normal(kx, (SEEDS + num_shifted, 40, 8))
  y = jax.random.normal(ky, (SEEDS + num_shifted, 40, 8))
  y = y.at[SEEDS:].add(0.5)
  res = _vmapped_gel_tests(x, y, jax.random.key(3), objective="et",
                           kernel="exponential", num_witnesses=64)
  p = np.asarray(res.p_value)
  assert int(jnp.sum(res.null_unsolved)) == 0
  low, high = _binomial_range(SEEDS)
  assert low <= np.sum(p[:SEEDS] <= 0.05) <= high
  assert np.mean(p[SEEDS:] <= 0.05) >= 0.8


def test_gel_test_is_calibrated_with_the_reports_kernel_moments():
  """The `gel` report family's defaults (objective, kernel: Gaussian with
  the median-heuristic bandwidth, J = min(num_witnesses, min(n, m) // 8)
  witnesses from the pooled sample) on two samples of one 5-class
  mixture: the rejection rate at 5% is Binomial(S, 0.05)."""
  defaults = gel_family.DEFAULTS
  n = 160
  keys = jax.random.split(jax.random.key(4), 3)
  mix = synthetic.make_mixture(keys[0], num_classes=5, dim=8, separation=4.0)
  draw = jax.vmap(lambda k: synthetic.sample_mixture(k, mix, n)[0])
  x = draw(jax.random.split(keys[1], SEEDS))
  y = draw(jax.random.split(keys[2], SEEDS))
  res = _vmapped_gel_tests(
      x, y, jax.random.key(5), objective=defaults["objective"],
      kernel=defaults["kernel"],
      num_witnesses=min(defaults["num_witnesses"], n // 8))
  p = np.asarray(res.p_value)
  assert np.all(np.asarray(res.status) == gel_dual.SOLVED)
  assert int(jnp.sum(res.null_unsolved)) == 0
  low, high = _binomial_range(SEEDS)
  assert low <= np.sum(p <= 0.05) <= high


def test_gel_test_on_the_reference_models(fixture):
  data, _ = fixture
  x = jnp.asarray(data["test"], jnp.float32)
  w = jnp.asarray(data["witness"], jnp.float32)
  run = functools.partial(gel_lib.gel_test, witnesses=w, num_permutations=19,
                          key=jax.random.key(0))
  dropped = run(x, jnp.asarray(data["model_6"], jnp.float32))
  full = run(x, jnp.asarray(data["model_10"], jnp.float32))
  assert int(dropped.status) == int(full.status) == gel_dual.SOLVED
  assert float(dropped.p_value) == pytest.approx(1 / 20)
  assert float(dropped.statistic) > 5 * float(jnp.max(dropped.null_statistics))
  assert float(full.p_value) > 0.05
  assert int(dropped.null_unsolved) == int(full.null_unsolved) == 0
  assert 0.0 <= float(full.chi2_p_value) <= 1.0
  # Real rows of the dropped classes get (almost) no weight.
  masses = _class_masses(dropped.real_weights, data["test_labels"])
  assert masses[6:].sum() < 0.01


def test_kernel_names_and_objects_give_the_same_moments(small):
  x, y = small
  w = x[:16]
  by_name = gel_lib.moment_features(x, y, witnesses=w, kernel="imq")
  bandwidth = kernels.median_heuristic(jnp.concatenate([x, y]))
  by_object = gel_lib.moment_features(
      x, y, witnesses=w, kernel=kernels.InverseMultiquadric(bandwidth))
  for a, b in zip(by_name, by_object):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
  # The exponential kernel is exp(x.w / d) up to one factor per witness.
  phi_x, _ = gel_lib.moment_features(x, y, witnesses=w)
  ratio = np.asarray(phi_x) / np.exp(np.float64(x) @ np.float64(w).T / 3)
  np.testing.assert_allclose(ratio / ratio[0], 1.0, rtol=1e-5)


def test_bad_inputs_raise(small):
  x, y = small
  with pytest.raises(ValueError, match="objective"):
    gel_lib.gel(x, y, moments="raw", objective="kl")
  with pytest.raises(ValueError, match="moments"):
    gel_lib.gel(x, y, moments="pixels")
  with pytest.raises(ValueError, match="kernel"):
    gel_lib.gel(x, y, kernel="rbf", key=jax.random.key(0))
  with pytest.raises(ValueError, match="witnesses"):
    gel_lib.gel(x, y)
  with pytest.raises(ValueError, match="num_witnesses"):
    gel_lib.gel(x, y, key=jax.random.key(0), num_witnesses=1000)
  with pytest.raises(ValueError, match="witnesses"):
    gel_lib.gel(x, y, witnesses=np.ones((4, 5), np.float32))
  with pytest.raises(ValueError, match="features"):
    gel_lib.gel(x, y[:, :2], moments="raw")
  bad = x.copy()
  bad[3, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    gel_lib.gel_test(bad, y, key=jax.random.key(0), moments="raw")
  with pytest.raises(ValueError, match="num_permutations"):
    gel_lib.gel_test(x, y, key=jax.random.key(0), moments="raw",
                     num_permutations=0)
